//! JSON-lines form of histories (reliability.md §1): one line per event,
//! `{"process", "type": "invoke"|"ok"|"fail"|"info", "f", "key", "value", "t_mono_ns"}`.

use super::{ListHistory, Mop, Txn, TxnOutcome};
use crate::history::{History, Op, Outcome, Ret};
use std::fmt::Write as _;

/// Escapes `s` as a JSON string.
pub(crate) fn json_str(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn mops_json(t: &Txn, with_results: bool) -> String {
    let parts: Vec<String> = t
        .mops
        .iter()
        .map(|m| match m {
            Mop::Append { key, value } => {
                format!("[\"append\",{},{value}]", json_str(key.as_bytes()))
            }
            Mop::Read { key, result } => {
                let r = match result {
                    Some(r) if with_results => format!("{r:?}"),
                    _ => "null".into(),
                };
                format!("[\"r\",{},{r}]", json_str(key.as_bytes()))
            }
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// The invoke line and the completion line of one transaction.
pub fn txn_json(t: &Txn) -> [String; 2] {
    let keys: Vec<&str> = t.mops.iter().map(Mop::key).collect();
    let key = json_str(keys.first().copied().unwrap_or("").as_bytes());
    let invoke = format!(
        "{{\"process\":{},\"index\":{},\"type\":\"invoke\",\"f\":\"txn\",\"key\":{key},\"value\":{},\"t_mono_ns\":{}}}",
        t.client,
        t.id,
        mops_json(t, false),
        t.invoke
    );
    let (ty, at) = match t.outcome {
        TxnOutcome::Ok { at } => ("ok", at.to_string()),
        TxnOutcome::Fail { at } => ("fail", at.to_string()),
        TxnOutcome::Indeterminate => ("info", "null".into()),
    };
    let done = format!(
        "{{\"process\":{},\"index\":{},\"type\":\"{ty}\",\"f\":\"txn\",\"key\":{key},\"value\":{},\"t_mono_ns\":{at}}}",
        t.client,
        t.id,
        mops_json(t, true)
    );
    [invoke, done]
}

/// Every event of a list-append history as JSON lines, in time order.
pub fn history_json_lines(h: &ListHistory) -> String {
    let mut events: Vec<(u64, u8, String)> = Vec::new();
    for t in &h.txns {
        let [inv, done] = txn_json(t);
        events.push((t.invoke, 0, inv));
        events.push((t.completion(), 1, done));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut out = String::new();
    for (_, _, l) in events {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn op_f(op: &Op) -> (&'static str, String) {
    match op {
        Op::Set(v) => ("set", json_str(v)),
        Op::SetGet(v) => ("swap", json_str(v)),
        Op::Get => ("get", "null".into()),
        Op::Incr => ("incr", "null".into()),
        Op::Del => ("del", "null".into()),
    }
}

fn ret_json(r: &Ret) -> String {
    match r {
        Ret::Ok => "\"OK\"".into(),
        Ret::Value(Some(v)) => json_str(v),
        Ret::Value(None) => "null".into(),
        Ret::Int(n) => n.to_string(),
        Ret::NotInteger => "\"ERR not an integer\"".into(),
    }
}

/// Every event of a register/counter history as JSON lines, in time order (failed ops are not
/// in a [`History`]; the recorder only counts them).
pub fn register_json_lines(h: &History) -> String {
    let mut events: Vec<(u64, u8, String)> = Vec::new();
    for o in &h.ops {
        let (f, arg) = op_f(&o.op);
        let key = json_str(&o.key);
        events.push((
            o.invoke,
            0,
            format!(
                "{{\"process\":{},\"index\":{},\"type\":\"invoke\",\"f\":\"{f}\",\"key\":{key},\"value\":{arg},\"t_mono_ns\":{}}}",
                o.client, o.id, o.invoke
            ),
        ));
        let line = match &o.outcome {
            Outcome::Returned { at, ret } => format!(
                "{{\"process\":{},\"index\":{},\"type\":\"ok\",\"f\":\"{f}\",\"key\":{key},\"value\":{},\"t_mono_ns\":{at}}}",
                o.client,
                o.id,
                ret_json(ret)
            ),
            Outcome::Indeterminate => format!(
                "{{\"process\":{},\"index\":{},\"type\":\"info\",\"f\":\"{f}\",\"key\":{key},\"value\":{arg},\"t_mono_ns\":null}}",
                o.client, o.id
            ),
        };
        events.push((o.completion(), 1, line));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut out = String::new();
    for (_, _, l) in events {
        out.push_str(&l);
        out.push('\n');
    }
    out
}
