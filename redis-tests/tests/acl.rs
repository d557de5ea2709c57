//! ACLs and protected mode, byte-compared with redis-server 7.0.15: ACL SETUSER rule variants
//! and their errors, GETUSER in RESP2 and RESP3, LIST/USERS/CAT/GENPASS/DRYRUN/WHOAMI, AUTH and
//! HELLO AUTH, commands/keys/channels allowed and denied (NOPERM texts), the ACL LOG, DELUSER
//! closing a user's connections, the ACL file (load at start, ACL SAVE, ACL LOAD and its
//! errors, a bad file refusing to start), protected mode from a non-loopback address, and ACLs
//! staying node-local on a Raft cluster.
//!
//! Allowed differences (inherently variable, normalized before comparing): `age-seconds` and
//! `client-info` of ACL LOG entries, the order of single-command rules after the categories in
//! ACL LIST/GETUSER/the saved file (Redis walks a hash table seeded at random per process), the
//! order of `ACL CAT <category>`, GENPASS's random hex, HELLO's map (it says `standalone` vs
//! `cluster`), and the ACL file's path in error texts.

use redis_tests::cluster::Cluster;
use redis_tests::frame::{parse_one, Value};
use redis_tests::process::{free_port, pinnacle_bin};
use redis_tests::{show, tools, Builder, RawConn, Server};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a reply is compared.
#[derive(Clone, Copy)]
enum Norm {
    /// Byte for byte.
    Raw,
    /// ACL LOG: `age-seconds` and `client-info` values blanked.
    Log,
    /// Single-command rules sorted within every rules string.
    Rules,
    /// Elements of the (array) reply sorted.
    Sorted,
    /// Only the reply's type and length (random content).
    Shape,
}

type Transcript = Vec<(String, String)>;

struct Script {
    out: Transcript,
}

impl Script {
    fn new() -> Script {
        Script { out: Vec::new() }
    }

    fn call(&mut self, c: &mut RawConn, norm: Norm, args: &[&str]) -> Vec<u8> {
        let reply = c.call(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.record(&args.join(" "), norm, &reply);
        reply
    }

    fn record(&mut self, what: &str, norm: Norm, reply: &[u8]) {
        let shown = normalize(norm, reply);
        self.out.push((what.to_string(), shown));
    }

    fn note(&mut self, what: &str, value: String) {
        self.out.push((what.to_string(), value));
    }
}

/// The whole reply, printable (`show` cuts long replies).
fn esc(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            0x20..=0x7e => (c as char).to_string(),
            _ => format!("\\x{c:02x}"),
        })
        .collect()
}

fn normalize(norm: Norm, reply: &[u8]) -> String {
    match norm {
        Norm::Raw => esc(reply),
        Norm::Shape => match parse_one(reply) {
            Ok(Value::Bulk(b)) => format!("bulk of {} hex chars", b.len()),
            Ok(v) => shape(&v).to_string(),
            Err(e) => format!("unparsable: {e}"),
        },
        _ => match parse_one(reply) {
            Ok(v) => format!("{:?}", norm_value(norm, v)),
            Err(e) => format!("unparsable {}: {e}", esc(reply)),
        },
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "map",
        Value::Array(_) => "array",
        Value::Error(_) => "error",
        _ => "other",
    }
}

