//! Finding the external tools the black-box tests drive (redis-server, redis-cli,
//! redis-benchmark, python3 with the `redis` module).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::Error;

/// Environment variable that turns a missing tool into a test failure instead of a skip
/// (scripts/test.sh sets it, so CI never silently skips).
pub const STRICT_ENV: &str = "REDIS_TESTS_STRICT";

/// Full path of an executable found on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Full path of a required executable, or [`Error::ToolMissing`].
pub fn require(name: &str) -> Result<PathBuf, Error> {
    which(name).ok_or_else(|| {
        Error::ToolMissing(format!(
            "`{name}` not found on PATH (install with `apt-get install -y redis-server redis-tools`, or run scripts/test.sh)"
        ))
    })
}

/// True when `python3 -c "import redis"` succeeds.
pub fn python_has_redis() -> bool {
    Command::new("python3")
        .args(["-c", "import redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Decide whether a test can run: `true` if every tool is present. Otherwise print a
/// clear SKIP line and return `false`, or panic when `REDIS_TESTS_STRICT=1`.
pub fn available(test: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| **t != "python3-redis" && which(t).is_none())
        .map(|t| t.to_string())
        .collect();
    if tools.contains(&"python3-redis") && !python_has_redis() {
        missing.push("python3 module `redis` (pip install redis)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIP {test}: missing {}", missing.join(", "));
    if std::env::var(STRICT_ENV).is_ok_and(|v| v == "1") {
        panic!("{msg} (and {STRICT_ENV}=1)");
    }
    eprintln!("{msg}");
    false
}

/// The failpoint-enabled server (`--features failpoints`): `$PINNACLE_FAILPOINTS_BIN`, else
/// `target/failpoints/release/pinnacle` (scripts/test.sh builds it). Missing: a panic under
/// `REDIS_TESTS_STRICT=1`, else `None` with a message (the test skips).
pub fn failpoints_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("PINNACLE_FAILPOINTS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::process::workspace_root().join("target/failpoints/release/pinnacle")
        });
    if bin.exists() {
        return Some(bin);
    }
    let why = format!(
        "failpoint binary {} missing: CARGO_TARGET_DIR=target/failpoints cargo build --release \
         -p pinnacle-server --features failpoints (or set PINNACLE_FAILPOINTS_BIN)",
        bin.display()
    );
    if std::env::var(STRICT_ENV).is_ok_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Polls `f` every 200 ms until it holds; after `limit`, panics with `what` and the last
/// observation `f` returned (a test helper: the panic is the test's failure).
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut() -> (bool, T),
) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (ok, seen) = f();
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
