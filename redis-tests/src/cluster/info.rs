//! `INFO replication` of a Raft-mode node, parsed.

use std::collections::HashMap;

use crate::Error;

/// The Raft fields of `INFO replication` (see the Raft contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftInfo {
    /// `master` or `slave`.
    pub role: String,
    /// `raft_node_id`.
    pub node_id: u64,
    /// `raft_leader_id` (None when empty: no leader known).
    pub leader_id: Option<u64>,
    /// `raft_leader_addr` (`ip:port`, None when empty).
    pub leader_addr: Option<String>,
    /// `raft_term`.
    pub term: u64,
    /// `raft_commit_index`.
    pub commit_index: u64,
    /// `raft_applied_index`.
    pub applied_index: u64,
    /// Every `key:value` line of the section.
    pub fields: HashMap<String, String>,
}

impl RaftInfo {
    /// Parses the text of `INFO replication`.
    pub fn parse(text: &str) -> Result<RaftInfo, Error> {
        let fields: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let get = |k: &str| {
            fields
                .get(k)
                .cloned()
                .ok_or_else(|| Error::Protocol(format!("INFO replication has no `{k}`: {text}")))
        };
        let num = |k: &str| -> Result<u64, Error> {
            let v = get(k)?;
            v.parse()
                .map_err(|_| Error::Protocol(format!("INFO replication `{k}:{v}` is not a number")))
        };
        let opt = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
        Ok(RaftInfo {
            role: get("role")?,
            node_id: num("raft_node_id")?,
            leader_id: opt("raft_leader_id").and_then(|v| v.parse().ok()),
            leader_addr: opt("raft_leader_addr"),
            term: num("raft_term")?,
            commit_index: num("raft_commit_index")?,
            applied_index: num("raft_applied_index")?,
            fields,
        })
    }

    /// True when this node says it is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == "master" && self.leader_id == Some(self.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::RaftInfo;

    #[test]
    fn parses_the_contract_fields() {
        let text = "# Replication\r\nrole:slave\r\nraft_node_id:2\r\nraft_leader_id:1\r\n\
                    raft_leader_addr:127.0.0.11:7001\r\nraft_term:3\r\nraft_commit_index:10\r\n\
                    raft_applied_index:9\r\nraft_peer1:addr=127.0.0.11:7001,match=10,lag=0\r\n";
        let i = RaftInfo::parse(text).expect("parse");
        assert_eq!(i.role, "slave");
        assert_eq!((i.node_id, i.leader_id, i.term), (2, Some(1), 3));
        assert_eq!((i.commit_index, i.applied_index), (10, 9));
        assert_eq!(i.leader_addr.as_deref(), Some("127.0.0.11:7001"));
        assert!(!i.is_leader());
        assert_eq!(
            i.fields.get("raft_peer1").map(String::as_str),
            Some("addr=127.0.0.11:7001,match=10,lag=0")
        );
    }

    #[test]
    fn empty_leader_is_none_and_missing_fields_fail() {
        let text = "role:slave\nraft_node_id:2\nraft_leader_id:\nraft_leader_addr:\nraft_term:0\n\
                    raft_commit_index:0\nraft_applied_index:0\n";
        let i = RaftInfo::parse(text).expect("parse");
        assert_eq!(i.leader_id, None);
        assert_eq!(i.leader_addr, None);
        assert!(RaftInfo::parse("role:master\r\nconnected_slaves:0\r\n").is_err());
    }
}
