//! Commands Pinnacle answers that redis-server 7.0.15 doesn't know, described the way the Redis
//! version that introduced them does.

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