fn norm_value(norm: Norm, v: Value) -> Value {
    match (norm, v) {
        (Norm::Sorted, Value::Array(mut items)) => {
            items.sort();
            Value::Array(items)
        }
        (Norm::Rules, Value::Bulk(b)) => Value::Bulk(norm_rules(&b)),
        (Norm::Rules, Value::Simple(b)) => Value::Simple(norm_rules(&b)),
        (Norm::Log, Value::Array(items)) if is_flat_log_entry(&items) => {
            let mut out = Vec::new();
            let mut it = items.into_iter();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                let val = blank_if_variable(&k, val);
                out.push(k);
                out.push(val);
            }
            Value::Array(out)
        }
        (Norm::Log, Value::Map(pairs)) => Value::Map(
            pairs
                .into_iter()
                .map(|(k, val)| {
                    let val = blank_if_variable(&k, val);
                    (k, val)
                })
                .collect(),
        ),
        (n, Value::Array(items)) => {
            Value::Array(items.into_iter().map(|x| norm_value(n, x)).collect())
        }
        (n, Value::Set(items)) => Value::Set(items.into_iter().map(|x| norm_value(n, x)).collect()),
        (n, Value::Map(pairs)) => Value::Map(
            pairs
                .into_iter()
                .map(|(k, x)| (k, norm_value(n, x)))
                .collect(),
        ),
        (_, other) => other,
    }
}

fn is_flat_log_entry(items: &[Value]) -> bool {
    items.len().is_multiple_of(2) && items.first() == Some(&Value::Bulk(b"count".to_vec()))
}

fn blank_if_variable(key: &Value, val: Value) -> Value {
    let variable = matches!(key, Value::Bulk(k) if k == b"age-seconds" || k == b"client-info");
    match (variable, val) {
        (true, Value::Bulk(_)) => Value::Bulk(b"*".to_vec()),
        (true, Value::Double(_)) => Value::Double(b"*".to_vec()),
        (_, v) => v,
    }
}

/// Sorts the single-command rules (those after `+@all`/`-@all` and the categories) of every
/// selector in a rules string; Redis emits them in its hash table's per-process order.
fn norm_rules(b: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(b);
    let segs: Vec<String> = s
        .split(" (")
        .map(|seg| {
            let (body, close) = match seg.strip_suffix(')') {
                Some(body) => (body, ")"),
                None => (seg, ""),
            };
            let toks: Vec<&str> = body.split(' ').collect();
            match toks.iter().position(|t| *t == "+@all" || *t == "-@all") {
                Some(i) => {
                    let (mut cats, mut singles) = (Vec::new(), Vec::new());
                    for t in &toks[i + 1..] {
                        if t.starts_with("+@") || t.starts_with("-@") {
                            cats.push(*t);
                        } else {
                            singles.push(*t);
                        }
                    }
                    singles.sort();
                    let mut all: Vec<&str> = toks[..=i].to_vec();
                    all.extend(cats);
                    all.extend(singles);
                    format!("{}{close}", all.join(" "))
                }
                None => seg.to_string(),
            }
        })
        .collect();
    segs.join(" (").into_bytes()
}

fn compare(test: &str, ours: &Transcript, theirs: &Transcript) {
    for ((what, a), (_, b)) in ours.iter().zip(theirs) {
        assert_eq!(a, b, "{test}: {what}: pinnacle vs redis");
    }
    assert_eq!(ours.len(), theirs.len(), "{test}: transcript lengths");
}

fn both(test: &str, pin: Builder, red: Builder, scenario: impl Fn(&Server) -> Transcript) {
    if !tools::available(test, &["redis-server"]) {
        return;
    }
    let ours = pin.start().expect("start pinnacle");
    let theirs = red.start().expect("start redis-server");
    let a = scenario(&ours);
    let b = scenario(&theirs);
    compare(test, &a, &b);
}

