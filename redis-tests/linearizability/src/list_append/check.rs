//! The list-append checker: element checks per key, then cycles in the dependency graph.
//!
//! Version order per key: the longest list read (every read must be a prefix of it). Graph
//! nodes: `ok` transactions and indeterminate ones whose appends were observed (they did
//! commit); failed and unobserved indeterminate ones are left out. Edges (Adya/Elle):
//! ww (consecutive versions by different writers), wr (writer of the last element a read saw →
//! reader), rw (reader → writer of the first element it did not see) and real time (T1 → T2
//! when T1 returned before T2 was invoked, built through a chain of barrier nodes so it stays
//! linear in size).

use super::{ListHistory, Mop, Txn, TxnOutcome};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

/// How many cycles a verdict lists at most.
const MAX_CYCLES: usize = 5;

/// Kind of a dependency edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Write-write: the source's append directly precedes the target's in the version order.
    Ww,
    /// Write-read: the target read the source's append as its last element.
    Wr,
    /// Read-write (anti-dependency): the source read a version the target's append follows.
    Rw,
    /// Real time: the source returned before the target was invoked.
    Realtime,
}

/// A reason a history is not strict-serializable (or not even well-formed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// The same value appended twice in the history (a workload bug, not a server bug).
    BadHistory(String),
    /// An acknowledged append missing from the last read of its key (invoked after it returned).
    Lost {
        /// Key.
        key: String,
        /// The missing element.
        value: u64,
        /// Its (ok) writer.
        writer: u64,
        /// The later read that lacks it.
        reader: u64,
    },
    /// A read listing one element twice.
    Duplicate {
        /// Key.
        key: String,
        /// The element.
        value: u64,
        /// The reading transaction.
        reader: u64,
    },
    /// A read element nobody appended to that key.
    Garbage {
        /// Key.
        key: String,
        /// The element.
        value: u64,
        /// The reading transaction.
        reader: u64,
    },
    /// A read element appended by a transaction that definitely failed.
    AbortedRead {
        /// Key.
        key: String,
        /// The element.
        value: u64,
        /// The failed writer.
        writer: u64,
        /// The reading transaction.
        reader: u64,
    },
    /// Two reads of a key that are not prefixes of one another (diverging histories).
    Incompatible {
        /// Key.
        key: String,
        /// One read.
        a: (u64, Vec<u64>),
        /// The other.
        b: (u64, Vec<u64>),
    },
    /// A read that does not reflect its own transaction's earlier appends (or sees later ones).
    Internal {
        /// The transaction.
        txn: u64,
        /// Key.
        key: String,
        /// What it read.
        read: Vec<u64>,
    },
    /// A cycle in the dependency graph.
    Cycle {
        /// Elle's name: G0, G1c, G-single, G2, with `-realtime` when a real-time edge is in it.
        name: String,
        /// The cycle as (from, kind, to) steps, by transaction id.
        steps: Vec<(u64, EdgeKind, u64)>,
    },
}

/// The checker's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListVerdict {
    /// Every anomaly found (empty: the history is strict-serializable as far as checked).
    pub anomalies: Vec<Anomaly>,
    /// Transactions in the dependency graph.
    pub graph_txns: usize,
    /// Edges in it (real-time edges counted through barriers).
    pub graph_edges: usize,
}

impl ListVerdict {
    /// True when nothing was found.
    pub fn is_ok(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// True if some anomaly matches `f`.
    pub fn has(&self, f: impl Fn(&Anomaly) -> bool) -> bool {
        self.anomalies.iter().any(f)
    }
}

/// One read seen by the checker.
struct ReadSeen {
    txn: usize,
    key: String,
    /// The whole list it returned.
    full: Vec<u64>,
    /// Length of the part written by other transactions (a prefix of `full`).
    external: usize,
}

/// Checks a list-append history; see the module docs.
pub fn check_list_append(h: &ListHistory) -> ListVerdict {
    let txns = &h.txns;
    let mut out = ListVerdict::default();
    let mut writer: HashMap<(&str, u64), usize> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for m in &t.mops {
            if let Mop::Append { key, value } = m {
                if writer.insert((key.as_str(), *value), i).is_some() {
                    out.anomalies.push(Anomaly::BadHistory(format!(
                        "value {value} appended to {key} twice (T{})",
                        t.id
                    )));
                }
            }
        }
    }
    let reads = collect_reads(txns, &writer, &mut out);
    let orders = version_orders(txns, &reads, &mut out);
    lost_appends(txns, &reads, &orders, &mut out);
    let (adj, n_real) = build_graph(txns, &reads, &orders, &writer);
    out.graph_txns = (0..n_real).filter(|&i| !adj[i].is_empty()).count();
    out.graph_edges = adj.iter().map(Vec::len).sum();
    for cycle in find_cycles(&adj, n_real) {
        let steps: Vec<(u64, EdgeKind, u64)> = cycle
            .iter()
            .map(|&(a, k, b)| (txns[a].id, k, txns[b].id))
            .collect();
        out.anomalies.push(Anomaly::Cycle {
            name: cycle_name(&steps),
            steps,
        });
    }
    out
}

