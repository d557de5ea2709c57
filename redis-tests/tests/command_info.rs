//! For every command the server under test lists in `COMMAND`, its `COMMAND INFO` reply equals
//! redis-server 7.0.15's, in RESP2 and RESP3. Flags and ACL categories are sets, so their order is
//! not compared; a container command (CLIENT, CONFIG, ...) may list fewer subcommands than Redis
//! (the ones it implements), but each one it lists must equal Redis's entry.

use redis_tests::frame::{parse_one, Value};
use redis_tests::{show, Builder, RawConn, Server};

/// Sort everything that is a set: RESP3 `~` replies, and in RESP2 the flags (index 2) and ACL
/// categories (index 6) of a command entry and the `flags` of each key spec.
fn normalize(v: &Value, is_entry: bool) -> Value {
    match v {
        Value::Set(items) => {
            let mut items: Vec<Value> = items.iter().map(|i| normalize(i, false)).collect();
            items.sort();
            Value::Set(items)
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(|i| normalize(i, false)).collect();
            if is_entry && items.len() == 10 {
                for idx in [2, 6] {
                    if let Value::Array(s) = &mut items[idx] {
                        s.sort();
                    }
                }
                if let Value::Array(specs) = &mut items[8] {
                    for spec in specs.iter_mut() {
                        sort_spec_flags(spec);
                    }
                }
                if let Value::Array(subs) = &items[9] {
                    // Redis lists subcommands in hash-table order, which varies between calls.
                    let mut subs: Vec<Value> = subs.iter().map(|s| normalize(s, true)).collect();
                    subs.sort_by_key(name_of);
                    items[9] = Value::Array(subs);
                }
            }
            Value::Array(items)
        }
        Value::Map(pairs) => Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (normalize(k, false), normalize(v, false)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// In RESP2 a key spec is a flat array `["flags", [..], "begin_search", ...]`.
fn sort_spec_flags(spec: &mut Value) {
    if let Value::Array(kv) = spec {
        for i in (0..kv.len().saturating_sub(1)).step_by(2) {
            if kv[i].as_bytes() == Some(b"flags") {
                if let Value::Array(f) = &mut kv[i + 1] {
                    f.sort();
                }
            }
        }
    }
}

fn name_of(entry: &Value) -> String {
    entry
        .as_list()
        .and_then(|e| e.first())
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Compare two normalized entries; subcommands of `ours` must be a subset of `theirs`.
fn compare_entry(
    ours: &Value,
    theirs: &Value,
    path: &str,
    out: &mut Vec<String>,
    newer: &mut Vec<String>,
) {
    let (Some(a), Some(b)) = (ours.as_list(), theirs.as_list()) else {
        if ours != theirs {
            out.push(format!("{path}: {ours:?}\n    redis: {theirs:?}"));
        }
        return;
    };
    if a.len() != 10 || b.len() != 10 {
        out.push(format!(
            "{path}: entry has {} elements, redis {}",
            a.len(),
            b.len()
        ));
        return;
    }
    const FIELDS: [&str; 9] = [
        "name",
        "arity",
        "flags",
        "first_key",
        "last_key",
        "step",
        "acl_categories",
        "tips",
        "key_specs",
    ];
    for (i, field) in FIELDS.iter().enumerate() {
        if a[i] != b[i] {
            out.push(format!("{path} {field}: {:?}\n    redis: {:?}", a[i], b[i]));
        }
    }
    let (Some(subs), Some(theirs_subs)) = (a[9].as_list(), b[9].as_list()) else {
        out.push(format!("{path} subcommands: {:?} vs {:?}", a[9], b[9]));
        return;
    };
    for sub in subs {
        let name = name_of(sub);
        match theirs_subs.iter().find(|t| name_of(t) == name) {
            Some(t) => compare_entry(sub, t, &format!("{path} > {name}"), out, newer),
            // Added after 7.0 (e.g. CLIENT SETINFO in 7.2): nothing to compare with.
            None => newer.push(name),
        }
    }
}

fn command_info(c: &mut RawConn, name: &str) -> Value {
    let raw = c.call(&["COMMAND", "INFO", name]).expect("COMMAND INFO");
    let v = parse_one(&raw).unwrap_or_else(|e| panic!("COMMAND INFO {name}: {e}: {}", show(&raw)));
    match v.as_list() {
        Some([entry]) => entry.clone(),
        _ => panic!(
            "COMMAND INFO {name}: expected one entry, got {}",
            show(&raw)
        ),
    }
}

fn check(protocol: u8) {
    let subject = Server::subject().expect("start server under test");
    let reference = Builder::redis_cluster()
        .start()
        .expect("start redis-server");
    let mut a = subject.conn().expect("connect");
    let mut b = reference.conn().expect("connect");
    if protocol == 3 {
        a.call(&["HELLO", "3"]).expect("HELLO");
        b.call(&["HELLO", "3"]).expect("HELLO");
    }
    let all = a.call_value(&["COMMAND"]).expect("COMMAND");
    let entries = all.as_list().expect("COMMAND is an array").to_vec();
    assert!(!entries.is_empty(), "COMMAND lists nothing");
    let count = a.call_value(&["COMMAND", "COUNT"]).expect("COMMAND COUNT");
    assert_eq!(
        count,
        Value::Int(entries.len() as i64),
        "COMMAND COUNT vs COMMAND"
    );

    let mut failures = Vec::new();
    let mut newer = Vec::new();
    for entry in &entries {
        let name = name_of(entry);
        let ours = command_info(&mut a, &name);
        let theirs = command_info(&mut b, &name);
        if theirs == Value::Null {
            newer.push(name);
            continue;
        }
        // COMMAND's own entry and COMMAND INFO's must agree too.
        if normalize(entry, true) != normalize(&ours, true) {
            failures.push(format!("{name}: COMMAND and COMMAND INFO entries differ"));
        }
        compare_entry(
            &normalize(&ours, true),
            &normalize(&theirs, true),
            &name,
            &mut failures,
            &mut newer,
        );
    }
    let unknown = a
        .call(&["COMMAND", "INFO", "nosuchcommand"])
        .expect("COMMAND INFO");
    let unknown_ref = b
        .call(&["COMMAND", "INFO", "nosuchcommand"])
        .expect("COMMAND INFO");
    if unknown != unknown_ref {
        failures.push(format!(
            "COMMAND INFO nosuchcommand: {} vs redis {}",
            show(&unknown),
            show(&unknown_ref)
        ));
    }
    eprintln!(
        "RESP{protocol}: compared {} commands; not in redis 7.0.15 (skipped): {newer:?}",
        entries.len() - newer.len()
    );
    assert!(
        failures.is_empty(),
        "{} differences (RESP{protocol}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn command_info_matches_redis_resp2() {
    if !redis_tests::tools::available("command_info_matches_redis_resp2", &["redis-server"]) {
        return;
    }
    check(2);
}

#[test]
fn command_info_matches_redis_resp3() {
    if !redis_tests::tools::available("command_info_matches_redis_resp3", &["redis-server"]) {
        return;
    }
    check(3);
}
