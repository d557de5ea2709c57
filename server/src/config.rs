//! Configuration: command-line flags, the redis.conf-style config file, and the run-time
//! parameter store behind `CONFIG GET/SET`.

mod params;

use crate::command::glob::glob_match;
pub use params::parse_memory;
use params::{find_param, validate, PARAMS};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};

/// Command-line flags of the `pinnacle` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "pinnacle",
    version,
    about = "A Redis-protocol-compatible server"
)]
pub struct Cli {
    /// TCP port for client connections.
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    pub bind: Option<String>,
    /// Data directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Password clients must send with AUTH.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// ACL file of `user <name> <rules...>` lines, loaded at start (ACL LOAD / ACL SAVE).
    #[arg(long)]
    pub aclfile: Option<PathBuf>,
    /// `yes`: with no password on the default user, only loopback clients are served.
    #[arg(long)]
    pub protected_mode: Option<String>,
    /// WAL fsync policy: always, everysec or no.
    #[arg(long)]
    pub appendfsync: Option<String>,
    /// Maximum number of simultaneous client connections.
    #[arg(long)]
    pub maxclients: Option<u64>,
    /// Close connections idle for this many seconds (0 = never).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// redis.conf-style file of `key value` lines with the same keys as the flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Raft node id of this process (with `--cluster-peers`).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Raft mode: every voter as `id@ip:port[@cport]`, comma-separated (this node included).
    #[arg(long)]
    pub cluster_peers: Option<String>,
    /// Raft mode, joining an existing cluster: wait for its leader's `CLUSTER MEET`.
    #[arg(long)]
    pub cluster_join: bool,
    /// Port the cluster bus listens on (default: client port + 10000).
    #[arg(long)]
    pub cluster_port: Option<u16>,
    /// How the Raft leader makes reads linearizable: `index` (ReadIndex) or `lease`.
    #[arg(long, default_value = "index")]
    pub raft_read: String,
    /// Raft entries between snapshots (the log is purged behind a snapshot).
    #[arg(long)]
    pub raft_snapshot_after: Option<u64>,
    /// Raft mode: worker threads of the runtime the cluster bus and Raft run on, apart from
    /// the client connections' (0: share the clients' runtime).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub raft_threads: u16,
    /// Worker threads of the runtime that serves client connections (0: one fewer than the
    /// cores, at least one, leaving a core to the LSM's flush, compaction and WAL threads,
    /// the Raft runtime and the kernel's network stack).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub worker_threads: u16,
    /// Raft mode: number of shards (Raft groups, each owning an equal part of the 16384
    /// slots). Every node of a cluster must get the same value.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub shards: u16,
    /// Prometheus `/metrics` on this HTTP port of the `--bind` address (0: off).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// The PINN heat dashboard on this HTTP port of the `--bind` address (0: off).
    #[arg(long)]
    pub dashboard_port: Option<u16>,
    /// TLS (client port, cluster bus) and cluster-bus authentication.
    #[command(flatten)]
    pub tls: crate::net::tls::TlsArgs,
}

impl Cli {
    /// Worker threads for the client runtime: `--worker-threads`, or for 0 one fewer than
    /// `cores` (at least one). A second worker on a 2-core machine cost 10–40 % more CPU per
    /// request at `-P 1` (cross-thread wake-ups; BENCHMARKS.md, session 15).
    pub fn client_workers(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => cores.saturating_sub(1).max(1),
            n => usize::from(n),
        }
    }
}

/// A bad flag, config line or `CONFIG SET` value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A config file line or flag is invalid.
    #[error("config file line {line}: {msg}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// An invalid value for a parameter (message in Redis's `CONFIG SET` wording).
    #[error("{0}")]
    Invalid(String),
}

