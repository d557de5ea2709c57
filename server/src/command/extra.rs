//! Commands Pinnacle answers that redis-server 7.0.15 doesn't know: subcommands described the
//! way the Redis version that introduced them does, and Pinnacle's own PINN.* commands.

use super::spec::{CommandSpec, Lit};

/// Subcommands added to a container after 7.0: `(parent, spec)`.
pub static EXTRA_SUBCOMMANDS: &[(&str, CommandSpec)] = &[
    (
        "cluster",
        // Redis 7.2's CLUSTER MYSHARDID.
        CommandSpec {
            name: "cluster|myshardid",
            arity: 2,
            flags: &["loading", "stale"],
            first_key: 0,
            last_key: 0,
            step: 0,
            acl_categories: &["@slow"],
            tips: &["nondeterministic_output"],
            key_specs: &[],
            summary: "Returns the shard ID of a node.",
            since: "7.2.0",
            group: "cluster",
            complexity: Some("O(1)"),
            doc_extra: &[],
            subcommands: &[],
        },
    ),
    (
        "client",
        // Redis 7.2's CLIENT SETINFO (clients send it on connect and ignore errors; we accept it).
        CommandSpec {
            name: "client|setinfo",
            arity: 4,
            flags: &["noscript", "loading", "stale"],
            first_key: 0,
            last_key: 0,
            step: 0,
            acl_categories: &["@slow", "@connection"],
            tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
            key_specs: &[],
            summary: "Set client or connection specific info",
            since: "7.2.0",
            group: "connection",
            complexity: Some("O(1)"),
            doc_extra: &[(
                "arguments",
                Lit::Arr(&[Lit::Map(&[
                    (Lit::Bulk("name"), Lit::Bulk("attr")),
                    (Lit::Bulk("type"), Lit::Bulk("oneof")),
                    (
                        Lit::Bulk("arguments"),
                        Lit::Arr(&[
                            Lit::Map(&[
                                (Lit::Bulk("name"), Lit::Bulk("libname")),
                                (Lit::Bulk("type"), Lit::Bulk("string")),
                                (Lit::Bulk("token"), Lit::Bulk("LIB-NAME")),
                            ]),
                            Lit::Map(&[
                                (Lit::Bulk("name"), Lit::Bulk("libver")),
                                (Lit::Bulk("type"), Lit::Bulk("string")),
                                (Lit::Bulk("token"), Lit::Bulk("LIB-VER")),
                            ]),
                        ]),
                    ),
                ])]),
            )],
            subcommands: &[],
        },
    ),
];

/// One `COMMAND DOCS` argument: `name`, `type`, then optional token and flags.
macro_rules! arg {
    ($name:literal, $ty:literal) => {
        Lit::Map(&[
            (Lit::Bulk("name"), Lit::Bulk($name)),
            (Lit::Bulk("type"), Lit::Bulk($ty)),
        ])
    };
    ($name:literal, $ty:literal, token $tok:literal) => {
        Lit::Map(&[
            (Lit::Bulk("name"), Lit::Bulk($name)),
            (Lit::Bulk("type"), Lit::Bulk($ty)),
            (Lit::Bulk("token"), Lit::Bulk($tok)),
        ])
    };
    ($name:literal, $ty:literal, optional token $tok:literal) => {
        Lit::Map(&[
            (Lit::Bulk("name"), Lit::Bulk($name)),
            (Lit::Bulk("type"), Lit::Bulk($ty)),
            (Lit::Bulk("token"), Lit::Bulk($tok)),
            (Lit::Bulk("flags"), Lit::Set(&[Lit::Status("optional")])),
        ])
    };
    ($name:literal, $ty:literal, multiple) => {
        Lit::Map(&[
            (Lit::Bulk("name"), Lit::Bulk($name)),
            (Lit::Bulk("type"), Lit::Bulk($ty)),
            (Lit::Bulk("flags"), Lit::Set(&[Lit::Status("multiple")])),
        ])
    };
}

/// A PINN.* command: keyless, since Pinnacle 0.1.0, in the `server` group.
macro_rules! pinn_cmd {
    ($name:literal, $arity:expr, $flags:expr, $acl:expr, $summary:literal, $cx:literal, $extra:expr) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: 0,
            last_key: 0,
            step: 0,
            acl_categories: $acl,
            tips: &["nondeterministic_output"],
            key_specs: &[],
            summary: $summary,
            since: "0.1.0",
            group: "server",
            complexity: Some($cx),
            doc_extra: $extra,
            subcommands: &[],
        }
    };
}

