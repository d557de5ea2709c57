//! The command universe ACLs are written against: every command and subcommand Redis 7.0.15
//! has (whether or not Pinnacle serves it) plus Pinnacle's own, each with an id for the
//! permission bitmaps and its ACL categories.

use crate::command::extra::{EXTRA_COMMANDS, EXTRA_SUBCOMMANDS};
use crate::command::generated::REDIS_COMMANDS;
use crate::command::spec::CommandSpec;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Redis's categories in its order (`ACL CAT`, and the order `ACL LIST` tries them in).
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// One command or subcommand.
pub struct CmdInfo {
    /// Lower-case full name (`get`, `client|list`).
    pub name: &'static str,
    /// Category bits (bit `i` = `CATEGORIES[i]`).
    pub cats: u32,
    /// Ids of its subcommands (a container's).
    pub subs: Vec<usize>,
    /// Its parent's id (a subcommand's).
    pub parent: Option<usize>,
    /// Its static description.
    pub spec: &'static CommandSpec,
}

/// Every command by id; parents come right before their subcommands.
pub struct Catalog {
    /// Commands by id.
    pub cmds: Vec<CmdInfo>,
    by_name: HashMap<&'static str, usize>,
}

/// The process-wide catalog.
pub fn catalog() -> &'static Catalog {
    static CAT: OnceLock<Catalog> = OnceLock::new();
    CAT.get_or_init(Catalog::build)
}

/// The bit of category `name` (any case), if it is one.
pub fn category_bit(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 1u32 << i)
}

fn cats_of(spec: &CommandSpec) -> u32 {
    spec.acl_categories
        .iter()
        .filter_map(|c| category_bit(c.trim_start_matches('@').as_bytes()))
        .fold(0, |a, b| a | b)
}

impl Catalog {
    fn build() -> Catalog {
        let mut c = Catalog {
            cmds: Vec::new(),
            by_name: HashMap::new(),
        };
        for spec in REDIS_COMMANDS.iter().chain(EXTRA_COMMANDS) {
            if c.by_name.contains_key(spec.name) {
                continue;
            }
            let pid = c.push(spec, None);
            let extra = EXTRA_SUBCOMMANDS
                .iter()
                .filter(|e| e.0 == spec.name)
                .map(|e| &e.1);
            for sub in spec.subcommands.iter().chain(extra) {
                if c.by_name.contains_key(sub.name) {
                    continue;
                }
                let sid = c.push(sub, Some(pid));
                c.cmds[pid].subs.push(sid);
            }
        }
        c
    }

    fn push(&mut self, spec: &'static CommandSpec, parent: Option<usize>) -> usize {
        let id = self.cmds.len();
        self.cmds.push(CmdInfo {
            name: spec.name,
            cats: cats_of(spec),
            subs: Vec::new(),
            parent,
            spec,
        });
        self.by_name.insert(spec.name, id);
        id
    }

    /// Number of commands (the bitmap width).
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// True if there are no commands (never, in practice).
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// The id of the command with this full name (`get`, `CLIENT|LIST`, any case).
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let lower = String::from_utf8(name.to_ascii_lowercase()).ok()?;
        self.by_name.get(lower.as_str()).copied()
    }

    /// The id of a command table spec's name.
    pub fn id_of(&self, full_name: &str) -> Option<usize> {
        self.by_name.get(full_name).copied()
    }

    /// Full names of every command in a category, parents before their subcommands.
    pub fn in_category(&self, bit: u32) -> Vec<&'static str> {
        self.cmds
            .iter()
            .filter(|c| c.cats & bit != 0)
            .map(|c| c.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_come_from_the_command_table() {
        let c = catalog();
        let get = c.lookup(b"GET").expect("get");
        let bit = |n: &str| category_bit(n.as_bytes()).expect("category");
        assert!(c.cmds[get].cats & bit("read") != 0);
        assert!(c.cmds[get].cats & bit("string") != 0);
        assert!(c.cmds[get].cats & bit("fast") != 0);
        assert!(c.cmds[get].cats & bit("write") == 0);
        let list = c.lookup(b"client|LIST").expect("client|list");
        assert_eq!(c.cmds[list].parent, c.lookup(b"client"));
        assert!(c.cmds[list].cats & bit("admin") != 0);
        assert!(c.in_category(bit("hash")).contains(&"hset"));
        assert!(!c.in_category(bit("hash")).contains(&"get"));
        assert!(category_bit(b"nosuch").is_none());
        // Commands Pinnacle does not serve still exist for ACL purposes, as in Redis.
        assert!(c.lookup(b"eval").is_some());
    }
}