/// The reads of `ok` transactions, with the per-element and internal checks done.
fn collect_reads(
    txns: &[Txn],
    writer: &HashMap<(&str, u64), usize>,
    out: &mut ListVerdict,
) -> Vec<ReadSeen> {
    let mut reads = Vec::new();
    for (i, t) in txns.iter().enumerate() {
        if !t.is_ok() {
            continue;
        }
        let mut own: HashMap<&str, Vec<u64>> = HashMap::new();
        for m in &t.mops {
            match m {
                Mop::Append { key, value } => own.entry(key).or_default().push(*value),
                Mop::Read {
                    key,
                    result: Some(full),
                } => {
                    let mine = own.get(key.as_str()).map_or(&[][..], Vec::as_slice);
                    let mut seen = std::collections::HashSet::new();
                    for &v in full {
                        if !seen.insert(v) {
                            out.anomalies.push(Anomaly::Duplicate {
                                key: key.clone(),
                                value: v,
                                reader: t.id,
                            });
                        }
                        match writer.get(&(key.as_str(), v)) {
                            None => out.anomalies.push(Anomaly::Garbage {
                                key: key.clone(),
                                value: v,
                                reader: t.id,
                            }),
                            Some(&w) if matches!(txns[w].outcome, TxnOutcome::Fail { .. }) => {
                                out.anomalies.push(Anomaly::AbortedRead {
                                    key: key.clone(),
                                    value: v,
                                    writer: txns[w].id,
                                    reader: t.id,
                                })
                            }
                            Some(&w) if w == i && !mine.contains(&v) => {
                                // Sees an append its own transaction makes only later.
                                out.anomalies.push(Anomaly::Internal {
                                    txn: t.id,
                                    key: key.clone(),
                                    read: full.clone(),
                                })
                            }
                            _ => {}
                        }
                    }
                    if !full.ends_with(mine) {
                        out.anomalies.push(Anomaly::Internal {
                            txn: t.id,
                            key: key.clone(),
                            read: full.clone(),
                        });
                    }
                    reads.push(ReadSeen {
                        txn: i,
                        key: key.clone(),
                        full: full.clone(),
                        external: full.len().saturating_sub(mine.len()),
                    });
                }
                Mop::Read { result: None, .. } => {}
            }
        }
    }
    reads
}

/// Per key, the longest read; reports reads that are not a prefix of it.
fn version_orders<'a>(
    txns: &[Txn],
    reads: &'a [ReadSeen],
    out: &mut ListVerdict,
) -> BTreeMap<&'a str, &'a ReadSeen> {
    let mut longest: BTreeMap<&str, &ReadSeen> = BTreeMap::new();
    for r in reads {
        let e = longest.entry(r.key.as_str()).or_insert(r);
        if r.full.len() > e.full.len() {
            *e = r;
        }
    }
    let mut reported: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for r in reads {
        let l = longest[r.key.as_str()];
        if !l.full.starts_with(&r.full) && reported.insert(r.key.as_str()) {
            out.anomalies.push(Anomaly::Incompatible {
                key: r.key.clone(),
                a: (txns[r.txn].id, r.full.clone()),
                b: (txns[l.txn].id, l.full.clone()),
            });
        }
    }
    longest
}

/// Acknowledged appends missing from the key's last read that started after they returned.
fn lost_appends(
    txns: &[Txn],
    reads: &[ReadSeen],
    orders: &BTreeMap<&str, &ReadSeen>,
    out: &mut ListVerdict,
) {
    let mut last: BTreeMap<&str, &ReadSeen> = BTreeMap::new();
    for r in reads {
        let e = last.entry(r.key.as_str()).or_insert(r);
        if txns[r.txn].invoke > txns[e.txn].invoke {
            *e = r;
        }
    }
    for t in txns.iter().filter(|t| t.is_ok()) {
        for m in &t.mops {
            let Mop::Append { key, value } = m else {
                continue;
            };
            let Some(r) = last.get(key.as_str()) else {
                continue;
            };
            if txns[r.txn].invoke > t.completion() && !r.full.contains(value) {
                // Only when the longest read lacks it too: otherwise the prefix check already
                // reported the two diverging reads.
                if orders
                    .get(key.as_str())
                    .is_none_or(|o| !o.full.contains(value))
                {
                    out.anomalies.push(Anomaly::Lost {
                        key: key.clone(),
                        value: *value,
                        writer: t.id,
                        reader: txns[r.txn].id,
                    });
                }
            }
        }
    }
}