fn rules_scenario(s: &Server) -> Transcript {
    let mut t = Script::new();
    let mut c = s.conn().expect("conn");
    use Norm::*;
    for args in [
        &["ACL", "LIST"][..],
        &["ACL", "SETUSER", "alice"],
        &["ACL", "GETUSER", "alice"],
        &[
            "ACL",
            "SETUSER",
            "bob",
            "on",
            ">pw",
            "~k*",
            "%R~r*",
            "%W~w*",
            "%RW~rw*",
            "+get",
            "+set",
            "+@hash",
            "-hset",
            "&ch*",
            "+client|list",
            "+select|0",
            "+select|1",
        ],
        &["ACL", "GETUSER", "bob"],
        &[
            "ACL",
            "SETUSER",
            "carol",
            "on",
            "nopass",
            "+@all",
            "-@dangerous",
            "-get",
            "allkeys",
        ],
        &[
            "ACL", "SETUSER", "dave", "+@read", "-@read", "+get", "+@string", "-@write",
        ],
        &[
            "ACL",
            "SETUSER",
            "erin",
            "on",
            "(~x* +get)",
            "(+set",
            "~y*)",
            "&news",
        ],
        &["ACL", "GETUSER", "erin"],
        &[
            "ACL",
            "SETUSER",
            "frank",
            "#2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
            ">pw2",
        ],
        &[
            "ACL",
            "SETUSER",
            "frank",
            "!2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
        ],
        &[
            "ACL",
            "SETUSER",
            "frank",
            "<pw2",
            "resetkeys",
            "~a",
            "resetchannels",
            "&b",
            "skip-sanitize-payload",
        ],
        &[
            "ACL",
            "SETUSER",
            "frank",
            "clearselectors",
            "(+ping)",
            "sanitize-payload",
        ],
        &["ACL", "LIST"],
        &["ACL", "USERS"],
    ] {
        let norm = if args[1] == "SETUSER" { Raw } else { Rules };
        t.call(&mut c, norm, args);
    }
    // Every kind of rule error, and what a failed SETUSER leaves behind (nothing).
    for rule in [
        "+nosuch",
        "+@nosuch",
        "-nosuch",
        "bogus",
        "#abc",
        "!abc",
        "<nope",
        "+client|list|x",
        "+select|",
        "%X~a",
        "~a b",
        "(+get",
    ] {
        t.call(&mut c, Raw, &["ACL", "SETUSER", "bad", "on", rule]);
    }
    t.call(&mut c, Raw, &["ACL", "SETUSER", "bad", "allkeys", "~a"]);
    t.call(&mut c, Raw, &["ACL", "SETUSER", "bad", "allchannels", "&a"]);
    t.call(&mut c, Raw, &["ACL", "SETUSER", "a b"]);
    t.call(&mut c, Raw, &["ACL", "GETUSER", "bad"]);
    t.call(&mut c, Raw, &["ACL", "SETUSER"]);
    for args in [
        &["ACL", "CAT"][..],
        &["ACL", "CAT", "nosuch"],
        &["ACL", "WHOAMI"],
        &["ACL", "GENPASS", "0"],
        &["ACL", "GENPASS", "4097"],
        &["ACL", "GENPASS", "x"],
        &["ACL", "LOAD"],
        &["ACL", "SAVE"],
        &["ACL", "LOG", "x"],
        &["ACL", "NOSUCH"],
        &["ACL", "HELP"],
        &["ACL", "DRYRUN", "bob", "get", "k1"],
        &["ACL", "DRYRUN", "bob", "get", "zz"],
        &["ACL", "DRYRUN", "bob", "set", "r1", "v"],
        &["ACL", "DRYRUN", "bob", "del", "k1"],
        &["ACL", "DRYRUN", "bob", "client", "list"],
        &["ACL", "DRYRUN", "bob", "client", "kill", "1.2.3.4:5"],
        &["ACL", "DRYRUN", "bob", "select", "1"],
        &["ACL", "DRYRUN", "bob", "select", "2"],
        &["ACL", "DRYRUN", "bob", "publish", "ch1", "m"],
        &["ACL", "DRYRUN", "bob", "publish", "xx", "m"],
        &["ACL", "DRYRUN", "bob", "get"],
        &["ACL", "DRYRUN", "nobody", "get", "k"],
        &["ACL", "DRYRUN", "bob", "nosuchcmd"],
        &["ACL", "DRYRUN", "erin", "set", "y1", "v"],
        &["ACL", "DRYRUN", "erin", "set", "x1", "v"],
        &["ACL", "DRYRUN", "carol", "flushall"],
        &["ACL", "DELUSER", "default"],
        &["ACL", "DELUSER", "alice", "nosuch", "dave"],
        &["ACL", "GETUSER", "alice"],
    ] {
        t.call(&mut c, Raw, args);
    }
    t.call(&mut c, Sorted, &["ACL", "CAT", "hash"]);
    t.call(&mut c, Sorted, &["ACL", "CAT", "STRING"]);
    t.call(&mut c, Shape, &["ACL", "GENPASS"]);
    t.call(&mut c, Shape, &["ACL", "GENPASS", "5"]);
    // RESP3: GETUSER is a map with a set of flags.
    t.call(&mut c, Shape, &["HELLO", "3"]);
    t.call(&mut c, Rules, &["ACL", "GETUSER", "bob"]);
    t.call(&mut c, Rules, &["ACL", "GETUSER", "erin"]);
    t.call(&mut c, Raw, &["ACL", "GETUSER", "nosuch"]);
    t.call(&mut c, Rules, &["ACL", "LIST"]);
    t.out
}

