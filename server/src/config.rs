//! Configuration: command-line flags, the redis.conf-style config file, and the run-time
//! parameter store behind `CONFIG GET/SET`.

use crate::command::glob::glob_match;
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

/// How a parameter's value is checked and shown.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A signed integer in `[min, max]`.
    Int(i64, i64),
    /// A byte size with optional unit (`1gb`, `512mb`), shown in bytes.
    Mem(u64, u64),
    /// `yes` or `no`.
    Bool,
    /// One of the listed words.
    Enum(&'static [&'static str]),
    /// Free text.
    Str,
    /// Redis's `save` schedule: pairs of integers, or empty.
    Save,
}

/// One parameter known to `CONFIG GET/SET`.
struct Param {
    name: &'static str,
    alias: Option<&'static str>,
    kind: Kind,
    default: &'static str,
    mutable: bool,
}

const fn p(name: &'static str, kind: Kind, default: &'static str) -> Param {
    Param {
        name,
        alias: None,
        kind,
        default,
        mutable: true,
    }
}

const fn aliased(
    name: &'static str,
    alias: &'static str,
    kind: Kind,
    default: &'static str,
) -> Param {
    Param {
        name,
        alias: Some(alias),
        kind,
        default,
        mutable: true,
    }
}

const fn fixed(name: &'static str, kind: Kind, default: &'static str) -> Param {
    Param {
        name,
        alias: None,
        kind,
        default,
        mutable: false,
    }
}

const INT: i64 = i32::MAX as i64;
const LONG: i64 = i64::MAX;
const FSYNC: &[&str] = &["everysec", "always", "no"];
const POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];
const LOGLEVELS: &[&str] = &["debug", "verbose", "notice", "warning"];

