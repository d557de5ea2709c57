//! The static description of one command (Redis's `COMMAND INFO` / `COMMAND DOCS` data), how it
//! encodes as a reply, and how key positions are found from its key specs.

use bytes::Bytes;
use pinnacle_resp::Reply;

/// A static reply tree, used for the free-form parts of `COMMAND DOCS` (arguments, history).
#[derive(Debug)]
#[allow(dead_code)] // The generator emits whatever types Redis used; not all occur today.
pub enum Lit {
    /// Bulk string.
    Bulk(&'static str),
    /// Status string.
    Status(&'static str),
    /// Integer.
    Int(i64),
    /// Null.
    Null,
    /// Array.
    Arr(&'static [Lit]),
    /// Set (array in RESP2).
    Set(&'static [Lit]),
    /// Map (flat array in RESP2).
    Map(&'static [(Lit, Lit)]),
}

impl Lit {
    /// The reply this literal stands for.
    pub fn to_reply(&self) -> Reply {
        match self {
            Lit::Bulk(s) => Reply::Bulk(Bytes::from_static(s.as_bytes())),
            Lit::Status(s) => Reply::Simple(Bytes::from_static(s.as_bytes())),
            Lit::Int(n) => Reply::Integer(*n),
            Lit::Null => Reply::Null,
            Lit::Arr(items) => Reply::Array(items.iter().map(Lit::to_reply).collect()),
            Lit::Set(items) => Reply::Set(items.iter().map(Lit::to_reply).collect()),
            Lit::Map(pairs) => Reply::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_reply(), v.to_reply()))
                    .collect(),
            ),
        }
    }
}

/// Where the search for a key spec's keys starts.
#[derive(Debug)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(i64),
    /// After the first (or, with negative `startfrom`, last) occurrence of a keyword.
    Keyword {
        /// The keyword, matched case-insensitively.
        keyword: &'static str,
        /// Argument index to search from (negative: from the end, searching backwards).
        startfrom: i64,
    },
    /// Not described by a spec (the command has a custom key finder).
    Unknown,
}

/// How keys are found once the search start is known.
#[derive(Debug)]
pub enum FindKeys {
    /// A range of arguments.
    Range {
        /// Last key relative to the start (negative: from the end).
        lastkey: i64,
        /// Distance between keys.
        keystep: i64,
        /// With `lastkey == -1`: take 1/limit of the remaining arguments (0 or 1 = all).
        limit: i64,
    },
    /// An argument holds the number of keys.
    Keynum {
        /// Index of the count, relative to the start.
        keynumidx: i64,
        /// First key, relative to the start.
        firstkey: i64,
        /// Distance between keys.
        keystep: i64,
    },
    /// Not described by a spec.
    Unknown,
}

/// One key spec (Redis 7 `key_specs` entry).
#[derive(Debug)]
pub struct KeySpec {
    /// Free-text notes.
    pub notes: Option<&'static str>,
    /// Flags such as `RW`, `access`, `update`.
    pub flags: &'static [&'static str],
    /// Where the search starts.
    pub begin_search: BeginSearch,
    /// How keys are found.
    pub find_keys: FindKeys,
}

/// The static description of a command or subcommand, as Redis 7.0.15 reports it.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case full name (`get`, `client|list`).
    pub name: &'static str,
    /// Arity in Redis's sign convention (negative: at least |arity|).
    pub arity: i64,
    /// Command flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// Legacy first key position.
    pub first_key: i64,
    /// Legacy last key position.
    pub last_key: i64,
    /// Legacy key step.
    pub step: i64,
    /// ACL categories (`@read`, ...).
    pub acl_categories: &'static [&'static str],
    /// Command tips.
    pub tips: &'static [&'static str],
    /// Key specs.
    pub key_specs: &'static [KeySpec],
    /// One-line summary (`COMMAND DOCS`).
    pub summary: &'static str,
    /// First Redis version with the command.
    pub since: &'static str,
    /// Command group (`string`, `server`, ...).
    pub group: &'static str,
    /// Time complexity text, when documented.
    pub complexity: Option<&'static str>,
    /// The remaining `COMMAND DOCS` fields in Redis's order (doc_flags, history, arguments, ...).
    pub doc_extra: &'static [(&'static str, Lit)],
    /// Subcommands of a container command.
    pub subcommands: &'static [CommandSpec],
}

fn status_set(items: &[&'static str]) -> Reply {
    Reply::Set(
        items
            .iter()
            .map(|s| Reply::Simple(Bytes::from_static(s.as_bytes())))
            .collect(),
    )
}

fn bulk(s: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(s.as_bytes()))
}