#[test]
fn acl_rules_and_introspection_match_redis() {
    both(
        "acl_rules_and_introspection_match_redis",
        Builder::pinnacle(),
        Builder::redis(),
        rules_scenario,
    );
}

fn auth_scenario(s: &Server) -> Transcript {
    let mut t = Script::new();
    use Norm::*;
    let mut admin = s.conn().expect("admin");
    let mut c = s.conn().expect("user");
    t.call(&mut admin, Raw, &["ACL", "LOG", "RESET"]);
    t.call(
        &mut admin,
        Raw,
        &[
            "ACL",
            "SETUSER",
            "u",
            "on",
            ">pw",
            "~k*",
            "%R~r*",
            "+get",
            "+set",
            "+publish",
            "+multi",
            "+exec",
            "&ch*",
            "+acl|whoami",
            "+ping",
        ],
    );
    for args in [
        &["AUTH", "u", "wrong"][..],
        &["AUTH", "nobody", "x"],
        &["AUTH", "only-a-password"],
        &["HELLO", "3", "AUTH", "u", "wrong"],
        &["AUTH", "u", "pw"],
        &["ACL", "WHOAMI"],
        &["GET", "k1"],
        &["GET", "r1"],
        &["GET", "zz"],
        &["SET", "k1", "v"],
        &["SET", "r1", "v"],
        &["DEL", "k1"],
        &["CLIENT", "LIST"],
        &["PUBLISH", "ch1", "m"],
        &["PUBLISH", "other", "m"],
        &["MULTI"],
        &["GET", "zz"],
        &["SET", "k2", "v"],
        &["EXEC"],
        &["AUTH", "default", "x"],
        &["ACL", "WHOAMI"],
    ] {
        t.call(&mut c, Raw, args);
    }
    t.call(&mut admin, Log, &["ACL", "LOG"]);
    t.call(&mut admin, Log, &["ACL", "LOG", "2"]);
    t.call(&mut admin, Log, &["ACL", "LOG", "-1"]);
    t.call(&mut admin, Shape, &["HELLO", "3"]);
    t.call(&mut admin, Log, &["ACL", "LOG", "1"]);
    t.call(&mut admin, Shape, &["HELLO", "2"]);
    t.call(&mut admin, Raw, &["ACL", "LOG", "RESET"]);
    t.call(&mut admin, Raw, &["ACL", "LOG"]);
    // Channels: a pattern subscription must equal an ACL pattern; unsubscribing is free.
    let mut sub = s.conn().expect("sub");
    t.call(&mut sub, Raw, &["AUTH", "u", "pw"]);
    t.call(
        &mut admin,
        Raw,
        &[
            "ACL",
            "SETUSER",
            "u",
            "+subscribe",
            "+psubscribe",
            "+unsubscribe",
        ],
    );
    t.call(&mut sub, Raw, &["SUBSCRIBE", "other"]);
    t.call(&mut sub, Raw, &["PSUBSCRIBE", "ch*x"]);
    t.call(&mut sub, Raw, &["PSUBSCRIBE", "ch*"]);
    t.call(&mut sub, Raw, &["UNSUBSCRIBE", "whatever"]);
    t.call(&mut admin, Log, &["ACL", "LOG"]);
    // A disabled user can't log in; a deleted user's connections close.
    let mut c2 = s.conn().expect("c2");
    t.call(&mut c2, Raw, &["AUTH", "u", "pw"]);
    t.call(&mut admin, Raw, &["ACL", "SETUSER", "u", "off"]);
    t.call(&mut c2, Raw, &["GET", "k1"]);
    let mut c3 = s.conn().expect("c3");
    t.call(&mut c3, Raw, &["AUTH", "u", "pw"]);
    t.call(&mut admin, Raw, &["ACL", "DELUSER", "u"]);
    let (rest, closed) = c2
        .read_until_close(Duration::from_secs(10))
        // A reset is a close too.
        .unwrap_or((Vec::new(), true));
    t.note(
        "deleted user's connection closes",
        format!("{} {closed}", esc(&rest)),
    );
    // requirepass is the default user's password.
    t.call(&mut admin, Raw, &["CONFIG", "SET", "requirepass", "sekret"]);
    t.call(&mut admin, Rules, &["ACL", "LIST"]);
    let mut c4 = s.conn().expect("c4");
    t.call(&mut c4, Raw, &["PING"]);
    t.call(&mut c4, Raw, &["AUTH", "nope"]);
    t.call(&mut c4, Raw, &["AUTH", "sekret"]);
    t.call(&mut c4, Raw, &["ACL", "WHOAMI"]);
    t.call(&mut c4, Raw, &["CONFIG", "SET", "requirepass", ""]);
    t.call(&mut c4, Rules, &["ACL", "GETUSER", "default"]);
    t.call(&mut c4, Raw, &["AUTH", "x"]);
    t.out
}

