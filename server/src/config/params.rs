//! The parameters `CONFIG GET/SET` know: names, aliases, kinds, ranges, defaults, and how a
//! value is validated (Redis 7.0.15's rules and error texts).

/// How a parameter's value is checked and shown.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A signed integer in `[min, max]`.
    Int(i64, i64),
    /// A finite decimal number in `[min, max]` (PINN weights and thresholds).
    Float(f64, f64),
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
    /// `latency-tracking-info-percentiles`: numbers in `[0, 100]`.
    Percentiles,
}

/// One parameter known to `CONFIG GET/SET`.
pub(super) struct Param {
    /// Redis's name.
    pub(super) name: &'static str,
    /// The other name of the same setting (7.0's `*-listpack-*` for `*-ziplist-*`).
    pub(super) alias: Option<&'static str>,
    /// How values are checked.
    pub(super) kind: Kind,
    /// Value at start-up.
    pub(super) default: &'static str,
    /// False for settings `CONFIG SET` refuses (`can't set immutable config`).
    pub(super) mutable: bool,
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
const PLANNERS: &[&str] = &["pinn", "reactive", "off"];
const TLS_AUTH: &[&str] = &["yes", "no", "optional"];

/// Every parameter, with Redis 7.0.15's names, ranges and defaults. Those Pinnacle acts on are
/// noted; the rest are stored and returned so clients and test harnesses that probe or tune
/// them keep working.
pub(super) static PARAMS: &[Param] = &[
    // Acted on by Pinnacle.
    fixed("port", Kind::Int(0, 65535), "6379"),
    fixed("bind", Kind::Str, "127.0.0.1"),
    fixed("dir", Kind::Str, "./data"),
    p("requirepass", Kind::Str, ""),
    fixed("aclfile", Kind::Str, ""),
    p("acllog-max-len", Kind::Int(0, LONG), "128"),
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
    // TLS (net/tls.rs) and cluster-bus authentication, read at start.
    fixed("tls-port", Kind::Int(0, 65535), "0"),
    fixed("tls-cert-file", Kind::Str, ""),
    fixed("tls-key-file", Kind::Str, ""),
    fixed("tls-ca-cert-file", Kind::Str, ""),
    fixed("tls-auth-clients", Kind::Enum(TLS_AUTH), "yes"),
    fixed("tls-cluster", Kind::Bool, "no"),
    fixed("cluster-secret", Kind::Str, ""),
    fixed("cluster-secret-file", Kind::Str, ""),
    // HTTP ports on the bind address (0: off): Prometheus `/metrics` and the PINN dashboard.
    fixed("metrics-port", Kind::Int(0, 65535), "0"),
    fixed("dashboard-port", Kind::Int(0, 65535), "0"),
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
    p(
        "latency-tracking-info-percentiles",
        Kind::Percentiles,
        "50 99 99.9",
    ),
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
    // Pinnacle's PINN (server/src/pinn): read by the PINN service every second; PINN.CONFIG
    // shows and sets the same values without the `pinn-` prefix.
    p("pinn-enabled", Kind::Bool, "yes"),
    p("pinn-train", Kind::Bool, "yes"),
    // Off until asked for: the heat exchange between nodes can still skew a node's view of
    // its own shard (see the issue notes), and an automatic move must never surprise a client.
    p("pinn-planner", Kind::Enum(PLANNERS), "off"),
    p("pinn-threshold", Kind::Float(1.0, 100.0), "1.5"),
    p("pinn-min-heat", Kind::Float(0.0, 1e9), "100"),
    p("pinn-hysteresis", Kind::Float(0.0, 0.9), "0.1"),
    p("pinn-horizon", Kind::Int(1, 60), "10"),
    p("pinn-train-interval", Kind::Int(1, 3600), "5"),
    p("pinn-train-steps", Kind::Int(1, 100_000), "200"),
    p("pinn-train-min-ops", Kind::Int(0, LONG), "1000"),
    p("pinn-nu", Kind::Float(0.0, 10.0), "0.01"),
    p("pinn-lambda-r", Kind::Float(0.0, 1e6), "1"),
    p("pinn-lambda-b", Kind::Float(0.0, 1e6), "0.1"),
    p("pinn-lambda-i", Kind::Float(0.0, 1e6), "10"),
    p("pinn-learn-velocity", Kind::Bool, "no"),
    p("pinn-forced", Kind::Bool, "no"),
    p("pinn-fourier", Kind::Int(0, 64), "0"),
    p("pinn-max-migrations", Kind::Int(1, 64), "1"),
    p("pinn-cooldown", Kind::Int(0, 86_400), "60"),
    p("pinn-confirm", Kind::Int(1, 60), "2"),
    p("pinn-key-sample", Kind::Int(1, 1 << 20), "16"),
    fixed("pinn-buckets", Kind::Int(4, 1024), "64"),
];

pub(super) fn find_param(name: &str) -> Option<(usize, &'static Param)> {
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
pub(super) fn validate(param: &Param, value: &str) -> Result<String, String> {
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
        Kind::Float(min, max) => {
            let n: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| "argument couldn't be parsed into a number".to_string())?;
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
        Kind::Percentiles => crate::metrics::latency::parse_percentiles(value)
            .map(|v| crate::metrics::latency::canonical_percentiles(&v)),
    }
}
