//! Redis 7 ACLs: users with passwords (SHA-256, compared in constant time), command, key and
//! channel permissions, selectors, the ACL LOG and the ACL file.
//!
//! Users are node-local configuration, as in Redis Cluster: ACL commands are never replicated
//! through Raft, and every node of a cluster needs the same users (the same `--aclfile`).

pub mod catalog;
pub mod file;
pub mod log;
pub mod user;

use crate::command::spec::CommandSpec;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
pub use user::{Selector, User};

/// Why an ACL rule was refused; the texts are Redis's `ACLSetUserStringError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Unknown command or category.
    #[error("Unknown command or category name in ACL")]
    Unknown,
    /// Not a rule.
    #[error("Syntax error")]
    Syntax,
    /// A key pattern after `allkeys`.
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    KeyAfterAll,
    /// A channel pattern after `allchannels`.
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    ChannelAfterAll,
    /// `<pass` / `!hash` of a password the user doesn't have.
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    /// `#hash` that is not 64 lower-case hex characters.
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
    /// `+cmd|sub|arg`.
    #[error("Allowing first-arg of a subcommand is not supported")]
    FirstArgOfSub,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The command itself.
    Command,
    /// The key at this argument index.
    Key(usize),
    /// The channel at this argument index.
    Channel(usize),
}

impl Denied {
    // Redis's ACL_DENIED_* order, used to pick one error among several selectors.
    fn rank(self) -> (u8, usize) {
        match self {
            Denied::Command => (1, 0),
            Denied::Key(i) => (2, i),
            Denied::Channel(i) => (4, i),
        }
    }

    /// The `-NOPERM` error text for command `name`.
    pub fn error(self, name: &str) -> String {
        match self {
            Denied::Command => {
                format!("NOPERM this user has no permissions to run the '{name}' command")
            }
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    }
}

/// The users, the log, and where they are saved.
pub struct Acl {
    users: RwLock<BTreeMap<Vec<u8>, User>>,
    log: Mutex<log::AclLog>,
    /// `default` is `on nopass`: connections need no AUTH.
    default_open: AtomicBool,
    /// `default` may run anything: the per-request check is skipped for it.
    default_unrestricted: AtomicBool,
    /// The `requirepass` last applied to `default` (CONFIG SET changes it).
    applied_requirepass: Mutex<Option<String>>,
    /// `--aclfile`.
    file: Option<PathBuf>,
}

impl Acl {
    /// The `default` user with `requirepass` (if any) as its password, and no other users.
    pub fn new(requirepass: Option<String>, file: Option<PathBuf>) -> Acl {
        let acl = Acl {
            users: RwLock::new(BTreeMap::new()),
            log: Mutex::new(log::AclLog::default()),
            default_open: AtomicBool::new(true),
            default_unrestricted: AtomicBool::new(true),
            applied_requirepass: Mutex::new(None),
            file,
        };
        let mut users = BTreeMap::new();
        users.insert(b"default".to_vec(), User::default_user());
        acl.replace_users(users);
        acl.sync_requirepass(requirepass);
        acl
    }

    /// The `--aclfile` path.
    pub fn file(&self) -> Option<&PathBuf> {
        self.file.as_ref()
    }

    /// Loads `--aclfile` (if any), replacing every user; on any error nothing changes and the
    /// error is Redis's description of every bad line. Returns the names of the replaced
    /// users other than `default` (their connections must close, as in Redis).
    pub fn load_file(&self) -> Result<Vec<Vec<u8>>, String> {
        let Some(path) = &self.file else {
            return Ok(Vec::new());
        };
        let users = file::load(path)?;
        let old: Vec<Vec<u8>> = self
            .users
            .read()
            .keys()
            .filter(|k| k.as_slice() != b"default")
            .cloned()
            .collect();
        self.replace_users(users);
        Ok(old)
    }

    /// Applies `requirepass` to `default` when it changed since last applied (Redis's
    /// `ACLUpdateDefaultUserPassword`).
    pub fn sync_requirepass(&self, current: Option<String>) {
        let mut applied = self.applied_requirepass.lock();
        if *applied == current {
            return;
        }
        self.update_user(b"default", |u| {
            let _ = u.apply(b"resetpass");
            match &current {
                Some(p) => {
                    let mut op = b">".to_vec();
                    op.extend_from_slice(p.as_bytes());
                    let _ = u.apply(&op);
                }
                None => {
                    let _ = u.apply(b"nopass");
                }
            }
        });
        *applied = current;
    }

    fn update_user(&self, name: &[u8], f: impl FnOnce(&mut User)) {
        let mut users = self.users.write();
        if let Some(u) = users.get_mut(name) {
            f(u);
        }
        self.refresh_default(&users);
    }