impl KeySpec {
    /// The key spec as `COMMAND INFO` shows it.
    pub fn to_reply(&self) -> Reply {
        let mut m = Vec::with_capacity(4);
        if let Some(n) = self.notes {
            m.push((bulk("notes"), bulk(n)));
        }
        m.push((bulk("flags"), status_set(self.flags)));
        let begin = match &self.begin_search {
            BeginSearch::Index(i) => ("index", vec![(bulk("index"), Reply::Integer(*i))]),
            BeginSearch::Keyword { keyword, startfrom } => (
                "keyword",
                vec![
                    (bulk("keyword"), bulk(keyword)),
                    (bulk("startfrom"), Reply::Integer(*startfrom)),
                ],
            ),
            BeginSearch::Unknown => ("unknown", vec![]),
        };
        m.push((bulk("begin_search"), typed(begin.0, begin.1)));
        let find = match &self.find_keys {
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            } => (
                "range",
                vec![
                    (bulk("lastkey"), Reply::Integer(*lastkey)),
                    (bulk("keystep"), Reply::Integer(*keystep)),
                    (bulk("limit"), Reply::Integer(*limit)),
                ],
            ),
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => (
                "keynum",
                vec![
                    (bulk("keynumidx"), Reply::Integer(*keynumidx)),
                    (bulk("firstkey"), Reply::Integer(*firstkey)),
                    (bulk("keystep"), Reply::Integer(*keystep)),
                ],
            ),
            FindKeys::Unknown => ("unknown", vec![]),
        };
        m.push((bulk("find_keys"), typed(find.0, find.1)));
        Reply::Map(m)
    }

    /// Argument indices of this spec's keys in `args` (`args[0]` is the command name), following
    /// Redis's `getKeysUsingKeySpecs`. `None` when the arguments don't fit the spec.
    pub fn key_positions(&self, args: &[Bytes], out: &mut Vec<usize>) -> Option<()> {
        let argc = args.len() as i64;
        let first = match &self.begin_search {
            BeginSearch::Index(i) => *i,
            BeginSearch::Keyword { keyword, startfrom } => {
                // Redis's loop: the end index itself is never examined.
                let (start, end) = if *startfrom > 0 {
                    (*startfrom, argc - 1)
                } else {
                    (argc + startfrom, 1)
                };
                let step = if start <= end { 1 } else { -1 };
                let mut i = start;
                let mut found = None;
                while i != end {
                    if i >= argc || i < 1 {
                        break;
                    }
                    if args[i as usize].eq_ignore_ascii_case(keyword.as_bytes()) {
                        found = Some(i + 1);
                        break;
                    }
                    i += step;
                }
                // A keyword that is absent means this spec has no keys (e.g. no STORE option).
                match found {
                    Some(f) => f,
                    None => return Some(()),
                }
            }
            BeginSearch::Unknown => return Some(()),
        };
        let (last, step) = match &self.find_keys {
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let last = if *lastkey >= 0 {
                    first + lastkey
                } else if *limit <= 1 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (last, *keystep)
            }
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                let idx = first + keynumidx;
                if idx >= argc {
                    return None;
                }
                let n: i64 = std::str::from_utf8(&args[idx as usize])
                    .ok()?
                    .parse()
                    .ok()?;
                if n < 0 {
                    return None;
                }
                let start = first + firstkey;
                let last = start + (n - 1) * keystep;
                if n == 0 {
                    return Some(());
                }
                let mut i = start;
                while i <= last {
                    if i >= argc {
                        return None;
                    }
                    out.push(i as usize);
                    i += keystep;
                }
                return Some(());
            }
            FindKeys::Unknown => return Some(()),
        };
        if step < 1 {
            return None;
        }
        let mut i = first;
        while i <= last {
            if i >= argc || i < 1 {
                // Variadic commands are not arity-checked for this; the handler reports it.
                break;
            }
            out.push(i as usize);
            i += step;
        }
        Some(())
    }
}

fn typed(kind: &'static str, spec: Vec<(Reply, Reply)>) -> Reply {
    Reply::Map(vec![
        (bulk("type"), bulk(kind)),
        (bulk("spec"), Reply::Map(spec)),
    ])
}

impl CommandSpec {
    /// True if the command has flag `f`.
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.contains(&f)
    }

    /// The `COMMAND INFO` entry, listing the subcommands `subs` picks.
    pub fn info_reply<'a>(&self, subs: impl Iterator<Item = &'a CommandSpec>) -> Reply {
        let subs: Vec<Reply> = subs.map(|s| s.info_reply_all_subs()).collect();
        Reply::Array(vec![
            bulk(self.name),
            Reply::Integer(self.arity),
            status_set(self.flags),
            Reply::Integer(self.first_key),
            Reply::Integer(self.last_key),
            Reply::Integer(self.step),
            status_set(self.acl_categories),
            Reply::Set(self.tips.iter().map(|t| bulk(t)).collect()),
            Reply::Set(self.key_specs.iter().map(KeySpec::to_reply).collect()),
            // Redis answers an empty set when there are no subcommands and an array otherwise.
            if subs.is_empty() {
                Reply::Set(vec![])
            } else {
                Reply::Array(subs)
            },
        ])
    }

    /// The `COMMAND INFO` entry with every subcommand Redis has.
    pub fn info_reply_all_subs(&self) -> Reply {
        self.info_reply(self.subcommands.iter())
    }

    /// The `COMMAND DOCS` map, listing the subcommands `subs` picks.
    pub fn docs_reply<'a>(&self, subs: impl Iterator<Item = &'a CommandSpec>) -> Reply {
        let mut m = vec![
            (bulk("summary"), bulk(self.summary)),
            (bulk("since"), bulk(self.since)),
            (bulk("group"), bulk(self.group)),
        ];
        if let Some(c) = self.complexity {
            m.push((bulk("complexity"), bulk(c)));
        }
        for (k, v) in self.doc_extra {
            m.push((bulk(k), v.to_reply()));
        }
        let subs: Vec<(Reply, Reply)> = subs
            .map(|s| (bulk(s.name), s.docs_reply(s.subcommands.iter())))
            .collect();
        if !subs.is_empty() {
            m.push((bulk("subcommands"), Reply::Map(subs)));
        }
        Reply::Map(m)
    }

    /// Argument indices of the keys of `args`, from the key specs (Redis's `COMMAND GETKEYS`).
    /// `None` if the arguments don't fit the specs.
    pub fn key_positions(&self, args: &[Bytes]) -> Option<Vec<usize>> {
        let mut out = Vec::new();
        for ks in self.key_specs {
            ks.key_positions(args, &mut out)?;
        }
        Some(out)
    }
}