const READ: &[&str] = &["loading", "stale"];
const READ_ACL: &[&str] = &["@slow"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];
const ADMIN_ACL: &[&str] = &["@admin", "@slow", "@dangerous"];

/// Pinnacle's own top-level commands (predictive rebalancing, ARCHITECTURE.md "PINN").
pub static EXTRA_COMMANDS: &[CommandSpec] = &[
    pinn_cmd!(
        "pinn.heatmap",
        -1,
        READ,
        READ_ACL,
        "Shows observed and forecast heat per shard along the slot ring, with a text rendering.",
        "O(S + B) with S the slots and B the buckets",
        &[(
            "arguments",
            Lit::Arr(&[
                arg!("seconds", "integer", optional token "HORIZON"),
                arg!("count", "integer", optional token "BUCKETS"),
                arg!("text", "pure-token", optional token "TEXT"),
            ]),
        )]
    ),
    pinn_cmd!(
        "pinn.predict",
        -2,
        READ,
        READ_ACL,
        "Forecasts the heat of a shard or a slot at a horizon, by every model.",
        "O(S) with S the slots",
        &[(
            "arguments",
            Lit::Arr(&[
                Lit::Map(&[
                    (Lit::Bulk("name"), Lit::Bulk("target")),
                    (Lit::Bulk("type"), Lit::Bulk("oneof")),
                    (
                        Lit::Bulk("arguments"),
                        Lit::Arr(&[
                            arg!("shard", "integer"),
                            arg!("slot", "integer", token "SLOT"),
                        ]),
                    ),
                ]),
                arg!("seconds", "integer", optional token "HORIZON"),
            ]),
        )]
    ),
    pinn_cmd!(
        "pinn.stats",
        1,
        READ,
        READ_ACL,
        "Shows the PINN's loss terms, training and forward times, and forecast errors against the baselines.",
        "O(1)",
        &[]
    ),
    pinn_cmd!(
        "pinn.train",
        1,
        ADMIN,
        ADMIN_ACL,
        "Runs one training round of the PINN now and returns its statistics.",
        "O(steps)",
        &[]
    ),
    pinn_cmd!(
        "pinn.config",
        -3,
        ADMIN,
        ADMIN_ACL,
        "Gets or sets the PINN's parameters (the pinn-* CONFIG parameters).",
        "O(N) with N the parameters",
        &[(
            "arguments",
            Lit::Arr(&[
                Lit::Map(&[
                    (Lit::Bulk("name"), Lit::Bulk("operation")),
                    (Lit::Bulk("type"), Lit::Bulk("oneof")),
                    (
                        Lit::Bulk("arguments"),
                        Lit::Arr(&[
                            arg!("get", "pure-token", token "GET"),
                            arg!("set", "pure-token", token "SET"),
                        ]),
                    ),
                ]),
                arg!("arg", "string", multiple),
            ]),
        )]
    ),
    pinn_cmd!(
        "pinn.migrate",
        -3,
        ADMIN,
        ADMIN_ACL,
        "Moves a slot or a range of slots to a shard (by index) or to the shard a node leads.",
        "O(N) with N the keys moved",
        &[(
            "arguments",
            Lit::Arr(&[
                arg!("slots", "string"),
                arg!("target", "string"),
                arg!("sync", "pure-token", optional token "SYNC"),
            ]),
        )]
    ),
    pinn_cmd!(
        "pinn.heat",
        1,
        READ,
        READ_ACL,
        "Returns this node's per-slot operation counts of the last second (shard leaders pull it from each other).",
        "O(S) with S the slots with traffic",
        &[]
    ),
    pinn_cmd!(
        "pinn.publishlocal",
        3,
        &["pubsub", "loading", "stale", "fast"],
        &["@pubsub", "@fast"],
        "Delivers a message to this node's subscribers only (nodes relay PUBLISH to each other with it).",
        "O(N+M) with N the clients subscribed to the channel here and M the patterns",
        &[(
            "arguments",
            Lit::Arr(&[arg!("channel", "string"), arg!("message", "string")]),
        )]
    ),
    pinn_cmd!(
        "pinn.migrations",
        -1,
        READ,
        READ_ACL,
        "Lists recent slot migrations with the planner's prediction and the heat observed later.",
        "O(N) with N the migrations listed",
        &[(
            "arguments",
            Lit::Arr(&[arg!("count", "integer", optional token "COUNT")]),
        )]
    ),
];
