//! The ACL LOG: recent denials, newest first, with repeats of the same denial within a minute
//! folded into one entry (Redis's `addACLLogEntry`).

use std::collections::VecDeque;

/// Why a request was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The command is not allowed.
    Command,
    /// A key is not allowed.
    Key,
    /// A channel is not allowed.
    Channel,
    /// Wrong credentials.
    Auth,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

/// One entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Times it happened (folded repeats).
    pub count: u64,
    /// Why.
    pub reason: Reason,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    /// The command's full name, the key, the channel, or the AUTH/HELLO command as sent.
    pub object: Vec<u8>,
    /// The user (for auth: the name tried).
    pub username: Vec<u8>,
    /// Unix milliseconds of the last occurrence.
    pub ctime_ms: u64,
    /// The client's `CLIENT LIST` line at the last occurrence.
    pub client_info: String,
}

impl Entry {
    /// The reason as ACL LOG prints it.
    pub fn reason_name(&self) -> &'static str {
        self.reason.name()
    }
}

/// Repeats closer than this fold into one entry.
const GROUPING_MS: u64 = 60_000;

/// The log ring.
#[derive(Default)]
pub struct AclLog {
    entries: VecDeque<Entry>,
}

impl AclLog {
    /// Adds an entry (or bumps a similar recent one), keeping at most `max_len`.
    pub fn add(&mut self, e: Entry, max_len: usize) {
        // Redis scans only the 10 newest entries for a match.
        let found = self.entries.iter().take(10).position(|c| {
            c.reason == e.reason
                && c.context == e.context
                && c.ctime_ms.abs_diff(e.ctime_ms) <= GROUPING_MS
                && c.object == e.object
                && c.username == e.username
        });
        match found.and_then(|i| self.entries.remove(i)) {
            Some(mut m) => {
                m.client_info = e.client_info;
                m.ctime_ms = e.ctime_ms;
                m.count += 1;
                self.entries.push_front(m);
            }
            None => {
                self.entries.push_front(e);
                self.entries.truncate(max_len);
            }
        }
    }

    /// The newest `n` entries.
    pub fn newest(&self, n: usize) -> Vec<Entry> {
        self.entries.iter().take(n).cloned().collect()
    }

    /// ACL LOG RESET.
    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(obj: &str, at: u64) -> Entry {
        Entry {
            count: 1,
            reason: Reason::Command,
            context: "toplevel",
            object: obj.as_bytes().to_vec(),
            username: b"u".to_vec(),
            ctime_ms: at,
            client_info: format!("at={at}"),
        }
    }

    #[test]
    fn repeats_fold_and_the_ring_is_bounded() {
        let mut log = AclLog::default();
        log.add(entry("get", 1000), 3);
        log.add(entry("set", 2000), 3);
        log.add(entry("get", 3000), 3);
        let e = log.newest(10);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].object.as_slice(), e[0].count), (&b"get"[..], 2));
        assert_eq!(e[0].client_info, "at=3000");
        // More than a minute later: a new entry.
        log.add(entry("get", 3000 + GROUPING_MS + 1), 3);
        log.add(entry("a", 100_000), 3);
        log.add(entry("b", 100_000), 3);
        let e = log.newest(10);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].object, b"b");
        log.reset();
        assert!(log.newest(10).is_empty());
    }
}
