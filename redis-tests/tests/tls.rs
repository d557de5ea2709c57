//! TLS for clients (`--tls-port`, redis-cli `--tls`, redis-py `ssl=True`) and the cluster bus
//! (`--tls-cluster yes`), and cluster-bus authentication (`--cluster-secret-file`), against
//! certificates made here with rcgen (a CA, a server/node certificate, a client certificate,
//! and a rogue CA with its own certificate).
//!
//! The bus tests send a forged leader's heartbeats (`pinnacle_raft::transport::probe`) from
//! outside: a member that decoded them would adopt the forged term. The control test shows the
//! same bytes do take over an unauthenticated cluster, so the secured tests could fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use redis_tests::cluster::Cluster;
use redis_tests::process::{free_port, pinnacle_bin};
use redis_tests::{tools, Builder, Value};

/// One cluster at a time: three at once on two cores make elections flap.
static CLUSTERS: Mutex<()> = Mutex::new(());

/// A forged term no real election in a test reaches.
const FORGED_TERM: u64 = 1_000_000;
/// The id the forged leader claims.
const FORGED_ID: u64 = 99;

/// PEM files in a temporary folder.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    /// Server and node certificate (serverAuth + clientAuth) and its key.
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate signed by the CA.
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A certificate for the same names signed by another CA.
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, cn: &str, names: &[String]) -> (String, String) {
    let mut p = CertificateParams::new(names.to_vec()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    let ca = new_ca("Pinnacle test CA");
    let rogue_ca = new_ca("Rogue CA");
    // Every address the tests use: localhost, and the cluster nodes' 127.0.0.x addresses.
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    names.extend((1..=90).map(|i| format!("127.0.0.{i}")));
    let (cert, key) = leaf(&ca, "pinnacle node", &names);
    let (client_cert, client_key) = leaf(&ca, "pinnacle client", &[]);
    let (rogue_cert, rogue_key) = leaf(&rogue_ca, "rogue", &names);
    Pki {
        ca: write("ca.crt", &ca.pem()),
        cert: write("node.crt", &cert),
        key: write("node.key", &key),
        client_cert: write("client.crt", &client_cert),
        client_key: write("client.key", &client_key),
        rogue_cert: write("rogue.crt", &rogue_cert),
        rogue_key: write("rogue.key", &rogue_key),
        _dir: dir,
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Server TLS flags: certificate, key, CA.
fn tls_args(pki: &Pki) -> Vec<String> {
    vec![
        "--tls-cert-file".into(),
        s(&pki.cert),
        "--tls-key-file".into(),
        s(&pki.key),
        "--tls-ca-cert-file".into(),
        s(&pki.ca),
    ]
}

/// `redis-cli --tls` with the CA (and a client certificate if given) against `port`.
fn cli_tls(pki: &Pki, port: u16, client: Option<(&Path, &Path)>, args: &[&str]) -> Output {
    let mut c = Command::new("redis-cli");
    c.args(["--tls", "--cacert"])
        .arg(&pki.ca)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((cert, key)) = client {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    c.args(args).stdin(Stdio::null());
    c.output().expect("run redis-cli")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn redis_cli_over_tls_requires_a_client_certificate_by_default() {
    if !tools::available("tls_redis_cli", &["redis-cli"]) {
        return;
    }
    let pki = pki();
    let tls_port = free_port().expect("port");
    let server = Builder::pinnacle()
        .args(["--tls-port".to_string(), tls_port.to_string()])
        .args(tls_args(&pki))
        .start()
        .expect("start");
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    assert_eq!(stdout(&cli_tls(&pki, tls_port, client, &["PING"])), "PONG");
    assert_eq!(
        stdout(&cli_tls(&pki, tls_port, client, &["SET", "k", "v"])),
        "OK"
    );
    assert_eq!(stdout(&cli_tls(&pki, tls_port, client, &["GET", "k"])), "v");
    // No client certificate: refused (the handshake or the first read fails).
    let o = cli_tls(&pki, tls_port, None, &["GET", "k"]);
    assert!(
        !stdout(&o).contains('v'),
        "served without a client cert: {o:?}"
    );
    // A certificate from another CA: refused too.
    let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
    let o = cli_tls(&pki, tls_port, rogue, &["GET", "k"]);
    assert!(!stdout(&o).contains('v'), "served a rogue cert: {o:?}");
    // The plain port keeps working alongside and sees the same data.
    let mut c = server.conn().expect("plain conn");
    assert_eq!(c.call(&["GET", "k"]).expect("GET"), b"$1\r\nv\r\n");
}

#[test]
fn plaintext_on_the_tls_port_gets_nothing_useful_and_the_server_survives() {
    if !tools::available("tls_plaintext", &["redis-cli"]) {
        return;
    }
    let pki = pki();
    let tls_port = free_port().expect("port");
    let server = Builder::pinnacle()
        .args(["--tls-port".to_string(), tls_port.to_string()])
        .args(["--tls-auth-clients", "no"])
        .args(tls_args(&pki))
        .start()
        .expect("start");
    for junk in [
        &b"PING\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
    ] {
        let mut sock = TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let _ = sock.write_all(junk);
        let mut got = Vec::new();
        let _ = sock.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("PONG") && !text.contains("-ERR"),
            "plaintext got {got:?}"
        );
    }
    // Without client auth, redis-cli needs only the CA.
    assert_eq!(stdout(&cli_tls(&pki, tls_port, None, &["PING"])), "PONG");
    let mut c = server.conn().expect("plain conn");
    assert_eq!(c.call(&["PING"]).expect("PING"), b"+PONG\r\n");
}

/// A server process started by hand (TLS-only: the harness waits on the plain port).
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn config_file_tls_only_with_optional_client_certs_and_redis_py() {
    if !tools::available(
        "tls_config_file",
        &["redis-cli", "python3", "python3-redis"],
    ) {
        return;
    }
    let pki = pki();
    let tls_port = free_port().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("pinnacle.conf");
    std::fs::write(
        &conf,
        format!(
            "port 0\ntls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients optional\n",
            s(&pki.cert),
            s(&pki.key),
            s(&pki.ca)
        ),
    )
    .expect("write conf");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let child = Command::new(pinnacle_bin())
        .arg("--config")
        .arg(&conf)
        .arg("--dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn pinnacle");
    let _server = Spawned(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stdout(&cli_tls(&pki, tls_port, None, &["PING"])) != "PONG" {
        assert!(Instant::now() < deadline, "TLS port never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(
        text.contains(&format!(
            "Ready to accept TLS connections on 127.0.0.1:{tls_port}"
        )) && !text.contains("Ready to accept connections"),
        "port 0 must leave only the TLS listener:\n{text}"
    );
    // `optional`: with or without a client certificate.
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    assert_eq!(
        stdout(&cli_tls(&pki, tls_port, client, &["SET", "a", "1"])),
        "OK"
    );
    assert_eq!(stdout(&cli_tls(&pki, tls_port, None, &["GET", "a"])), "1");
    // ...but a certificate that does not chain to the CA is refused.
    let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
    assert_ne!(stdout(&cli_tls(&pki, tls_port, rogue, &["GET", "a"])), "1");
    // redis-py ssl=True, RESP2 and RESP3, with and without a client certificate.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_check.py");
    for (proto, cert) in [("2", true), ("3", false)] {
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(tls_port.to_string())
            .arg(proto)
            .arg(&pki.ca);
        if cert {
            cmd.arg(&pki.client_cert).arg(&pki.client_key);
        }
        let out = cmd.output().expect("python3");
        assert!(
            out.status.success() && stdout(&out).ends_with("OK"),
            "redis-py over TLS (RESP{proto}, cert {cert}): {out:?}"
        );
    }
}

#[test]
fn redis_py_without_a_required_client_certificate_is_refused() {
    if !tools::available("tls_redis_py_refused", &["python3", "python3-redis"]) {
        return;
    }
    let pki = pki();
    let tls_port = free_port().expect("port");
    let _server = Builder::pinnacle()
        .args(["--tls-port".to_string(), tls_port.to_string()])
        .args(tls_args(&pki))
        .start()
        .expect("start");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_check.py");
    let with = Command::new("python3")
        .arg(&script)
        .arg(tls_port.to_string())
        .arg("3")
        .arg(&pki.ca)
        .arg(&pki.client_cert)
        .arg(&pki.client_key)
        .output()
        .expect("python3");
    assert!(stdout(&with).ends_with("OK"), "{with:?}");
    let without = Command::new("python3")
        .arg(&script)
        .arg(tls_port.to_string())
        .arg("2")
        .arg(&pki.ca)
        .output()
        .expect("python3");
    assert!(
        !without.status.success() && !stdout(&without).ends_with("OK"),
        "served without the required client certificate: {without:?}"
    );
}

/// Highest Raft term any node reports.
fn max_term(c: &Cluster) -> u64 {
    c.ids()
        .iter()
        .filter_map(|&i| c.info(i).ok())
        .map(|info| info.term)
        .max()
        .unwrap_or(0)
}

/// Sends forged heartbeats for the meta group and the shard group to every node's bus port,
/// as raw frames on plain TCP (or after `prefix`), and reads whatever comes back.
fn inject(c: &Cluster, prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut answers = Vec::new();
    for i in c.ids() {
        let to = i as u64;
        let mut bytes = prefix.to_vec();
        bytes.extend(
            pinnacle_raft::transport::probe::forged_heartbeats(FORGED_ID, to, &[0, 1], FORGED_TERM)
                .expect("encode"),
        );
        let addr = SocketAddr::new(c.ip(i), c.bus_port(i));
        let Ok(mut sock) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            continue;
        };
        // A secured node hangs up at once; an open one keeps the connection: stop waiting.
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = sock.write_all(&bytes);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the node hangs up or stays quiet.
        while let Ok(n) = sock.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        answers.push(got);
    }
    answers
}

/// Writes on the leader, then waits until every node holds `key`.
fn write_replicates(c: &Cluster, key: &str) {
    // A fresh leader (or one a vote just deposed) refuses with CLUSTERDOWN/MOVED: not
    // applied, so ask the leader again.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = c.leader().expect("leader");
        let r = c.call(leader, &["SET", key, "v"]).expect("SET");
        if r == Value::Simple("OK".into()) {
            break;
        }
        let refused = matches!(&r, Value::Error(e) if e.starts_with(b"CLUSTERDOWN") || e.starts_with(b"MOVED"));
        assert!(
            refused && Instant::now() < until,
            "SET on the leader: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in c.ids() {
        loop {
            if c.keys(i)
                .map(|k| k.contains(key.as_bytes()))
                .unwrap_or(false)
            {
                break;
            }
            assert!(Instant::now() < deadline, "{key} never reached node {i}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The cluster still has one of its own members as leader, in a real term.
fn assert_not_taken_over(c: &Cluster) {
    let term = max_term(c);
    assert!(
        term < FORGED_TERM,
        "a forged frame was applied: term {term}"
    );
    let leader = c.leader().expect("leader");
    let info = c.info(leader).expect("info");
    assert_eq!(info.leader_id, Some(leader as u64));
}

#[test]
fn tls_cluster_replicates_and_refuses_rogue_bus_connections() {
    if !tools::available("tls_cluster", &["redis-cli"]) {
        return;
    }
    let _one = CLUSTERS.lock().unwrap_or_else(|p| p.into_inner());
    let pki = pki();
    let c = Cluster::builder(3)
        .ip_base(60)
        .shards(1)
        .tls_cluster(&pki.ca, &pki.cert, &pki.key)
        .start()
        .expect("cluster");
    write_replicates(&c, "over-tls");
    // Plaintext frames on the TLS bus: never decoded.
    let answers = inject(&c, &[]);
    assert!(answers.iter().all(|a| a.len() < 200), "{answers:?}");
    // A TLS peer without a certificate, and one with another CA's certificate.
    for i in c.ids() {
        let port = c.bus_port(i).to_string();
        let host = c.ip(i).to_string();
        for client in [None, Some((&pki.rogue_cert, &pki.rogue_key))] {
            let mut cmd = Command::new("redis-cli");
            cmd.args(["--tls", "--cacert"])
                .arg(&pki.ca)
                .args(["-h", &host, "-p", &port]);
            if let Some((cert, key)) = client {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            let o = cmd.arg("PING").stdin(Stdio::null()).output().expect("cli");
            assert!(!stdout(&o).contains("PONG"), "{o:?}");
        }
    }
    assert!(
        c.log_tail(1, 200_000)
            .contains("refused an unauthenticated connection"),
        "node 1 logged no refusal:\n{}",
        c.log_tail(1, 3000)
    );
    assert_not_taken_over(&c);
    write_replicates(&c, "after-rogues");
}

#[test]
fn cluster_secret_refuses_peers_without_it() {
    let _one = CLUSTERS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "correct horse battery staple\n").expect("write secret");
    let c = Cluster::builder(3)
        .ip_base(64)
        .shards(1)
        .args(["--cluster-secret-file".to_string(), s(&secret)])
        .start()
        .expect("cluster");
    write_replicates(&c, "with-secret");
    // No handshake at all.
    let answers = inject(&c, &[]);
    // Whatever came back is at most the node's challenge, never a frame.
    assert!(
        answers
            .iter()
            .all(|a| a.is_empty() || a.starts_with(b"PNBA")),
        "{answers:?}"
    );
    // A handshake with a forged proof: 37 bytes of hello, then a wrong MAC, then frames.
    let mut prefix = b"PNBA\x01".to_vec();
    prefix.extend([7u8; 32]);
    prefix.extend([0u8; 32]);
    let answers = inject(&c, &prefix);
    assert!(answers.iter().all(|a| a.len() <= 69), "{answers:?}");
    assert_not_taken_over(&c);
    write_replicates(&c, "after-rogues");
}

/// The control: the same forged frames DO take over a cluster whose bus is unauthenticated,
/// so the two tests above would fail if the bus let them through.
#[test]
fn control_forged_frames_take_over_an_open_bus() {
    let _one = CLUSTERS.lock().unwrap_or_else(|p| p.into_inner());
    let c = Cluster::builder(3)
        .ip_base(68)
        .shards(1)
        .start()
        .expect("cluster");
    c.leader().expect("leader");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        inject(&c, &[]);
        if max_term(&c) >= FORGED_TERM {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "forged heartbeats never took effect (term {}): the bus tests prove nothing",
            max_term(&c)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every leaf of a reply as text (numbers in decimal), depth first.
fn leaves(v: &Value) -> Vec<String> {
    match v {
        Value::Int(n) => vec![n.to_string()],
        Value::Map(kv) => kv
            .iter()
            .flat_map(|(k, v)| leaves(k).into_iter().chain(leaves(v)))
            .collect(),
        other => match (other.as_list(), other.as_bytes()) {
            (Some(items), _) => items.iter().flat_map(leaves).collect(),
            (None, Some(b)) => vec![String::from_utf8_lossy(b).into_owned()],
            _ => vec![format!("{other:?}")],
        },
    }
}

/// The leaves of `args`'s reply from `n` over a plain connection (empty on error).
fn plain_leaves(n: &redis_tests::Server, args: &[&str]) -> Vec<String> {
    n.conn()
        .and_then(|mut c| c.call_value(args))
        .map(|v| leaves(&v))
        .unwrap_or_default()
}

/// Lines of `redis-cli --tls ... args` output at TLS port `port` (CA only: the nodes run
/// `--tls-auth-clients no`).
fn cli_lines(pki: &Pki, port: u16, args: &[&str]) -> Vec<String> {
    let o = cli_tls(pki, port, None, args);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// A 3-node cluster with `tls-cluster yes` and a different TLS port on every node: each node
/// records its TLS port in the metadata group, so any node names its peers' TLS ports. TLS
/// clients see TLS ports (MOVED/ASK, CLUSTER SLOTS/NODES), plain clients plain ones, CLUSTER
/// SHARDS lists both, and `redis-cli --tls -c` follows MOVED to the owner's TLS port.
#[test]
fn tls_clients_are_redirected_to_tls_ports() {
    if !tools::available("tls_cluster_ports", &["redis-cli"]) {
        return;
    }
    let _one = CLUSTERS.lock().unwrap_or_else(|p| p.into_inner());
    let pki = pki();
    let port = |_| free_port().expect("port");
    let plain: Vec<u16> = (0..3).map(port).collect();
    let tls: Vec<u16> = (0..3).map(port).collect();
    let bus: Vec<u16> = (0..3).map(port).collect();
    let peers = (0..3)
        .map(|i| format!("{}@127.0.0.1:{}@{}", i + 1, plain[i], bus[i]))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<_> = (0..3)
        .map(|i| {
            Builder::pinnacle()
                .port(plain[i])
                .args([
                    "--node-id".to_string(),
                    (i + 1).to_string(),
                    "--cluster-peers".into(),
                    peers.clone(),
                    "--cluster-port".into(),
                    bus[i].to_string(),
                    "--shards".into(),
                    "3".into(),
                    "--tls-port".into(),
                    tls[i].to_string(),
                    "--tls-cluster".into(),
                    "yes".into(),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ])
                .args(tls_args(&pki))
                .start()
                .expect("node")
        })
        .collect();
    // Every node knows every TLS port (from the metadata) and three masters own slots.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = nodes.iter().all(|n| {
            let shards = plain_leaves(n, &["CLUSTER", "SHARDS"]);
            let masters = plain_leaves(n, &["CLUSTER", "NODES"]).concat();
            masters.matches("master").count() == 3
                && tls.iter().all(|t| shards.contains(&t.to_string()))
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "TLS ports never reached every node's view"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A key that node 1 does not serve.
    let mut c1 = nodes[0].conn().expect("conn");
    let (key, plain_moved) = (0..1000)
        .map(|i| format!("key:{i}"))
        .find_map(|k| match c1.call_value(&["GET", k.as_str()]) {
            Ok(Value::Error(e)) if e.starts_with(b"MOVED ") => {
                Some((k, String::from_utf8_lossy(&e).into_owned()))
            }
            _ => None,
        })
        .expect("a key owned elsewhere");
    // Plain client: the plain port of the owner.
    let owner = plain
        .iter()
        .position(|p| plain_moved.ends_with(&format!("127.0.0.1:{p}")))
        .unwrap_or_else(|| panic!("MOVED to no plain port: {plain_moved}"));
    // TLS client: the same redirect names the owner's TLS port.
    let tls_moved = cli_lines(&pki, tls[0], &["GET", &key]).join(" ");
    let slot = plain_moved.split(' ').nth(1).expect("slot");
    assert!(
        tls_moved.contains(&format!("MOVED {slot} 127.0.0.1:{}", tls[owner])),
        "TLS client got `{tls_moved}`, plain client `{plain_moved}`; TLS ports {tls:?}"
    );
    // CLUSTER SLOTS and NODES: TLS ports for TLS clients, plain ports for plain ones.
    let tls_slots = cli_lines(&pki, tls[1], &["CLUSTER", "SLOTS"]);
    let tls_nodes = cli_lines(&pki, tls[1], &["CLUSTER", "NODES"]).join("\n");
    for i in 0..3 {
        assert!(
            tls_slots.contains(&tls[i].to_string()) && !tls_slots.contains(&plain[i].to_string()),
            "CLUSTER SLOTS over TLS: {tls_slots:?}"
        );
        assert!(
            tls_nodes.contains(&format!("127.0.0.1:{}@{}", tls[i], bus[i])),
            "CLUSTER NODES over TLS: {tls_nodes}"
        );
    }
    let plain_slots = plain_leaves(&nodes[1], &["CLUSTER", "SLOTS"]);
    let plain_nodes = plain_leaves(&nodes[1], &["CLUSTER", "NODES"]).concat();
    for i in 0..3 {
        assert!(
            plain_slots.contains(&plain[i].to_string())
                && !plain_slots.contains(&tls[i].to_string()),
            "plain CLUSTER SLOTS: {plain_slots:?}"
        );
        assert!(
            plain_nodes.contains(&format!("127.0.0.1:{}@{}", plain[i], bus[i])),
            "plain CLUSTER NODES: {plain_nodes}"
        );
    }
    // CLUSTER SHARDS lists `port` then `tls-port`, as Redis does under tls-cluster.
    let shards = cli_lines(&pki, tls[2], &["CLUSTER", "SHARDS"]);
    for i in 0..3 {
        let at = shards
            .iter()
            .position(|l| *l == plain[i].to_string())
            .unwrap_or_else(|| panic!("no port {} in CLUSTER SHARDS: {shards:?}", plain[i]));
        assert_eq!(shards[at - 1], "port", "{shards:?}");
        assert_eq!(shards[at + 1], "tls-port", "{shards:?}");
        assert_eq!(shards[at + 2], tls[i].to_string(), "{shards:?}");
    }
    // PUBLISH reaches node 2's subscriber through the relay, which dials node 2's TLS port
    // (its link shows up there with the TLS port as `laddr`).
    let mut sub = nodes[1].conn().expect("conn");
    sub.call_value(&["SUBSCRIBE", "news"]).expect("subscribe");
    // (A link made before node 1 knew node 2's TLS port went to the plain port; the relay
    // redials once the peer list shows the TLS port.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        cli_tls(&pki, tls[0], None, &["PUBLISH", "news", "over-tls"]);
        let got = matches!(
            sub.read_reply_timeout(Duration::from_millis(500)),
            Ok(r) if String::from_utf8_lossy(&r).contains("over-tls")
        );
        let list = plain_leaves(&nodes[1], &["CLIENT", "LIST"]).concat();
        let over_tls = list.lines().any(|l| {
            l.contains(&format!("laddr=127.0.0.1:{} ", tls[1]))
                && l.contains("cmd=pinn.publishlocal")
        });
        if got && over_tls {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PUBLISH never reached node 2 over its TLS port (received: {got}): {list}"
        );
    }
    // redis-py RedisCluster with ssl=True (RESP2 and RESP3) discovers the TLS ports and
    // follows MOVED over TLS.
    if tools::available("tls_cluster_redis_py", &["python3", "python3-redis"]) {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_cluster_check.py");
        let mut want = tls.clone();
        want.sort();
        let want: Vec<String> = want.iter().map(u16::to_string).collect();
        for proto in ["2", "3"] {
            let out = Command::new("python3")
                .arg(&script)
                .arg(tls[0].to_string())
                .arg(&pki.ca)
                .arg(proto)
                .output()
                .expect("python3");
            let text = stdout(&out);
            assert!(
                out.status.success() && text.ends_with("OK"),
                "redis-py RedisCluster over TLS (RESP{proto}): {out:?}"
            );
            assert_eq!(text.lines().next(), Some(want.join(" ").as_str()), "{text}");
        }
    }
    // redis-cli --tls -c follows MOVED to the TLS port (a plain port would fail the handshake).
    for (i, t) in tls.iter().enumerate() {
        let v = format!("v{i}");
        let set = cli_tls(&pki, *t, None, &["-c", "SET", &key, &v]);
        assert_eq!(stdout(&set), "OK", "SET via TLS port {t}: {set:?}");
        let get = cli_tls(&pki, *t, None, &["-c", "GET", &key]);
        assert_eq!(stdout(&get), v, "GET via TLS port {t}: {get:?}");
    }
}

/// Nodes with no plain port at all (`--port 0`, `tls-cluster yes`, client certificates
/// required): the cluster forms over TLS, `redis-cli --tls -c` works through every node,
/// PUBLISH is relayed between TLS ports, and a 4th TLS-only node joins by `CLUSTER MEET`
/// sent to a node that forwards it to the metadata leader (both hops over TLS).
#[test]
fn tls_only_nodes_relay_publish_and_meet_over_tls() {
    if !tools::available("tls_only_cluster", &["redis-cli"]) {
        return;
    }
    let _one = CLUSTERS.lock().unwrap_or_else(|p| p.into_inner());
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = |_| free_port().expect("port");
    let tls: Vec<u16> = (0..4).map(port).collect();
    let bus: Vec<u16> = (0..4).map(port).collect();
    let peers = (0..3)
        .map(|i| format!("{}@127.0.0.1:{}@{}", i + 1, tls[i], bus[i]))
        .collect::<Vec<_>>()
        .join(",");
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let cli = |i: usize, args: &[&str]| stdout(&cli_tls(&pki, tls[i], client, args));
    let spawn = |i: usize, join: bool| {
        let log =
            std::fs::File::create(dir.path().join(format!("node{}.log", i + 1))).expect("log");
        let mut cmd = Command::new(pinnacle_bin());
        cmd.args(["--node-id", &(i + 1).to_string(), "--port", "0"])
            .args(["--tls-port", &tls[i].to_string()])
            .args(["--cluster-port", &bus[i].to_string()])
            .args(["--shards", "3", "--tls-cluster", "yes"])
            .args(tls_args(&pki))
            .arg("--dir")
            .arg(dir.path().join(format!("n{}", i + 1)));
        if join {
            cmd.arg("--cluster-join");
        } else {
            cmd.args(["--cluster-peers", &peers]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn pinnacle");
        Spawned(child)
    };
    let _nodes: Vec<Spawned> = (0..3).map(|i| spawn(i, false)).collect();
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("three masters", &|| {
        cli(0, &["CLUSTER", "NODES"]).matches("master").count() == 3
    });
    for i in 0..3 {
        let v = format!("t{i}");
        wait("SET over TLS", &|| {
            cli(i, &["-c", "SET", &format!("k{i}"), &v]) == "OK"
        });
        assert_eq!(cli((i + 1) % 3, &["-c", "GET", &format!("k{i}")]), v);
    }
    // PUBLISH on node 1 reaches a subscriber of node 2 (relay over TLS; no plain port exists).
    let mut sub = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.client_cert)
        .arg("--key")
        .arg(&pki.client_key)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &tls[1].to_string(),
            "SUBSCRIBE",
            "news",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("subscriber");
    // Lines the subscriber prints, as they come.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = sub.stdout.take().expect("subscriber stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    wait("node 2's subscriber", &|| {
        cli(1, &["PUBSUB", "NUMSUB", "news"]).lines().nth(1) == Some("1")
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // PUBLISH answers node 1's own receivers (none); node 2's come by the relay.
        cli(0, &["PUBLISH", "news", "hello"]);
        if rx
            .recv_timeout(Duration::from_millis(500))
            .is_ok_and(|l| l == "hello")
            || rx.try_iter().any(|l| l == "hello")
        {
            break;
        }
        assert!(Instant::now() < deadline, "PUBLISH never reached node 2");
    }
    let _ = sub.kill();
    let _ = sub.wait();
    // A 4th TLS-only node joins: MEET sent to node 2 names its TLS port.
    let _n4 = spawn(3, true);
    wait("node 4 up", &|| cli(3, &["PING"]) == "PONG");
    let meet = cli(
        1,
        &[
            "CLUSTER",
            "MEET",
            "127.0.0.1",
            &tls[3].to_string(),
            &bus[3].to_string(),
        ],
    );
    assert_eq!(meet, "OK", "CLUSTER MEET over TLS");
    wait("node 4 in every node's view", &|| {
        (0..3).all(|i| cli(i, &["CLUSTER", "NODES"]).contains(&format!(":{}@", tls[3])))
    });
}
