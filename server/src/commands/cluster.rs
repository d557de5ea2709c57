//! CLUSTER subcommands in the exact formats of Redis 7 (redis-wire.md §3): a single node owns
//! all 16384 slots; in Raft mode the answers come from the slot map and the shard leaders.

use crate::command::route::{key_slot, SLOTS};
use crate::command::{Ctx, Handler, Server};
use crate::replication::topology::{cluster_id, Member};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// Handlers of this family.
pub const HANDLERS: &[(&str, Handler)] = &[
    ("cluster|keyslot", keyslot),
    ("cluster|slots", slots),
    ("cluster|shards", shards),
    ("cluster|nodes", nodes),
    ("cluster|info", info),
    ("cluster|myid", myid),
    ("cluster|myshardid", myshardid),
    ("cluster|countkeysinslot", countkeysinslot),
    ("cluster|getkeysinslot", getkeysinslot),
    ("cluster|meet", meet),
    ("cluster|setslot", setslot),
    ("cluster|forget", forget),
];

const NOT_RAFT: &str = "ERR This node runs without Raft; start it with --cluster-peers";

/// `CLUSTER MEET ip port [cluster-bus-port]`: adds a node started with `--cluster-join`.
fn meet(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let Some(repl) = ctx.server.replication.get() else {
        return Reply::error(NOT_RAFT);
    };
    let host = String::from_utf8_lossy(&a[2]).into_owned();
    let port = std::str::from_utf8(&a[3])
        .ok()
        .and_then(|p| p.parse::<u16>().ok());
    let bus = match a.get(4) {
        Some(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|p| p.parse::<u16>().ok()),
        None => port.and_then(|p| p.checked_add(10000)),
    };
    let (Some(port), Some(bus)) = (port, bus) else {
        return Reply::error(
            "ERR Invalid base port specified: ".to_string() + &String::from_utf8_lossy(&a[3]),
        );
    };
    if host.parse::<std::net::IpAddr>().is_err() {
        return Reply::error(format!("ERR Invalid node address specified: {host}:{port}"));
    }
    match repl.meet(host, port, bus) {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(e),
    }
}

/// `CLUSTER FORGET node-id` (the node's Raft id).
fn forget(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let Some(repl) = ctx.server.replication.get() else {
        return Reply::error(NOT_RAFT);
    };
    let Some(id) = std::str::from_utf8(&a[2])
        .ok()
        .and_then(crate::replication::topology::parse_node_ref)
    else {
        return Reply::error(format!(
            "ERR Unknown node {}",
            String::from_utf8_lossy(&a[2])
        ));
    };
    match repl.forget(id) {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(e),
    }
}

/// Config epoch of the single node (no elections or slot moves yet).
const EPOCH: u64 = 1;

