//! Reliability T8's "at most one leader per term", read from the nodes' logs: pinnacle-raft
//! logs `raft group <g>: leader in term <t>` (INFO) once for each term a node leads a group in.

use std::collections::{BTreeMap, BTreeSet};

use super::Cluster;
use crate::Error;

/// What precedes the group id in the leadership line.
const MARK: &str = "raft group ";
/// What separates the group id from the term.
const SEP: &str = ": leader in term ";

/// `(group, term)` of one leadership line, `None` for any other line.
fn parse(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let (group, rest) = rest.split_once(SEP)?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((group.parse().ok()?, rest[..digits].parse().ok()?))
}

/// Every `(group, term)` some log line says a node led, with the nodes that did.
fn leaders_in<'a>(
    logs: impl IntoIterator<Item = (usize, &'a str)>,
) -> BTreeMap<(u64, u64), BTreeSet<usize>> {
    let mut out: BTreeMap<(u64, u64), BTreeSet<usize>> = BTreeMap::new();
    for (node, text) in logs {
        for key in text.lines().filter_map(parse) {
            out.entry(key).or_default().insert(node);
        }
    }
    out
}

impl Cluster {
    /// Every `(group, term)` a node of this cluster led (all starts of every node), with the
    /// nodes that led it.
    pub fn leaders_by_term(&self) -> BTreeMap<(u64, u64), BTreeSet<usize>> {
        let logs: Vec<(usize, String)> = self
            .ids()
            .into_iter()
            .map(|i| {
                let bytes = std::fs::read(&self.node(i).log).unwrap_or_default();
                (i, String::from_utf8_lossy(&bytes).into_owned())
            })
            .collect();
        leaders_in(logs.iter().map(|(i, t)| (*i, t.as_str())))
    }

    /// Fails if some group had two leaders in one term; otherwise how many `(group, term)`
    /// leaderships the logs show (0 would mean the check saw nothing: callers assert > 0).
    pub fn check_one_leader_per_term(&self) -> Result<usize, Error> {
        let all = self.leaders_by_term();
        let twice: Vec<String> = all
            .iter()
            .filter(|(_, nodes)| nodes.len() > 1)
            .map(|((g, t), nodes)| format!("group {g} term {t}: nodes {nodes:?}"))
            .collect();
        if twice.is_empty() {
            Ok(all.len())
        } else {
            Err(Error::Safety(format!(
                "two leaders in one term: {}",
                twice.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_leadership_lines_and_finds_a_term_led_twice() {
        let a = "\u{1b}[2m2026-12-07T04:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m pinnacle_raft::node: raft group 1: leader in term 3\n\
                 other line\nraft group 0: leader in term 1\n";
        let b = "raft group 1: leader in term 4\nraft group 1: leader in term 3\n";
        assert_eq!(
            parse("x raft group 12: leader in term 345 y"),
            Some((12, 345))
        );
        assert_eq!(parse("raft group 1: follower"), None);
        let all = leaders_in([(1, a), (2, b)]);
        assert_eq!(all.len(), 3);
        assert_eq!(all[&(1, 3)], BTreeSet::from([1, 2]));
        assert_eq!(all[&(1, 4)], BTreeSet::from([2]));
        assert_eq!(all[&(0, 1)], BTreeSet::from([1]));
    }
}