/// The dependency graph: nodes `0..txns.len()` are transactions, the rest real-time barriers.
fn build_graph(
    txns: &[Txn],
    reads: &[ReadSeen],
    orders: &BTreeMap<&str, &ReadSeen>,
    writer: &HashMap<(&str, u64), usize>,
) -> (Vec<Vec<(usize, EdgeKind)>>, usize) {
    let n = txns.len();
    let mut member = vec![false; n];
    for (i, t) in txns.iter().enumerate() {
        member[i] = t.is_ok();
    }
    for o in orders.values() {
        for &v in &o.full {
            if let Some(&w) = writer.get(&(o.key.as_str(), v)) {
                if matches!(txns[w].outcome, TxnOutcome::Indeterminate) {
                    member[w] = true;
                }
            }
        }
    }
    let mut adj: Vec<Vec<(usize, EdgeKind)>> = vec![Vec::new(); n];
    let edge = |adj: &mut Vec<Vec<(usize, EdgeKind)>>, a: usize, b: usize, k: EdgeKind| {
        if a != b && member[a] && member[b] && !adj[a].contains(&(b, k)) {
            adj[a].push((b, k));
        }
    };
    let w_of = |key: &str, v: u64| writer.get(&(key, v)).copied();
    for o in orders.values() {
        for pair in o.full.windows(2) {
            if let (Some(a), Some(b)) = (w_of(&o.key, pair[0]), w_of(&o.key, pair[1])) {
                edge(&mut adj, a, b, EdgeKind::Ww);
            }
        }
    }
    for r in reads {
        let seen = &r.full[..r.external];
        if let Some(w) = seen.last().and_then(|&v| w_of(&r.key, v)) {
            edge(&mut adj, w, r.txn, EdgeKind::Wr);
        }
        let order = &orders[r.key.as_str()].full;
        if order.starts_with(seen) {
            if let Some(w) = order.get(seen.len()).and_then(|&v| w_of(&r.key, v)) {
                edge(&mut adj, r.txn, w, EdgeKind::Rw);
            }
        }
    }
    // Real time through barriers: T → B(T's completion) → later barriers → S invoked after it.
    let mut done: Vec<(u64, usize)> = (0..n)
        .filter(|&i| member[i] && txns[i].completion() != u64::MAX)
        .map(|i| (txns[i].completion(), i))
        .collect();
    done.sort_unstable();
    let base = n;
    adj.resize(n + done.len(), Vec::new());
    for (b, &(_, t)) in done.iter().enumerate() {
        adj[t].push((base + b, EdgeKind::Realtime));
        if b + 1 < done.len() {
            adj[base + b].push((base + b + 1, EdgeKind::Realtime));
        }
    }
    for (s, t) in txns.iter().enumerate() {
        if !member[s] {
            continue;
        }
        // The last barrier strictly before s's invoke.
        let k = done.partition_point(|&(at, _)| at < t.invoke);
        if k > 0 {
            adj[base + k - 1].push((s, EdgeKind::Realtime));
        }
    }
    (adj, n)
}

/// Strongly connected components (iterative Tarjan), then one shortest cycle through a
/// transaction of each non-trivial component, with barrier hops merged into one real-time step.
fn find_cycles(
    adj: &[Vec<(usize, EdgeKind)>],
    n_real: usize,
) -> Vec<Vec<(usize, EdgeKind, usize)>> {
    let comp = tarjan(adj);
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for (v, &c) in comp.iter().enumerate().take(n_real) {
        let _ = v;
        *sizes.entry(c).or_default() += 1;
    }
    let mut cycles = Vec::new();
    let mut done_comp = std::collections::HashSet::new();
    for v in 0..n_real {
        let c = comp[v];
        if sizes.get(&c).copied().unwrap_or(0) < 2 || !done_comp.insert(c) {
            continue;
        }
        if let Some(cyc) = shortest_cycle(adj, &comp, v) {
            cycles.push(merge_barriers(&cyc, n_real));
        }
        if cycles.len() >= MAX_CYCLES {
            break;
        }
    }
    cycles
}