/// Every parameter, with Redis 7.0.15's names, ranges and defaults. Those Pinnacle acts on are
/// noted; the rest are stored and returned so clients and test harnesses that probe or tune
/// them keep working.
static PARAMS: &[Param] = &[
    // Acted on by Pinnacle.
    fixed("port", Kind::Int(0, 65535), "6379"),
    fixed("bind", Kind::Str, "127.0.0.1"),
    fixed("dir", Kind::Str, "./data"),
    p("requirepass", Kind::Str, ""),
    p("appendfsync", Kind::Enum(FSYNC), "everysec"),
    p("maxclients", Kind::Int(1, u32::MAX as i64), "10000"),
    p("timeout", Kind::Int(0, INT), "0"),
    p("slowlog-log-slower-than", Kind::Int(-1, LONG), "10000"),
    p("slowlog-max-len", Kind::Int(0, LONG), "128"),
    p(
        "proto-max-bulk-len",
        Kind::Mem(1 << 20, LONG as u64),
        "536870912",
    ),
    p(
        "client-query-buffer-limit",
        Kind::Mem(1 << 20, LONG as u64),
        "1073741824",
    ),
    fixed("cluster-enabled", Kind::Bool, "yes"),
    // Probed by clients (redis-benchmark reads save and appendonly).
    p("save", Kind::Save, ""),
    p("appendonly", Kind::Bool, "yes"),
    fixed("databases", Kind::Int(1, INT), "1"),
    // Encoding tunables set by test harnesses; stored and returned.
    aliased(
        "list-max-ziplist-size",
        "list-max-listpack-size",
        Kind::Int(i32::MIN as i64, INT),
        "-2",
    ),
    p("list-compress-depth", Kind::Int(0, INT), "0"),
    p("set-max-intset-entries", Kind::Int(0, LONG), "512"),
    aliased(
        "hash-max-ziplist-entries",
        "hash-max-listpack-entries",
        Kind::Int(0, LONG),
        "512",
    ),
    aliased(
        "hash-max-ziplist-value",
        "hash-max-listpack-value",
        Kind::Int(0, LONG),
        "64",
    ),
    aliased(
        "zset-max-ziplist-entries",
        "zset-max-listpack-entries",
        Kind::Int(0, LONG),
        "128",
    ),
    aliased(
        "zset-max-ziplist-value",
        "zset-max-listpack-value",
        Kind::Int(0, LONG),
        "64",
    ),
    p("stream-node-max-bytes", Kind::Mem(0, LONG as u64), "4096"),
    p("stream-node-max-entries", Kind::Int(0, LONG), "100"),
    p("hll-sparse-max-bytes", Kind::Mem(0, LONG as u64), "3000"),
    p("active-expire-effort", Kind::Int(1, 10), "1"),
    p("activerehashing", Kind::Bool, "yes"),
    p("latency-monitor-threshold", Kind::Int(0, LONG), "0"),
    p("latency-tracking", Kind::Bool, "yes"),
    p("latency-tracking-info-percentiles", Kind::Str, "50 99 99.9"),
    aliased(
        "lua-time-limit",
        "busy-reply-threshold",
        Kind::Int(0, LONG),
        "5000",
    ),
    p("maxmemory", Kind::Mem(0, u64::MAX), "0"),
    p("maxmemory-policy", Kind::Enum(POLICIES), "noeviction"),
    p("maxmemory-samples", Kind::Int(1, INT), "5"),
    p("notify-keyspace-events", Kind::Str, ""),
    p("hz", Kind::Int(0, INT), "10"),
    p("loglevel", Kind::Enum(LOGLEVELS), "notice"),
    fixed("logfile", Kind::Str, ""),
    fixed("daemonize", Kind::Bool, "no"),
    p("protected-mode", Kind::Bool, "yes"),
    p("tcp-keepalive", Kind::Int(0, INT), "300"),
    p("lazyfree-lazy-eviction", Kind::Bool, "no"),
    p("lazyfree-lazy-expire", Kind::Bool, "no"),
    p("lazyfree-lazy-server-del", Kind::Bool, "no"),
    p("lazyfree-lazy-user-del", Kind::Bool, "no"),
    p("lazyfree-lazy-user-flush", Kind::Bool, "no"),
    p("replica-read-only", Kind::Bool, "yes"),
    p("dbfilename", Kind::Str, "dump.rdb"),
    fixed("appendfilename", Kind::Str, "appendonly.aof"),
    p(
        "client-output-buffer-limit",
        Kind::Str,
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
    ),
    p("cluster-node-timeout", Kind::Int(0, LONG), "15000"),
    p("cluster-require-full-coverage", Kind::Bool, "yes"),
    p("cluster-allow-reads-when-down", Kind::Bool, "no"),
    fixed("io-threads", Kind::Int(1, 128), "1"),
];

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
        if let Some(v) = &cli.appendfsync {
            set("appendfsync", v.clone());
        }
        if let Some(v) = cli.maxclients {
            set("maxclients", v.to_string());
        }
        if let Some(v) = cli.timeout {
            set("timeout", v.to_string());
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

fn find_param(name: &str) -> Option<(usize, &'static Param)> {
    PARAMS.iter().enumerate().find(|(_, p)| {
        p.name.eq_ignore_ascii_case(name) || p.alias.is_some_and(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Parses a Redis memory size (`100`, `1k`=1000, `1kb`=1024, `m`, `mb`, `g`, `gb`).
pub fn parse_memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suffix, mul)| lower.strip_suffix(suffix).map(|n| (n.to_string(), *mul)))
    .unwrap_or((lower.clone(), 1));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Checks `value` for `param` and returns its canonical stored form, or Redis's reason text.
fn validate(param: &Param, value: &str) -> Result<String, String> {
    match param.kind {
        Kind::Int(min, max) => {
            let n: i64 = value
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(n.to_string())
        }
        Kind::Mem(min, max) => {
            let n =
                parse_memory(value).ok_or_else(|| "argument must be a memory value".to_string())?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(n.to_string())
        }
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        },
        Kind::Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(value))
            .map(|w| w.to_string())
            .ok_or_else(|| {
                format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                )
            }),
        Kind::Str => Ok(value.to_string()),
        Kind::Save => {
            let parts: Vec<&str> = value.split_whitespace().collect();
            let ok =
                parts.len().is_multiple_of(2) && parts.iter().all(|p| p.parse::<u64>().is_ok());
            if ok {
                Ok(parts.join(" "))
            } else {
                Err("Invalid save parameters".into())
            }
        }
    }
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
        ];
        for (slot, name) in cache {
            if let Some(n) = self.get_i64(name) {
                slot.store(n, Ordering::Relaxed);
            }
        }
    }

    /// `timeout` in seconds (0 = never close idle clients).
    pub fn timeout(&self) -> u64 {
        self.timeout.load(Ordering::Relaxed).max(0) as u64
    }

    /// `client-query-buffer-limit` in bytes.
    pub fn query_buffer_limit(&self) -> usize {
        self.query_buffer_limit.load(Ordering::Relaxed).max(0) as usize
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
}