/// Settings the process starts with: defaults, overridden by the config file, then by flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `name → value` for every parameter set by the file or the flags.
    pub values: Vec<(String, String)>,
    /// The `--config` file, if any.
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// Reads the config file (if any) and applies the flags on top.
    pub fn load(cli: &Cli) -> Result<Settings, ConfigError> {
        let mut values = Vec::new();
        if let Some(path) = &cli.config {
            let text =
                std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.clone(), e))?;
            values = parse_config_file(&text)?;
        }
        let mut set = |k: &str, v: String| values.push((k.to_string(), v));
        if let Some(v) = cli.port {
            set("port", v.to_string());
        }
        if let Some(v) = &cli.bind {
            set("bind", v.clone());
        }
        if let Some(v) = &cli.dir {
            set("dir", v.display().to_string());
        }
        if let Some(v) = &cli.requirepass {
            set("requirepass", v.clone());
        }
        if let Some(v) = &cli.aclfile {
            set("aclfile", v.display().to_string());
        }
        if let Some(v) = &cli.protected_mode {
            set("protected-mode", v.clone());
        }
        if let Some(v) = &cli.appendfsync {
            set("appendfsync", v.clone());
        }
        if let Some(v) = cli.maxclients {
            set("maxclients", v.to_string());
        }
        if let Some(v) = cli.timeout {
            set("timeout", v.to_string());
        }
        if let Some(v) = cli.metrics_port {
            set("metrics-port", v.to_string());
        }
        if let Some(v) = cli.dashboard_port {
            set("dashboard-port", v.to_string());
        }
        for (k, v) in cli.tls.settings() {
            set(k, v);
        }
        Ok(Settings {
            values,
            config_file: cli.config.clone(),
        })
    }
}

/// Parses redis.conf-style text: `key value...` per line, `#` comments, quoted values.
pub fn parse_config_file(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = match line.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (line, ""),
        };
        let value = unquote(rest).ok_or_else(|| ConfigError::Line {
            line: i + 1,
            msg: "unbalanced quotes".into(),
        })?;
        let key = key.to_ascii_lowercase();
        if find_param(&key).is_none() {
            return Err(ConfigError::Line {
                line: i + 1,
                msg: format!("unknown option '{key}'"),
            });
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Strips one level of surrounding quotes (`"a b"`, `'a b'`); `""` is the empty value.
fn unquote(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') {
        if b[b.len() - 1] != b[0] {
            return None;
        }
        return Some(s[1..s.len() - 1].to_string());
    }
    if b.first().is_some_and(|&c| c == b'"' || c == b'\'') {
        return None;
    }
    Some(s.to_string())
}

/// The run-time parameter store (`CONFIG GET/SET`).
pub struct Config {
    values: RwLock<Vec<String>>,
    config_file: Option<PathBuf>,
    /// Cached `slowlog-log-slower-than` (read on every command).
    slowlog_slower_than: AtomicI64,
    /// Cached `timeout` (read on every batch).
    timeout: AtomicI64,
    /// Cached `client-query-buffer-limit` (read on every batch).
    query_buffer_limit: AtomicI64,
    /// Cached `maxclients` (read on every accept).
    maxclients: AtomicI64,
    /// Cached `proto-max-bulk-len` (read on every batch).
    proto_max_bulk_len: AtomicI64,
    /// Cached `latency-tracking` (read on every command).
    latency_tracking: std::sync::atomic::AtomicBool,
}

impl Config {
    /// Defaults with `settings` applied; `dir` is shown as an absolute path, like Redis.
    pub fn new(settings: &Settings) -> Result<Config, ConfigError> {
        let cfg = Config {
            values: RwLock::new(PARAMS.iter().map(|p| p.default.to_string()).collect()),
            config_file: settings.config_file.clone(),
            slowlog_slower_than: AtomicI64::new(10000),
            timeout: AtomicI64::new(0),
            query_buffer_limit: AtomicI64::new(1 << 30),
            maxclients: AtomicI64::new(10000),
            proto_max_bulk_len: AtomicI64::new(512 << 20),
            latency_tracking: std::sync::atomic::AtomicBool::new(true),
        };
        cfg.refresh_cache();
        for (k, v) in &settings.values {
            cfg.set_startup(k, v)?;
        }
        Ok(cfg)
    }

    fn set_startup(&self, name: &str, value: &str) -> Result<(), ConfigError> {
        let (i, param) = find_param(name)
            .ok_or_else(|| ConfigError::Invalid(format!("unknown option '{name}'")))?;
        let v = validate(param, value)
            .map_err(|e| ConfigError::Invalid(format!("invalid value for '{name}': {e}")))?;
        self.values.write()[i] = v;
        self.refresh_cache();
        Ok(())
    }