    fn refresh_default(&self, users: &BTreeMap<Vec<u8>, User>) {
        let (open, unrestricted) = match users.get(&b"default"[..]) {
            Some(d) => (d.enabled && d.nopass, d.unrestricted()),
            None => (false, false),
        };
        self.default_open.store(open, Ordering::Release);
        self.default_unrestricted
            .store(unrestricted, Ordering::Release);
    }

    /// Replaces every user (ACL LOAD, the file at start).
    pub fn replace_users(&self, users: BTreeMap<Vec<u8>, User>) {
        let mut g = self.users.write();
        *g = users;
        self.refresh_default(&g);
    }

    /// True if a connection must AUTH before running commands (Redis's `authRequired`).
    pub fn auth_required(&self) -> bool {
        !self.default_open.load(Ordering::Acquire)
    }

    /// True if `user`/`pass` are valid (the user exists, is on, and the password matches).
    pub fn check_credentials(&self, user: &[u8], pass: &[u8]) -> bool {
        match self.users.read().get(user) {
            Some(u) => u.password_ok(pass),
            None => false,
        }
    }

    /// A copy of user `name`.
    pub fn get_user(&self, name: &[u8]) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        self.users.read().values().cloned().collect()
    }

    /// ACL SETUSER: applies `rules` to a copy of the user (or a new one) and stores it only if
    /// every rule is valid. `Err((rule, error))` names the first bad rule.
    pub fn set_user(&self, name: &[u8], rules: &[Vec<u8>]) -> Result<(), (Vec<u8>, RuleError)> {
        let mut users = self.users.write();
        let mut u = users.get(name).cloned().unwrap_or_else(|| User::new(name));
        for r in rules {
            u.apply(r).map_err(|e| (r.clone(), e))?;
        }
        users.insert(name.to_vec(), u);
        self.refresh_default(&users);
        Ok(())
    }

    /// ACL DELUSER of one user; true if it existed.
    pub fn del_user(&self, name: &[u8]) -> bool {
        let mut users = self.users.write();
        let gone = users.remove(name).is_some();
        self.refresh_default(&users);
        gone
    }

    /// Checks whether `user` may run `cmd` (the resolved command or subcommand) with `args`
    /// (Redis's `ACLCheckAllUserCommandPerm`).
    pub fn check(&self, user: &[u8], cmd: &CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        if user == b"default" && self.default_unrestricted.load(Ordering::Acquire) {
            return Ok(());
        }
        let users = self.users.read();
        let Some(u) = users.get(user) else {
            return Err(Denied::Command);
        };
        let id = catalog::catalog().id_of(cmd.name);
        let mut relevant = Denied::Command;
        for s in &u.selectors {
            match check_selector(s, id, cmd, args) {
                Ok(()) => return Ok(()),
                Err(d) => {
                    if d.rank() > relevant.rank() {
                        relevant = d;
                    }
                }
            }
        }
        Err(relevant)
    }

    /// Records a denial in the ACL LOG.
    pub fn log(&self, entry: log::Entry, max_len: usize) {
        self.log.lock().add(entry, max_len);
    }

    /// The newest `n` log entries.
    pub fn log_entries(&self, n: usize) -> Vec<log::Entry> {
        self.log.lock().newest(n)
    }

    /// ACL LOG RESET.
    pub fn log_reset(&self) {
        self.log.lock().reset();
    }
}

/// What a refused non-loopback client reads before the connection closes (redis-server
/// 7.0.15's text, typo included).
pub const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Protected mode (Redis 7.0.15's accept-time check): on, the `default` user has no password,
/// and the peer (`ip:port`) is not exactly 127.0.0.1 or ::1. The bind address plays no part.
pub fn protected_mode_denies(server: &crate::command::Server, peer: &str) -> bool {
    if server.config.get("protected-mode").as_deref() != Some("yes") {
        return false;
    }
    server.acl.sync_requirepass(server.config.requirepass());
    let nopass = server
        .acl
        .users
        .read()
        .get(&b"default"[..])
        .is_some_and(|d| d.nopass);
    if !nopass {
        return false;
    }
    let ip = match peer.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => return false,
    };
    ip != "127.0.0.1" && ip != "::1"
}

/// Redis's `ACLSelectorCheckCmd`.
fn check_selector(
    s: &Selector,
    id: Option<usize>,
    cmd: &CommandSpec,
    args: &[Bytes],
) -> Result<(), Denied> {
    if !s.allcommands && !cmd.has_flag("no_auth") {
        let Some(id) = id else {
            return Err(Denied::Command);
        };
        if !s.bit(id) {
            // Maybe allowed with just this first argument (`+select|0`).
            let idx = if cmd.name.contains('|') { 2 } else { 1 };
            let ok = match (s.firstargs_of(id), args.get(idx)) {
                (Some(list), Some(a)) if args.len() >= 2 => {
                    list.iter().any(|f| f.eq_ignore_ascii_case(a))
                }
                _ => false,
            };
            if !ok {
                return Err(Denied::Command);
            }
        }
    }
    if !s.allkeys {
        for (pos, perms) in key_refs(cmd, args) {
            if !s.key_allowed(&args[pos], perms) {
                return Err(Denied::Key(pos));
            }
        }
    }
    if !s.allchannels {
        for (pos, pattern) in channel_refs(cmd.name, args) {
            if !s.channel_allowed(&args[pos], pattern) {
                return Err(Denied::Channel(pos));
            }
        }
    }
    Ok(())
}