fn tarjan(adj: &[Vec<(usize, EdgeKind)>]) -> Vec<usize> {
    let n = adj.len();
    const UNSET: usize = usize::MAX;
    let (mut index, mut low, mut comp) = (vec![UNSET; n], vec![0; n], vec![UNSET; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut calls): (Vec<usize>, Vec<(usize, usize)>) = (Vec::new(), Vec::new());
    let (mut next, mut ncomp) = (0, 0);
    for s in 0..n {
        if index[s] != UNSET {
            continue;
        }
        index[s] = next;
        low[s] = next;
        next += 1;
        stack.push(s);
        on_stack[s] = true;
        calls.push((s, 0));
        while let Some(&mut (v, ref mut i)) = calls.last_mut() {
            if *i < adj[v].len() {
                let w = adj[v][*i].0;
                *i += 1;
                if index[w] == UNSET {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = ncomp;
                    if w == v {
                        break;
                    }
                }
                ncomp += 1;
            }
            if let Some(&(p, _)) = calls.last() {
                low[p] = low[p].min(low[v]);
            }
        }
    }
    comp
}

/// BFS from `start` back to itself inside its component.
fn shortest_cycle(
    adj: &[Vec<(usize, EdgeKind)>],
    comp: &[usize],
    start: usize,
) -> Option<Vec<(usize, EdgeKind, usize)>> {
    let c = comp[start];
    let mut prev: HashMap<usize, (usize, EdgeKind)> = HashMap::new();
    let mut q = VecDeque::from([start]);
    while let Some(v) = q.pop_front() {
        for &(w, k) in &adj[v] {
            if comp[w] != c {
                continue;
            }
            if w == start {
                let mut path = vec![(v, k, w)];
                let mut cur = v;
                while cur != start {
                    let (p, pk) = prev[&cur];
                    path.push((p, pk, cur));
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(w) {
                e.insert((v, k));
                q.push_back(w);
            }
        }
    }
    None
}

fn merge_barriers(
    path: &[(usize, EdgeKind, usize)],
    n_real: usize,
) -> Vec<(usize, EdgeKind, usize)> {
    let mut out: Vec<(usize, EdgeKind, usize)> = Vec::new();
    let mut from: Option<usize> = None;
    for &(a, k, b) in path {
        if a < n_real && b < n_real {
            out.push((a, k, b));
        } else if a < n_real {
            from = Some(a);
        } else if b < n_real {
            if let Some(f) = from.take() {
                out.push((f, EdgeKind::Realtime, b));
            }
        }
    }
    out
}

fn cycle_name(steps: &[(u64, EdgeKind, u64)]) -> String {
    let count = |k| steps.iter().filter(|s| s.1 == k).count();
    let base = match (count(EdgeKind::Rw), count(EdgeKind::Wr)) {
        (0, 0) => "G0",
        (0, _) => "G1c",
        (1, _) => "G-single",
        _ => "G2",
    };
    if count(EdgeKind::Realtime) > 0 {
        format!("{base}-realtime")
    } else {
        base.to_string()
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EdgeKind::Ww => "ww",
            EdgeKind::Wr => "wr",
            EdgeKind::Rw => "rw",
            EdgeKind::Realtime => "rt",
        })
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::BadHistory(s) => write!(f, "bad history: {s}"),
            Anomaly::Lost {
                key,
                value,
                writer,
                reader,
            } => write!(
                f,
                "lost append: {key} {value} acknowledged to T{writer}, missing from T{reader}'s later read"
            ),
            Anomaly::Duplicate { key, value, reader } => {
                write!(f, "duplicate: T{reader} read {value} twice in {key}")
            }
            Anomaly::Garbage { key, value, reader } => {
                write!(f, "garbage: T{reader} read {value} in {key}, never appended there")
            }
            Anomaly::AbortedRead {
                key,
                value,
                writer,
                reader,
            } => write!(
                f,
                "aborted read: T{reader} read {key} {value} from T{writer}, which failed"
            ),
            Anomaly::Incompatible { key, a, b } => write!(
                f,
                "incompatible orders of {key}: T{} read {:?}, T{} read {:?}",
                a.0, a.1, b.0, b.1
            ),
            Anomaly::Internal { txn, key, read } => {
                write!(f, "internal: T{txn} read {key} {read:?}, inconsistent with its own appends")
            }
            Anomaly::Cycle { name, steps } => {
                write!(f, "{name} cycle: ")?;
                for (a, k, b) in steps {
                    write!(f, "T{a} -{k}-> ")?;
                    let _ = b;
                }
                if let Some((a, _, _)) = steps.first() {
                    write!(f, "T{a}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ListVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(
                f,
                "list-append: ok ({} txns, {} edges in the graph)",
                self.graph_txns, self.graph_edges
            );
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &self.anomalies {
            let k = match a {
                Anomaly::BadHistory(_) => "bad-history",
                Anomaly::Lost { .. } => "lost",
                Anomaly::Duplicate { .. } => "duplicate",
                Anomaly::Garbage { .. } => "garbage",
                Anomaly::AbortedRead { .. } => "aborted-read",
                Anomaly::Incompatible { .. } => "incompatible-order",
                Anomaly::Internal { .. } => "internal",
                Anomaly::Cycle { name, .. } => name.as_str(),
            };
            *kinds.entry(k).or_default() += 1;
        }
        writeln!(
            f,
            "list-append: {} anomalies {kinds:?}",
            self.anomalies.len()
        )?;
        for a in self.anomalies.iter().take(50) {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}