    fn refresh_cache(&self) {
        let cache = [
            (&self.slowlog_slower_than, "slowlog-log-slower-than"),
            (&self.timeout, "timeout"),
            (&self.query_buffer_limit, "client-query-buffer-limit"),
            (&self.maxclients, "maxclients"),
            (&self.proto_max_bulk_len, "proto-max-bulk-len"),
        ];
        for (slot, name) in cache {
            if let Some(n) = self.get_i64(name) {
                slot.store(n, Ordering::Relaxed);
            }
        }
        let tracking = self.get("latency-tracking").as_deref() != Some("no");
        self.latency_tracking.store(tracking, Ordering::Relaxed);
    }

    /// `latency-tracking`: whether commands feed the latency histograms.
    pub fn latency_tracking(&self) -> bool {
        self.latency_tracking.load(Ordering::Relaxed)
    }

    /// `timeout` in seconds (0 = never close idle clients).
    pub fn timeout(&self) -> u64 {
        self.timeout.load(Ordering::Relaxed).max(0) as u64
    }

    /// `client-query-buffer-limit` in bytes.
    pub fn query_buffer_limit(&self) -> usize {
        self.query_buffer_limit.load(Ordering::Relaxed).max(0) as usize
    }

    /// `proto-max-bulk-len` in bytes.
    pub fn proto_max_bulk_len(&self) -> u64 {
        self.proto_max_bulk_len.load(Ordering::Relaxed).max(0) as u64
    }

    /// `maxclients`.
    pub fn maxclients(&self) -> usize {
        self.maxclients.load(Ordering::Relaxed).max(1) as usize
    }

    /// The `--config` file, if any.
    pub fn config_file(&self) -> Option<&PathBuf> {
        self.config_file.as_ref()
    }