#[test]
fn acl_auth_permissions_and_log_match_redis() {
    both(
        "acl_auth_permissions_and_log_match_redis",
        Builder::pinnacle(),
        Builder::redis(),
        auth_scenario,
    );
}

const ACL_FILE: &str = "user default on nopass ~* &* +@all\nuser alice on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~a* +get +set\n";

/// `ACL SAVE`'s file with the single-command rules of each line sorted.
fn saved(path: &Path) -> String {
    let text = std::fs::read(path).expect("read acl file");
    text.split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(&norm_rules(l)).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn acl_file_load_save_match_redis() {
    let test = "acl_file_load_save_match_redis";
    if !tools::available(test, &["redis-server"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runs = Vec::new();
    for (name, builder) in [
        ("pinnacle", Builder::pinnacle()),
        ("redis", Builder::redis()),
    ] {
        let path = dir.path().join(format!("{name}.acl"));
        std::fs::write(&path, ACL_FILE).expect("write acl file");
        let shown = path.display().to_string();
        let s = builder
            .args(["--aclfile", shown.as_str()])
            .start()
            .expect("start");
        let mut t = Script::new();
        let mut admin = s.conn().expect("admin");
        let mut alice = s.conn().expect("alice");
        t.call(&mut admin, Norm::Rules, &["ACL", "LIST"]);
        t.call(&mut alice, Norm::Raw, &["AUTH", "alice", "password"]);
        t.call(&mut alice, Norm::Raw, &["SET", "a1", "v"]);
        t.call(&mut alice, Norm::Raw, &["GET", "b1"]);
        t.call(
            &mut admin,
            Norm::Raw,
            &[
                "ACL",
                "SETUSER",
                "bob",
                "on",
                ">x",
                "+@read",
                "~*",
                "(+set ~s*)",
            ],
        );
        t.call(&mut admin, Norm::Raw, &["ACL", "SAVE"]);
        t.note("saved file", saved(&path));
        // A bad file changes nothing and names every bad line.
        std::fs::write(
            &path,
            "user x on +nosuch\nbogus line\nuser y on\nuser y off\n",
        )
        .expect("write bad");
        let r = admin.call(&["ACL", "LOAD"]).expect("load");
        t.note("load bad file", esc(&r).replace(&shown, "<file>"));
        t.call(&mut admin, Norm::Rules, &["ACL", "LIST"]);
        // A good file replaces every user; connections of replaced users close.
        std::fs::write(&path, "user carol on nopass +@all ~*\n").expect("write good");
        t.call(&mut admin, Norm::Raw, &["ACL", "LOAD"]);
        let (rest, closed) = alice
            .read_until_close(Duration::from_secs(10))
            // A reset is a close too.
            .unwrap_or((Vec::new(), true));
        t.note(
            "replaced user's connection closes",
            format!("{} {closed}", esc(&rest)),
        );
        t.call(&mut admin, Norm::Rules, &["ACL", "LIST"]);
        std::fs::remove_file(&path).expect("rm");
        let r = admin.call(&["ACL", "LOAD"]).expect("load missing");
        t.note("load missing file", esc(&r).replace(&shown, "<file>"));
        runs.push(t.out);
    }
    compare(test, &runs[0], &runs[1]);
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_acl_file_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.acl");
    std::fs::write(&path, "user a on +nosuchcommand\n").expect("write");
    let port = free_port().expect("port");
    let mut child = Proc(
        Command::new(pinnacle_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path().join("data"))
            .arg("--aclfile")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pinnacle"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "pinnacle kept running with a bad ACL file"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let expect = format!(
        "Aborting startup because of ACL errors: {}:1: Error in applying operation '+nosuchcommand': Unknown command or category name in ACL. WARNING: ACL errors detected",
        path.display()
    );
    assert!(err.contains(&expect), "stderr: {err}");
}

/// A non-loopback IPv4 address of this machine (`hostname -I`), if there is one.
fn non_loopback_ip() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

/// A dummy network interface with a TEST-NET-2 address, for machines with only loopback.
struct DummyIf;

impl DummyIf {
    const NAME: &'static str = "pinnacleacl0";
    const IP: &'static str = "198.51.100.77";

    /// Adds it (root only; `None` if that is not possible).
    fn add() -> Option<DummyIf> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let ok = ip(&["link", "add", Self::NAME, "type", "dummy"])
            && ip(&[
                "addr",
                "add",
                &format!("{}/32", Self::IP),
                "dev",
                Self::NAME,
            ])
            && ip(&["link", "set", Self::NAME, "up"]);
        let guard = DummyIf;
        ok.then_some(guard)
    }
}

impl Drop for DummyIf {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", Self::NAME])
            .status();
    }
}

/// Starts pinnacle bound to 0.0.0.0 (the harness binds 127.0.0.1 only) with `extra` flags.
fn pinnacle_on_all(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let child = Proc(
        Command::new(pinnacle_bin())
            .args(["--port", &port.to_string(), "--bind", "0.0.0.0"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pinnacle"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = RawConn::connect(port) {
            if c.call(&["PING"]).is_ok() {
                return child;
            }
        }
        assert!(Instant::now() < deadline, "pinnacle did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a client connecting to `ip:port` reads after sending PING, and whether the server
/// closed the connection (EOF or reset) within 2 s.
fn first_words(ip: &str, port: u16) -> (String, bool) {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    // The reply may race the server's close; a failed send is fine.
    let _ = s.write_all(b"PING\r\n");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(e) => panic!("read from {addr}: {e}"),
        }
    };
    (esc(&got), closed)
}

#[test]
fn protected_mode_denies_non_loopback_clients_like_redis() {
    let test = "protected_mode_denies_non_loopback_clients_like_redis";
    // No real interface address: as root, a dummy interface gives one (removed on drop).
    let mut _dummy = None;
    let ip = non_loopback_ip().or_else(|| {
        _dummy = DummyIf::add();
        _dummy.as_ref().map(|_| DummyIf::IP.to_string())
    });
    let Some(ip) = ip else {
        let msg = format!(
            "SKIP {test}: this machine has no non-loopback IPv4 address (and adding a dummy interface needs root and `ip`)"
        );
        if std::env::var("REDIS_TESTS_STRICT").is_ok_and(|v| v == "1") {
            panic!("{msg} (and REDIS_TESTS_STRICT=1)");
        }
        eprintln!("{msg}");
        return;
    };
    if !tools::available(test, &["redis-server"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut results = Vec::new();
    for (i, extra) in [
        &[][..],
        &["--requirepass", "pw"],
        &["--protected-mode", "no"],
    ]
    .iter()
    .enumerate()
    {
        let port = free_port().expect("port");
        let _p = pinnacle_on_all(&dir.path().join(format!("p{i}")), port, extra);
        let ours = (first_words(&ip, port), first_words("127.0.0.1", port));
        let r = Builder::redis()
            .args(["--bind", "0.0.0.0"])
            .args(extra.iter().copied())
            .start()
            .expect("redis");
        let theirs = (
            first_words(&ip, r.port()),
            first_words("127.0.0.1", r.port()),
        );
        assert_eq!(ours, theirs, "{extra:?}: pinnacle vs redis");
        results.push(ours);
    }
    // The default case really was refused (the comparison alone could pass if both served).
    assert!(results[0]
        .0
         .0
        .starts_with("-DENIED Redis is running in protected mode"));
    assert!(results[0].0 .1, "the connection closes");
    assert_eq!(results[0].1 .0, "+PONG\\r\\n");
}

#[test]
fn acls_are_node_local_on_a_raft_cluster() {
    let cluster = Cluster::start(3).expect("cluster");
    let ids = cluster.ids();
    let (n0, n1) = (ids[0], ids[1]);
    let mut a = cluster.conn(n0).expect("node 0");
    let mut b = cluster.conn(n1).expect("node 1");
    assert_eq!(
        a.call(&["ACL", "SETUSER", "u", "on", "nopass", "+get", "~*"])
            .expect("setuser"),
        b"+OK\r\n"
    );
    assert_eq!(
        b.call(&["ACL", "USERS"]).expect("users"),
        b"*1\r\n$7\r\ndefault\r\n",
        "ACL SETUSER is not replicated"
    );
    // A password on node 0's default user: unauthenticated clients get no CLUSTER command.
    assert_eq!(
        a.call(&["ACL", "SETUSER", "default", "resetpass", ">pw"])
            .expect("pw"),
        b"+OK\r\n"
    );
    let mut anon = cluster.conn(n0).expect("anon");
    for args in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "NODES"],
        &["CLUSTER", "SLOTS"],
        &["CLUSTER", "MYID"],
    ] {
        assert_eq!(
            anon.call(args).expect("cluster"),
            b"-NOAUTH Authentication required.\r\n",
            "{args:?}"
        );
    }
    assert_eq!(anon.call(&["AUTH", "u", "x"]).expect("auth u"), b"+OK\r\n");
    assert_eq!(
        anon.call(&["CLUSTER", "INFO"]).expect("cluster info as u"),
        b"-NOPERM this user has no permissions to run the 'cluster|info' command\r\n"
    );
    assert_eq!(anon.call(&["AUTH", "pw"]).expect("auth"), b"+OK\r\n");
    let info = anon.call(&["CLUSTER", "INFO"]).expect("cluster info");
    assert!(show(&info).contains("cluster_state:"), "{}", show(&info));
    // Node 1 is untouched.
    let mut anon1 = cluster.conn(n1).expect("anon 1");
    let info = anon1.call(&["CLUSTER", "INFO"]).expect("cluster info 1");
    assert!(show(&info).contains("cluster_state:"), "{}", show(&info));
}
