//! The command table: Redis 7.0.15's static command descriptions joined with our handlers.
//!
//! Only commands (and subcommands) that have a handler are registered, so a command either
//! answers like Redis or is unknown — never half-present.

use super::extra::{EXTRA_COMMANDS, EXTRA_SUBCOMMANDS};
use super::generated::REDIS_COMMANDS;
use super::spec::CommandSpec;
use super::Handler;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A registered command or subcommand.
pub struct Entry {
    /// Its static description.
    pub spec: &'static CommandSpec,
    /// The handler; `None` only for a container whose subcommands carry the handlers.
    pub handler: Option<Handler>,
    /// Index of this entry in [`Table::entries`] (also its stats slot).
    pub index: usize,
    /// Registered subcommands by lower-case subcommand name (the part after `|`).
    pub subs: HashMap<Vec<u8>, usize>,
    /// Registered subcommands in Redis's order.
    pub sub_order: Vec<usize>,
}

impl Entry {
    /// True for a container command (`CLIENT`, `CONFIG`, ...).
    pub fn is_container(&self) -> bool {
        !self.spec.subcommands.is_empty()
    }
}

/// Every registered command.
pub struct Table {
    /// All entries, commands and subcommands; an entry's index is its position.
    pub entries: Vec<Entry>,
    /// Top-level commands by lower-case name (foldhash: looked up for every request, where
    /// SipHash cost ~340 instructions a lookup).
    by_name: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    /// Top-level commands in name order.
    pub top: Vec<usize>,
}

/// Why a table could not be built (a handler names a command Redis doesn't have).
#[derive(Debug, thiserror::Error)]
#[error("handler for unknown command '{0}'")]
pub struct UnknownHandler(pub String);

impl Table {
    /// Builds the table from command descriptions and handler lists.
    pub fn build(
        specs: &'static [CommandSpec],
        handlers: &[&[(&'static str, Handler)]],
    ) -> Result<Table, UnknownHandler> {
        let mut table = Table {
            entries: Vec::new(),
            by_name: HashMap::default(),
            top: Vec::new(),
        };
        // Pinnacle's own commands (PINN.*) sit beside Redis's.
        let spec_by_name: HashMap<&str, &'static CommandSpec> = specs
            .iter()
            .chain(EXTRA_COMMANDS)
            .map(|s| (s.name, s))
            .collect();
        for &(name, handler) in handlers.iter().flat_map(|h| h.iter()) {
            let (parent, sub) = match name.split_once('|') {
                Some((p, s)) => (p, Some(s)),
                None => (name, None),
            };
            let pspec = spec_by_name
                .get(parent)
                .copied()
                .ok_or_else(|| UnknownHandler(name.into()))?;
            let pidx = match table.by_name.get(parent.as_bytes()) {
                Some(&i) => i,
                None => {
                    let i = table.push(pspec, None);
                    table.by_name.insert(parent.as_bytes().to_vec(), i);
                    i
                }
            };
            match sub {
                // A container may have its own handler for the bare name (`COMMAND`).
                None => table.entries[pidx].handler = Some(handler),
                Some(s) => {
                    let sspec = pspec
                        .subcommands
                        .iter()
                        .chain(
                            EXTRA_SUBCOMMANDS
                                .iter()
                                .filter(|e| e.0 == parent)
                                .map(|e| &e.1),
                        )
                        .find(|c| c.name == name)
                        .ok_or_else(|| UnknownHandler(name.into()))?;
                    let si = table.push(sspec, Some(handler));
                    table.entries[pidx].subs.insert(s.as_bytes().to_vec(), si);
                }
            }
        }
        // Keep Redis's subcommand order, and list top-level commands by name.
        for i in 0..table.entries.len() {
            let spec = table.entries[i].spec;
            let order: Vec<usize> = spec
                .subcommands
                .iter()
                .chain(
                    EXTRA_SUBCOMMANDS
                        .iter()
                        .filter(|e| e.0 == spec.name)
                        .map(|e| &e.1),
                )
                .filter_map(|s| {
                    let short = s.name.split_once('|').map(|x| x.1).unwrap_or(s.name);
                    table.entries[i].subs.get(short.as_bytes()).copied()
                })
                .collect();
            table.entries[i].sub_order = order;
        }
        let mut top: Vec<usize> = table.by_name.values().copied().collect();
        top.sort_by_key(|&i| table.entries[i].spec.name);
        table.top = top;
        Ok(table)
    }

    fn push(&mut self, spec: &'static CommandSpec, handler: Option<Handler>) -> usize {
        let index = self.entries.len();
        self.entries.push(Entry {
            spec,
            handler,
            index,
            subs: HashMap::new(),
            sub_order: vec![],
        });
        index
    }

    /// The top-level command called `name` (any case).
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        with_lowercase(name, |lower| {
            self.by_name.get(lower).map(|&i| &self.entries[i])
        })
    }

    /// The subcommand `sub` (any case) of `parent`.
    pub fn sub(&self, parent: &Entry, sub: &[u8]) -> Option<&Entry> {
        with_lowercase(sub, |lower| {
            parent.subs.get(lower).map(|&i| &self.entries[i])
        })
    }

    /// Looks up a full name as `COMMAND INFO` takes it: `get` or `client|list`.
    pub fn get_full(&self, name: &[u8]) -> Option<&Entry> {
        match name.iter().position(|&b| b == b'|') {
            Some(p) => {
                let parent = self.get(&name[..p])?;
                self.sub(parent, &name[p + 1..])
            }
            None => self.get(name),
        }
    }

    /// The registered subcommands of `e`, in Redis's order.
    pub fn subcommands<'a>(&'a self, e: &'a Entry) -> impl Iterator<Item = &'a Entry> + 'a {
        e.sub_order.iter().map(move |&i| &self.entries[i])
    }

    /// Number of top-level commands.
    pub fn count(&self) -> usize {
        self.top.len()
    }

    /// The `COMMAND INFO` reply entry for `e`, listing only registered subcommands.
    pub fn info_reply(&self, e: &Entry) -> pinnacle_resp::Reply {
        e.spec.info_reply(self.subcommands(e).map(|s| s.spec))
    }

    /// The `COMMAND DOCS` map for `e`, listing only registered subcommands.
    pub fn docs_reply(&self, e: &Entry) -> pinnacle_resp::Reply {
        e.spec.docs_reply(self.subcommands(e).map(|s| s.spec))
    }
}

/// Calls `f` with the ASCII-lowercased `name`, without allocating for command-sized names
/// (this runs for every request).
fn with_lowercase<T>(name: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buf = [0u8; 32];
    if name.len() <= buf.len() {
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        f(lower)
    } else {
        f(&name.to_ascii_lowercase())
    }
}

/// The process-wide table built from every command module.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(
        || match Table::build(REDIS_COMMANDS, crate::commands::ALL) {
            Ok(t) => t,
            // A handler for a command Redis doesn't describe is a programming error caught by
            // the unit test below; fail loudly rather than serve a half-described command.
            Err(e) => panic!("command table: {e}"),
        },
    )
}