    /// The value of parameter `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<String> {
        let (i, _) = find_param(name)?;
        Some(self.values.read()[i].clone())
    }

    /// An integer parameter.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name)?.parse().ok()
    }

    /// `slowlog-log-slower-than` in microseconds (negative disables the slow log).
    pub fn slowlog_slower_than(&self) -> i64 {
        self.slowlog_slower_than.load(Ordering::Relaxed)
    }

    /// `CONFIG GET` for the patterns: matching `(name, value)` pairs, each name once.
    pub fn get_matching(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        let values = self.values.read();
        let mut out: Vec<(String, String)> = Vec::new();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for pat in patterns {
            let is_glob = pat.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
            for (i, p) in PARAMS.iter().enumerate() {
                for name in std::iter::once(p.name).chain(p.alias) {
                    let hit = if is_glob {
                        glob_match(pat, name.as_bytes(), true)
                    } else {
                        pat.eq_ignore_ascii_case(name.as_bytes())
                    };
                    if hit && seen.insert(name, ()).is_none() {
                        out.push((name.to_string(), values[i].clone()));
                    }
                }
            }
        }
        out
    }

    /// `CONFIG SET name value [name value ...]`, all or nothing; the error is Redis's text.
    pub fn set_many(&self, pairs: &[(&str, &str)]) -> Result<(), String> {
        let mut staged: Vec<(usize, String)> = Vec::new();
        for (name, value) in pairs {
            let Some((i, param)) = find_param(name) else {
                return Err(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
            };
            let fail = |why: &str| {
                format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
            };
            if staged.iter().any(|(j, _)| *j == i) {
                return Err(fail("duplicate parameter"));
            }
            if !param.mutable {
                return Err(fail("can't set immutable config"));
            }
            let v = validate(param, value).map_err(|e| fail(&e))?;
            staged.push((i, v));
        }
        {
            let mut values = self.values.write();
            for (i, v) in staged {
                values[i] = v;
            }
        }
        self.refresh_cache();
        Ok(())
    }

    /// The data directory as configured.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.get("dir").unwrap_or_else(|| "./data".into()))
    }

    /// Replaces the stored `dir` with its absolute form (shown by `CONFIG GET dir`).
    pub fn set_dir_absolute(&self, abs: &std::path::Path) {
        if let Some((i, _)) = find_param("dir") {
            self.values.write()[i] = abs.display().to_string();
        }
    }

    /// The `requirepass` password, or `None` if unset.
    pub fn requirepass(&self) -> Option<String> {
        self.get("requirepass").filter(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::new(&Settings {
            values: vec![],
            config_file: None,
        })
        .expect("defaults are valid")
    }

    #[test]
    fn defaults_and_aliases() {
        let c = cfg();
        assert_eq!(c.get("maxclients").as_deref(), Some("10000"));
        assert_eq!(c.get_matching(&[b"save"]), vec![("save".into(), "".into())]);
        let z = c.get_matching(&[b"*max-ziplist*"]);
        assert!(z.contains(&("hash-max-ziplist-entries".into(), "512".into())));
        c.set_many(&[("hash-max-listpack-entries", "7")])
            .expect("valid");
        assert_eq!(c.get("hash-max-ziplist-entries").as_deref(), Some("7"));
    }

    #[test]
    fn set_errors_use_redis_text() {
        let c = cfg();
        assert_eq!(
            c.set_many(&[("timeout", "abc")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument couldn't be parsed into an integer"
        );
        assert_eq!(
            c.set_many(&[("foo", "1")]).unwrap_err(),
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
        );
        assert_eq!(
            c.set_many(&[("appendfsync", "bogus")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'appendfsync') - argument(s) must be one of the following: everysec, always, no"
        );
        assert_eq!(
            c.set_many(&[("maxclients", "-5")]).unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive"
        );
        assert_eq!(
            c.set_many(&[("timeout", "1"), ("timeout", "2")])
                .unwrap_err(),
            "ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate parameter"
        );
        // All or nothing: a bad second pair leaves the first unchanged.
        assert!(c.set_many(&[("hz", "11"), ("maxclients", "x")]).is_err());
        assert_eq!(c.get("hz").as_deref(), Some("10"));
        c.set_many(&[("maxmemory", "1gb")]).expect("valid");
        assert_eq!(c.get("maxmemory").as_deref(), Some("1073741824"));
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pinnacle.conf");
        std::fs::write(&file, "port 7000\nmaxclients 5\nappendfsync always\n").expect("write");
        let cli = Cli {
            port: None,
            bind: None,
            dir: None,
            requirepass: Some("pw".into()),
            aclfile: None,
            protected_mode: None,
            appendfsync: None,
            maxclients: Some(7),
            timeout: None,
            config: Some(file.clone()),
            node_id: None,
            cluster_peers: None,
            cluster_join: false,
            cluster_port: None,
            raft_read: "index".into(),
            raft_snapshot_after: None,
            raft_threads: 2,
            worker_threads: 0,
            shards: 3,
            metrics_port: None,
            dashboard_port: None,
            tls: Default::default(),
        };
        let c = Config::new(&Settings::load(&cli).expect("load")).expect("valid");
        assert_eq!(c.get("port").as_deref(), Some("7000"));
        assert_eq!(c.maxclients(), 7);
        assert_eq!(c.get("appendfsync").as_deref(), Some("always"));
        assert_eq!(c.requirepass().as_deref(), Some("pw"));
        assert_eq!(c.config_file(), Some(&file));
        let bad = Cli {
            appendfsync: Some("sometimes".into()),
            config: None,
            ..cli
        };
        assert!(Config::new(&Settings::load(&bad).expect("load")).is_err());
    }

    #[test]
    fn config_file_lines() {
        let v = parse_config_file("# c\nport 7000\nrequirepass \"a b\"\nsave \"\"\n").expect("ok");
        assert_eq!(
            v,
            vec![
                ("port".into(), "7000".into()),
                ("requirepass".into(), "a b".into()),
                ("save".into(), "".into())
            ]
        );
        assert!(parse_config_file("bogus 1").is_err());
    }

    #[test]
    fn client_workers_leave_a_core_unless_told() {
        use clap::Parser;
        let auto = Cli::parse_from(["pinnacle"]);
        assert_eq!(auto.client_workers(1), 1);
        assert_eq!(auto.client_workers(2), 1);
        assert_eq!(auto.client_workers(8), 7);
        let set = Cli::parse_from(["pinnacle", "--worker-threads", "3"]);
        assert_eq!(set.client_workers(2), 3);
        assert!(Cli::try_parse_from(["pinnacle", "--worker-threads", "999"]).is_err());
    }
}
