//! redis-py (python3 `redis` module) against the server under test over RESP2 and RESP3,
//! with the plain client and with the `RedisCluster` client (CLUSTER SLOTS + COMMAND).

use std::path::PathBuf;
use std::process::Command;

use redis_tests::{tools, Server};

fn run_py(test: &str, protocol: u8, cluster: bool) {
    if !tools::available(test, &["python3", "python3-redis"]) {
        return;
    }
    let server = Server::subject().expect("start server");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/redis_py_check.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(server.port().to_string())
        .arg(protocol.to_string());
    if cluster {
        cmd.arg("cluster");
    }
    let out = cmd.output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "redis-py (protocol {protocol}, cluster {cluster}) failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_py_resp2() {
    run_py("redis_py_resp2", 2, false);
}

#[test]
fn redis_py_resp3() {
    run_py("redis_py_resp3", 3, false);
}

#[test]
fn redis_py_cluster_resp2() {
    run_py("redis_py_cluster_resp2", 2, true);
}

#[test]
fn redis_py_cluster_resp3() {
    run_py("redis_py_cluster_resp3", 3, true);
}