/// The keys of `args` with the permissions each needs, from the command's key specs (the
/// same specs `COMMAND GETKEYS` and routing use).
pub fn key_refs(cmd: &CommandSpec, args: &[Bytes]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut pos = Vec::new();
    for ks in cmd.key_specs {
        if ks.flags.contains(&"not_key") {
            continue;
        }
        let mut perms = 0;
        if ks.flags.contains(&"access") {
            perms |= user::PERM_READ;
        }
        if ks
            .flags
            .iter()
            .any(|f| matches!(*f, "insert" | "delete" | "update"))
        {
            perms |= user::PERM_WRITE;
        }
        pos.clear();
        if ks.key_positions(args, &mut pos).is_some() {
            out.extend(pos.iter().filter(|&&p| p < args.len()).map(|&p| (p, perms)));
        }
    }
    out
}

/// The channels a publish/subscribe command names, and whether each is a pattern. Only the
/// commands Redis checks (its `CMD_CHANNEL_PUBLISH`/`SUBSCRIBE` ones); unsubscribing is free.
pub fn channel_refs(name: &str, args: &[Bytes]) -> Vec<(usize, bool)> {
    match name {
        "publish" | "spublish" => vec![(1, false)],
        "subscribe" | "ssubscribe" => (1..args.len()).map(|i| (i, false)).collect(),
        "psubscribe" => (1..args.len()).map(|i| (i, true)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::table::table;

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    fn spec(name: &str) -> &'static CommandSpec {
        table().get_full(name.as_bytes()).expect(name).spec
    }

    #[test]
    fn permission_checks_follow_redis() {
        let acl = Acl::new(None, None);
        let rules: Vec<Vec<u8>> = [
            "on", "nopass", "+get", "+set", "~k*", "%R~r*", "+publish", "&ch*",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        acl.set_user(b"u", &rules).expect("setuser");
        let u = &b"u"[..];
        assert_eq!(acl.check(u, spec("get"), &args(&["GET", "k1"])), Ok(()));
        assert_eq!(acl.check(u, spec("get"), &args(&["GET", "r1"])), Ok(()));
        assert_eq!(
            acl.check(u, spec("set"), &args(&["SET", "r1", "v"])),
            Err(Denied::Key(1))
        );
        assert_eq!(
            acl.check(u, spec("del"), &args(&["DEL", "k1"])),
            Err(Denied::Command)
        );
        assert_eq!(
            acl.check(u, spec("publish"), &args(&["PUBLISH", "x", "m"])),
            Err(Denied::Channel(1))
        );
        assert_eq!(
            acl.check(u, spec("publish"), &args(&["PUBLISH", "ch1", "m"])),
            Ok(())
        );
        // AUTH is never denied.
        assert_eq!(
            acl.check(u, spec("auth"), &args(&["AUTH", "a", "b"])),
            Ok(())
        );
        assert_eq!(
            acl.check(b"nobody", spec("get"), &args(&["GET", "k"])),
            Err(Denied::Command)
        );
        assert_eq!(
            acl.check(b"default", spec("flushall"), &args(&["FLUSHALL"])),
            Ok(())
        );
    }

    #[test]
    fn requirepass_is_the_default_users_password() {
        let acl = Acl::new(Some("pw".into()), None);
        assert!(acl.auth_required());
        assert!(acl.check_credentials(b"default", b"pw"));
        assert!(!acl.check_credentials(b"default", b"x"));
        acl.sync_requirepass(None);
        assert!(!acl.auth_required());
        assert_eq!(
            acl.get_user(b"default").expect("default").describe(),
            "on nopass ~* &* +@all"
        );
    }

    #[test]
    fn category_membership_decides() {
        let acl = Acl::new(None, None);
        let rules: Vec<Vec<u8>> = ["on", "+@read", "-@hash", "allkeys"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        acl.set_user(b"r", &rules).expect("setuser");
        assert_eq!(acl.check(b"r", spec("get"), &args(&["GET", "a"])), Ok(()));
        assert_eq!(
            acl.check(b"r", spec("hget"), &args(&["HGET", "a", "f"])),
            Err(Denied::Command)
        );
        assert_eq!(
            acl.check(b"r", spec("set"), &args(&["SET", "a", "b"])),
            Err(Denied::Command)
        );
    }
}