/// The address clients reach this node at: the local address of the calling connection (so
/// the endpoint is never empty or a wildcard), with the configured port as a fallback.
fn endpoint(ctx: &Ctx<'_>) -> (String, u16) {
    let laddr = &ctx.client.handle.laddr;
    if let Some((ip, port)) = laddr.rsplit_once(':') {
        if let Ok(port) = port.parse() {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            return (ip.to_string(), port);
        }
    }
    let port = ctx.server.config.get_i64("port").unwrap_or(6379) as u16;
    ("127.0.0.1".into(), port)
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn keyslot(_: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Integer(key_slot(&args[2]) as i64)
}

/// True when TLS ports are what this client should see (Redis's `shouldReturnTlsInfo`): the
/// cluster runs `tls-cluster yes` and the client came in over TLS.
fn tls_view(ctx: &Ctx<'_>) -> bool {
    crate::command::route::on_tls_client()
        && ctx.server.config.get("tls-cluster").as_deref() == Some("yes")
}

/// The client port of `m` for this client: its TLS port for a TLS client (if it announced
/// one), its plain port otherwise.
fn client_port(m: &Member, tls: bool) -> u16 {
    if tls && m.tls_port != 0 {
        m.tls_port
    } else {
        m.port
    }
}

/// `[ip, port, id, {}]` of a Raft-mode member.
fn member_entry(m: &Member, tls: bool) -> Reply {
    Reply::Array(vec![
        bulk(&m.ip),
        Reply::Integer(client_port(m, tls) as i64),
        bulk(&cluster_id(m.id)),
        Reply::Map(vec![]),
    ])
}

fn slots(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if let Some(repl) = ctx.server.replication.get() {
        let t = repl.topology();
        let tls = tls_view(ctx);
        let mut out = Vec::with_capacity(t.ranges.len());
        for &(start, end, shard) in &t.ranges {
            let sv = &t.shards[shard];
            // A shard between leaders keeps its last known one (or this node) so that the
            // answer still covers every slot; clients then get MOVED or CLUSTERDOWN.
            let master = sv
                .known_leader
                .and_then(|id| t.member(id))
                .or_else(|| t.member(t.me));
            let Some(master) = master else { continue };
            // Layout (a) of redis-wire §10: masters only. Followers are not listed as
            // replicas: whether one is alive is known only to its shard's leader, and every
            // node must give the same answer.
            let range = vec![
                Reply::Integer(start as i64),
                Reply::Integer(end as i64),
                member_entry(master, tls),
            ];
            out.push(Reply::Array(range));
        }
        return Reply::Array(out);
    }
    let (ip, port) = endpoint(ctx);
    let node = Reply::Array(vec![
        bulk(&ip),
        Reply::Integer(port as i64),
        bulk(&ctx.server.node_id),
        Reply::Map(vec![]),
    ]);
    Reply::Array(vec![Reply::Array(vec![
        Reply::Integer(0),
        Reply::Integer(SLOTS as i64 - 1),
        node,
    ])])
}

fn shards(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if let Some(repl) = ctx.server.replication.get() {
        let t = repl.topology();
        // Redis lists `tls-port` (when the node has one) under `tls-cluster yes`.
        let tls_cluster = ctx.server.config.get("tls-cluster").as_deref() == Some("yes");
        let entries = t
            .shards
            .iter()
            .map(|sv| {
                let slots = sv
                    .slots
                    .iter()
                    .flat_map(|&(a, b)| [Reply::Integer(a as i64), Reply::Integer(b as i64)])
                    .collect();
                let nodes = sv
                    .members
                    .iter()
                    .filter_map(|sm| t.member(sm.id).map(|m| (sm, m)))
                    .map(|(sm, m)| {
                        let health = if sv.leader.is_none() {
                            "fail"
                        } else if sm.leader || sm.offset > 0 {
                            "online"
                        } else {
                            "loading"
                        };
                        let mut fields = vec![(bulk("id"), bulk(&cluster_id(m.id)))];
                        if m.port != 0 {
                            fields.push((bulk("port"), Reply::Integer(m.port as i64)));
                        }
                        if tls_cluster && m.tls_port != 0 {
                            fields.push((bulk("tls-port"), Reply::Integer(m.tls_port as i64)));
                        }
                        fields.extend([
                            (bulk("ip"), bulk(&m.ip)),
                            (bulk("endpoint"), bulk(&m.ip)),
                            (
                                bulk("role"),
                                bulk(if sm.leader { "master" } else { "replica" }),
                            ),
                            (bulk("replication-offset"), Reply::Integer(sm.offset as i64)),
                            (bulk("health"), bulk(health)),
                        ]);
                        Reply::Map(fields)
                    })
                    .collect();
                Reply::Map(vec![
                    (bulk("slots"), Reply::Array(slots)),
                    (bulk("nodes"), Reply::Array(nodes)),
                ])
            })
            .collect();
        return Reply::Array(entries);
    }
    let (ip, port) = endpoint(ctx);
    let node = Reply::Map(vec![
        (bulk("id"), bulk(&ctx.server.node_id)),
        (bulk("port"), Reply::Integer(port as i64)),
        (bulk("ip"), bulk(&ip)),
        (bulk("endpoint"), bulk(&ip)),
        (bulk("role"), bulk("master")),
        (bulk("replication-offset"), Reply::Integer(0)),
        (bulk("health"), bulk("online")),
    ]);
    Reply::Array(vec![Reply::Map(vec![
        (
            bulk("slots"),
            Reply::Array(vec![Reply::Integer(0), Reply::Integer(SLOTS as i64 - 1)]),
        ),
        (bulk("nodes"), Reply::Array(vec![node])),
    ])])
}

fn nodes(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if let Some(repl) = ctx.server.replication.get() {
        let t = repl.topology();
        let tls = tls_view(ctx);
        // A node leading nothing is shown as a replica of shard 0's leader.
        let leader0 = t.shards.first().and_then(|s| s.leader).map(cluster_id);
        let now = Server::unix_ms();
        let mut out = String::new();
        for m in &t.members {
            let me = if m.id == t.me { "myself," } else { "" };
            let (role, master) = match (&leader0, m.leader) {
                (_, true) => ("master", "-".to_string()),
                (Some(l), false) => ("slave", l.clone()),
                (None, false) => ("slave", "-".to_string()),
            };
            out.push_str(&format!(
                "{} {}:{}@{} {me}{role} {master} 0 {now} {} connected",
                cluster_id(m.id),
                m.ip,
                client_port(m, tls),
                m.cport,
                t.term
            ));
            for (a, b) in t.slots_led_by(m.id) {
                if a == b {
                    out.push_str(&format!(" {a}"));
                } else {
                    out.push_str(&format!(" {a}-{b}"));
                }
            }
            if m.id == t.me {
                out.push_str(&migration_marks(repl, &t));
            }
            out.push('\n');
        }
        return Reply::Verbatim("txt", Bytes::from(out));
    }
    let (ip, port) = endpoint(ctx);
    let line = format!(
        "{} {}:{}@{} myself,master - 0 {} {} connected 0-{}\n",
        ctx.server.node_id,
        ip,
        port,
        port as u32 + 10000,
        Server::unix_ms(),
        EPOCH,
        SLOTS - 1
    );
    Reply::Verbatim("txt", Bytes::from(line))
}

/// The `myself` line's ` [slot->-target-id]` (migrating away from a shard this node leads)
/// and ` [slot-<-source-id]` (importing into one) marks.
fn migration_marks(
    repl: &crate::replication::Replication,
    t: &crate::replication::topology::Topology,
) -> String {
    let st = repl.meta_state();
    let leader = |shard: usize| {
        t.shards
            .get(shard)
            .and_then(|s| s.known_leader)
            .map(cluster_id)
            .unwrap_or_else(|| "-".into())
    };
    let mut out = String::new();
    for (slot, id) in &st.migrating {
        let Some(m) = st.migrations.get(id) else {
            continue;
        };
        if t.shards.get(m.from).and_then(|s| s.leader) == Some(t.me) {
            out.push_str(&format!(" [{slot}->-{}]", leader(m.to)));
        } else if t.shards.get(m.to).and_then(|s| s.leader) == Some(t.me) {
            out.push_str(&format!(" [{slot}-<-{}]", leader(m.from)));
        }
    }
    out
}

fn info(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    if let Some(repl) = ctx.server.replication.get() {
        let t = repl.topology();
        let ok: usize = t
            .ranges
            .iter()
            .filter(|(_, _, sh)| t.shards[*sh].leader.is_some())
            .map(|&(a, b, _)| (b - a) as usize + 1)
            .sum();
        let state = if t.ok { "ok" } else { "fail" };
        let size = t.members.iter().filter(|m| m.leader).count();
        let text = format!(
            "cluster_state:{state}\r\n\
             cluster_slots_assigned:{SLOTS}\r\n\
             cluster_slots_ok:{ok}\r\n\
             cluster_slots_pfail:0\r\n\
             cluster_slots_fail:{}\r\n\
             cluster_known_nodes:{}\r\n\
             cluster_size:{size}\r\n\
             cluster_current_epoch:{}\r\n\
             cluster_my_epoch:{}\r\n\
             cluster_stats_messages_sent:0\r\n\
             cluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n",
            SLOTS as usize - ok,
            t.members.len(),
            t.term,
            t.term,
        );
        return Reply::Verbatim("txt", Bytes::from(text));
    }
    let text = format!(
        "cluster_state:ok\r\n\
         cluster_slots_assigned:{SLOTS}\r\n\
         cluster_slots_ok:{SLOTS}\r\n\
         cluster_slots_pfail:0\r\n\
         cluster_slots_fail:0\r\n\
         cluster_known_nodes:1\r\n\
         cluster_size:1\r\n\
         cluster_current_epoch:{EPOCH}\r\n\
         cluster_my_epoch:{EPOCH}\r\n\
         cluster_stats_messages_sent:0\r\n\
         cluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n"
    );
    Reply::Verbatim("txt", Bytes::from(text))
}

fn myid(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    bulk(&ctx.server.node_id)
}

fn myshardid(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Reply {
    bulk(&ctx.server.shard_id)
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

const NOT_INT: &str = "ERR value is not an integer or out of range";

fn countkeysinslot(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(slot) = parse_i64(&args[2]) else {
        return Reply::error(NOT_INT);
    };
    if !(0..SLOTS as i64).contains(&slot) {
        return Reply::error("ERR Invalid slot");
    }
    let Some(db) = served_db(ctx, slot as u16) else {
        return Reply::Integer(0);
    };
    match db.count_keys_in_slot(slot as u16) {
        Ok(n) => Reply::Integer(n as i64),
        Err(e) => Reply::error(format!("ERR {e}")),
    }
}

fn getkeysinslot(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (Some(slot), Some(count)) = (parse_i64(&args[2]), parse_i64(&args[3])) else {
        return Reply::error(NOT_INT);
    };
    if count < 0 || !(0..SLOTS as i64).contains(&slot) {
        return Reply::error("ERR Invalid slot or number of keys");
    }
    let Some(db) = served_db(ctx, slot as u16) else {
        return Reply::Array(vec![]);
    };
    match db.keys_in_slot(slot as u16, count as usize) {
        Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        Err(e) => Reply::error(format!("ERR {e}")),
    }
}

/// The keyspace holding `slot` if this node serves it (a Redis node counts only its own
/// slots' keys; in Raft mode: the owner shard, when this node leads it).
fn served_db<'a>(ctx: &Ctx<'a>, slot: u16) -> Option<&'a crate::storage::Db> {
    let server = ctx.server;
    match server.replication.get() {
        None => Some(&server.db),
        Some(r) => {
            let shard = r.shard_of(slot);
            r.shard(shard).is_leader().then(|| server.shard_db(shard))
        }
    }
}

/// `CLUSTER SETSLOT <slot> IMPORTING|MIGRATING|NODE <node-id> | STABLE`, mapped onto live
/// migration so that `redis-cli --cluster reshard` works: `MIGRATING` (sent to the source)
/// moves the slot's keys to the shard the named node leads and flips ownership before it
/// answers, so the `GETKEYSINSLOT`/`MIGRATE` loop that follows finds nothing left to move;
/// `NODE` does the same if the slot has not moved yet; `IMPORTING` and `STABLE` only check.
fn setslot(ctx: &mut Ctx<'_>, a: &[Bytes]) -> Reply {
    let Some(repl) = ctx.server.replication.get() else {
        return Reply::error(NOT_RAFT);
    };
    let Some(slot) = parse_i64(&a[2]).filter(|s| (0..SLOTS as i64).contains(s)) else {
        return Reply::error("ERR Invalid or out of range slot");
    };
    let slot = slot as u16;
    let sub = a.get(3).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let node = a.get(4).map(|n| String::from_utf8_lossy(n).into_owned());
    match (sub.as_slice(), node) {
        (b"STABLE", None) => Reply::ok(),
        (b"IMPORTING" | b"MIGRATING" | b"NODE", Some(node)) => {
            let t = repl.topology();
            let Some(id) = crate::replication::topology::parse_node_ref(&node)
                .filter(|id| t.member(*id).is_some())
            else {
                return Reply::error(format!("ERR I don't know about node {node}"));
            };
            if sub.as_slice() == b"IMPORTING" {
                return Reply::ok();
            }
            let owner = repl.shard_of(slot);
            if t.shards[owner].leader == Some(id) {
                return Reply::ok();
            }
            let Some(mover) = crate::pinn::mover::mover() else {
                return Reply::error(NOT_RAFT);
            };
            let target = crate::pinn::mover::MoveTarget::Node(cluster_id(id));
            let res = mover
                .start(vec![(slot, slot)], target, "setslot")
                .and_then(|mid| mover.wait(mid, std::time::Duration::from_secs(60)));
            match res {
                Ok(_) => Reply::ok(),
                Err(e) if e.starts_with("ERR") => Reply::error(e),
                Err(e) => Reply::error(format!("ERR {e}")),
            }
        }
        _ => Reply::error(
            "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP",
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    const ID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn keyslot_and_ids() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["CLUSTER", "KEYSLOT", "foo"]), ":12182\r\n");
        assert_eq!(n.run(&["cluster", "keyslot", "foo{hash_tag}"]), ":2515\r\n");
        assert_eq!(n.run(&["CLUSTER", "MYID"]), format!("$40\r\n{ID}\r\n"));
        assert_eq!(
            n.run(&["CLUSTER", "MYSHARDID"]).len(),
            "$40\r\n".len() + 40 + 2
        );
        assert_eq!(
            n.run(&["CLUSTER", "FOO"]),
            "-ERR unknown subcommand 'FOO'. Try CLUSTER HELP.\r\n"
        );
    }

    #[test]
    fn slots_cover_everything() {
        let mut n = TestNode::new();
        let expect = format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6379\r\n$40\r\n{ID}\r\n*0\r\n"
        );
        assert_eq!(n.run(&["CLUSTER", "SLOTS"]), expect);
        n.resp3();
        assert_eq!(
            n.run(&["CLUSTER", "SLOTS"]),
            expect.replace("*0\r\n", "%0\r\n")
        );
    }

    #[test]
    fn shards_nodes_info() {
        let mut n = TestNode::new();
        let shards = n.run(&["CLUSTER", "SHARDS"]);
        assert!(shards.starts_with("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n"), "{shards}");
        assert!(shards.ends_with("$6\r\nhealth\r\n$6\r\nonline\r\n"));
        let nodes = n.run(&["CLUSTER", "NODES"]);
        let body = nodes.split("\r\n").nth(1).unwrap_or_default().to_string();
        let fields: Vec<&str> = body.trim_end_matches('\n').split(' ').collect();
        assert_eq!(fields[0], ID);
        assert_eq!(fields[1], "127.0.0.1:6379@16379");
        assert_eq!(fields[2], "myself,master");
        assert_eq!(fields[3], "-");
        assert_eq!(fields[7], "connected");
        assert_eq!(fields[8], "0-16383");
        assert!(body.ends_with('\n'));
        let info = n.run(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"));
        n.resp3();
        assert!(n.run(&["CLUSTER", "INFO"]).starts_with("="));
        assert!(n.run(&["CLUSTER", "NODES"]).contains("txt:"));
    }

    #[test]
    fn slot_key_queries() {
        let mut n = TestNode::new();
        assert_eq!(n.run(&["CLUSTER", "COUNTKEYSINSLOT", "12182"]), ":0\r\n");
        assert_eq!(
            n.run(&["CLUSTER", "COUNTKEYSINSLOT", "16384"]),
            "-ERR Invalid slot\r\n"
        );
        assert_eq!(
            n.run(&["CLUSTER", "COUNTKEYSINSLOT", "-1"]),
            "-ERR Invalid slot\r\n"
        );
        assert_eq!(
            n.run(&["CLUSTER", "COUNTKEYSINSLOT", "x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            n.run(&["CLUSTER", "GETKEYSINSLOT", "12182", "10"]),
            "*0\r\n"
        );
        assert_eq!(
            n.run(&["CLUSTER", "GETKEYSINSLOT", "12182", "-1"]),
            "-ERR Invalid slot or number of keys\r\n"
        );
        if crate::command::table::table().get(b"set").is_some() {
            assert_eq!(n.run(&["SET", "foo", "1"]), "+OK\r\n");
            assert_eq!(n.run(&["SET", "{foo}2", "1"]), "+OK\r\n");
            assert_eq!(n.run(&["CLUSTER", "COUNTKEYSINSLOT", "12182"]), ":2\r\n");
            assert_eq!(
                n.run(&["CLUSTER", "GETKEYSINSLOT", "12182", "1"]),
                "*1\r\n$3\r\nfoo\r\n"
            );
        }
    }
}
