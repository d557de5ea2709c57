//! PINN.* command tests, RESP2 and RESP3, through the real pipeline.

use crate::command::testutil::TestNode;
use crate::pinn;

const NODE: &str = "0123456789abcdef0123456789abcdef01234567";

/// Tests that change the process-wide PINN settings take turns.
static SETTINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn settings_lock() -> std::sync::MutexGuard<'static, ()> {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn commands_are_listed_with_their_specs() {
    let mut n = TestNode::new();
    let info = n.run(&["COMMAND", "INFO", "pinn.heatmap"]);
    assert!(
        info.starts_with("*1\r\n*10\r\n$12\r\npinn.heatmap\r\n:-1\r\n*2\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@slow\r\n"),
        "{info:?}"
    );
    let info = n.run(&["COMMAND", "INFO", "PINN.MIGRATE"]);
    assert!(
        info.contains("+admin\r\n") && info.contains("+@dangerous\r\n"),
        "{info:?}"
    );
    let docs = n.run(&["COMMAND", "DOCS", "pinn.predict"]);
    assert!(
        docs.contains("oneof") && docs.contains("HORIZON"),
        "{docs:?}"
    );
    let all = n.run(&["COMMAND"]);
    for c in [
        "pinn.heatmap",
        "pinn.predict",
        "pinn.stats",
        "pinn.train",
        "pinn.config",
        "pinn.migrate",
        "pinn.migrations",
        "pinn.heat",
    ] {
        assert!(all.contains(&format!("\r\n{c}\r\n")), "COMMAND lists {c}");
    }
    let heat = n.run(&["PINN.HEAT"]);
    assert!(heat.starts_with('$') && heat.ends_with("\r\n"), "{heat:?}");
    assert_eq!(
        n.run(&["PINN.STATS", "x"]),
        "-ERR wrong number of arguments for 'pinn.stats' command\r\n"
    );
}

#[test]
fn heatmap_shapes_in_both_protocols() {
    let mut n = TestNode::new();
    let r = n.run(&["PINN.HEATMAP", "BUCKETS", "16"]);
    assert!(r.starts_with("*12\r\n$4\r\ntext\r\n*4\r\n$"), "{r:?}");
    assert!(r.contains("16 buckets over slots 0-16383"), "{r:?}");
    assert!(r.contains("$4\r\ntime\r\n:"), "{r:?}");
    assert!(r.contains("$7\r\nbuckets\r\n:16\r\n"), "{r:?}");
    assert!(
        r.contains(&format!("$4\r\nnode\r\n$40\r\n{NODE}\r\n")),
        "{r:?}"
    );
    assert!(
        r.contains("$5\r\nslots\r\n*1\r\n$7\r\n0-16383\r\n"),
        "{r:?}"
    );
    assert!(r.contains("$16\r\nobserved_buckets\r\n*16\r\n"), "{r:?}");
    n.resp3();
    let r = n.run(&["PINN.HEATMAP", "HORIZON", "5", "BUCKETS", "8"]);
    assert!(r.starts_with("%6\r\n$4\r\ntext\r\n*4\r\n$"), "{r:?}");
    assert!(r.contains("$7\r\nhorizon\r\n:5\r\n"), "{r:?}");
    assert!(r.contains("$5\r\nlocal\r\n#t\r\n"), "{r:?}");
    assert!(r.contains("$16\r\nobserved_buckets\r\n*8\r\n,"), "{r:?}");
    let text = n.run(&["pinn.heatmap", "text", "buckets", "32"]);
    assert!(text.starts_with("*4\r\n$"), "{text:?}");
    assert!(text.contains("shard 0 now  |"), "{text:?}");
    assert!(text.contains("(this node)"), "{text:?}");
}

#[test]
fn heatmap_and_predict_errors() {
    let mut n = TestNode::new();
    assert_eq!(
        n.run(&["PINN.HEATMAP", "HORIZON", "0"]),
        "-ERR HORIZON must be an integer between 1 and 600\r\n"
    );
    assert_eq!(
        n.run(&["PINN.HEATMAP", "BUCKETS", "x"]),
        "-ERR BUCKETS must be an integer between 1 and 1024\r\n"
    );
    assert_eq!(
        n.run(&["PINN.HEATMAP", "WIDTH", "3"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(n.run(&["PINN.HEATMAP", "HORIZON"]), "-ERR syntax error\r\n");
    assert_eq!(
        n.run(&["PINN.PREDICT", "SLOT", "16384"]),
        "-ERR Invalid or out of range slot\r\n"
    );
    assert_eq!(
        n.run(&["PINN.PREDICT", "3"]),
        "-ERR Invalid shard index (this cluster has 1 shards)\r\n"
    );
    assert_eq!(
        n.run(&["PINN.PREDICT", "0", "TEXT"]),
        "-ERR syntax error\r\n"
    );
}

#[test]
fn predict_a_shard_and_a_slot() {
    let mut n = TestNode::new();
    let r = n.run(&["PINN.PREDICT", "0", "HORIZON", "3"]);
    assert!(
        r.starts_with(
            "*16\r\n$6\r\ntarget\r\n$7\r\nshard 0\r\n$5\r\nslots\r\n*1\r\n$7\r\n0-16383\r\n"
        ),
        "{r:?}"
    );
    assert!(
        r.contains("$7\r\nhorizon\r\n:3\r\n$8\r\nobserved\r\n$"),
        "{r:?}"
    );
    n.resp3();
    let r = n.run(&["PINN.PREDICT", "SLOT", "42"]);
    assert!(
        r.starts_with(
            "%8\r\n$6\r\ntarget\r\n$7\r\nslot 42\r\n$5\r\nslots\r\n*1\r\n$5\r\n42-42\r\n"
        ),
        "{r:?}"
    );
    assert!(r.contains("$8\r\nobserved\r\n,"), "{r:?}");
    assert!(r.contains("$6\r\nmodels\r\n%"), "{r:?}");
}

#[test]
fn stats_lists_every_field() {
    let mut n = TestNode::new();
    let r = n.run(&["PINN.STATS"]);
    assert!(r.starts_with("*36\r\n$7\r\nenabled\r\n:"), "{r:?}");
    for k in [
        "training",
        "planner",
        "window_rows",
        "rounds",
        "last_round",
        "train_ms_avg",
        "forward_us",
        "best_model",
        "forecast_error",
        "hot_keys",
        "planner_skipped",
    ] {
        assert!(r.contains(&format!("\r\n{k}\r\n")), "{k} in {r:?}");
    }
    n.resp3();
    let r = n.run(&["PINN.STATS"]);
    assert!(r.starts_with("%18\r\n$7\r\nenabled\r\n#"), "{r:?}");
}

#[test]
fn config_get_and_set_share_the_config_parameters() {
    let _turn = settings_lock();
    let mut n = TestNode::new();
    assert_eq!(
        n.run(&["PINN.CONFIG", "GET", "horizon"]),
        "*2\r\n$7\r\nhorizon\r\n$2\r\n10\r\n"
    );
    let all = n.run(&["PINN.CONFIG", "GET", "*"]);
    assert!(all.starts_with("*44\r\n$7\r\nenabled\r\n"), "{all:?}");
    assert!(all.contains("$6\r\nforced\r\n$2\r\nno\r\n"), "{all:?}");
    assert!(all.contains("$7\r\nfourier\r\n$1\r\n0\r\n"), "{all:?}");
    assert!(all.contains("$8\r\nmin-heat\r\n$3\r\n100\r\n"), "{all:?}");
    assert!(all.contains("$8\r\nlambda-r\r\n$1\r\n1\r\n"), "{all:?}");
    assert!(
        all.contains("$14\r\nlearn-velocity\r\n$2\r\nno\r\n"),
        "{all:?}"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "learn-velocity", "yes"]),
        "+OK\r\n"
    );
    assert_eq!(
        n.run(&["CONFIG", "GET", "pinn-learn-velocity"]),
        "*2\r\n$19\r\npinn-learn-velocity\r\n$3\r\nyes\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "learn-velocity", "no"]),
        "+OK\r\n"
    );
    assert_eq!(n.run(&["PINN.CONFIG", "SET", "cooldown", "61"]), "+OK\r\n");
    assert_eq!(
        n.run(&["CONFIG", "GET", "pinn-cooldown"]),
        "*2\r\n$13\r\npinn-cooldown\r\n$2\r\n61\r\n"
    );
    assert_eq!(n.run(&["CONFIG", "SET", "pinn-cooldown", "62"]), "+OK\r\n");
    n.resp3();
    assert_eq!(
        n.run(&["PINN.CONFIG", "GET", "pinn-cooldown"]),
        "%1\r\n$8\r\ncooldown\r\n$2\r\n62\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "nu", "-1"]),
        "-ERR CONFIG SET failed (possibly related to argument 'pinn-nu') - argument must be between 0 and 10 inclusive\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "planner", "magic"]),
        "-ERR CONFIG SET failed (possibly related to argument 'pinn-planner') - argument(s) must be one of the following: pinn, reactive, off\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "maxclients", "5"]),
        "-ERR Unknown PINN option 'maxclients'\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "nu"]),
        "-ERR wrong number of arguments for 'pinn.config|set' command\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "RESET", "x"]),
        "-ERR unknown subcommand 'RESET'. Try PINN.CONFIG GET or PINN.CONFIG SET.\r\n"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "fourier", "65"]),
        "-ERR CONFIG SET failed (possibly related to argument 'pinn-fourier') - argument must be between 0 and 64 inclusive\r\n"
    );
    assert_eq!(n.run(&["PINN.CONFIG", "SET", "fourier", "4"]), "+OK\r\n");
    assert_eq!(pinn::service().settings().fourier, 4);
    assert_eq!(pinn::service().settings().train_config().loss.fourier, 4);
    assert_eq!(
        n.run(&["CONFIG", "GET", "pinn-fourier"]),
        "%1\r\n$12\r\npinn-fourier\r\n$1\r\n4\r\n"
    );
    // The service follows the values (it is process-wide; put the defaults back).
    assert_eq!(n.run(&["PINN.CONFIG", "SET", "fourier", "0"]), "+OK\r\n");
    assert_eq!(pinn::service().settings().fourier, 0);
    assert_eq!(n.run(&["PINN.CONFIG", "SET", "cooldown", "60"]), "+OK\r\n");
    assert_eq!(pinn::service().settings().cooldown, 60);
}

#[test]
fn migrations_need_a_mover() {
    let mut n = TestNode::new();
    assert!(pinn::mover().is_none());
    assert_eq!(
        n.run(&["PINN.MIGRATE", "100-200", "1"]),
        "-ERR This node runs without Raft; start it with --cluster-peers\r\n"
    );
    assert_eq!(
        n.run(&["PINN.MIGRATE", "7", NODE, "SYNC"]),
        "-ERR This node runs without Raft; start it with --cluster-peers\r\n"
    );
    assert_eq!(
        n.run(&["PINN.MIGRATE", "200-100", "1"]),
        "-ERR Invalid or out of range slot\r\n"
    );
    assert_eq!(
        n.run(&["PINN.MIGRATE", "16384", "1"]),
        "-ERR Invalid or out of range slot\r\n"
    );
    assert_eq!(
        n.run(&["PINN.MIGRATE", "1", "shard-x"]),
        "-ERR Invalid shard index or node id\r\n"
    );
    assert_eq!(
        n.run(&["PINN.MIGRATE", "1", "1", "ASYNC"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(n.run(&["PINN.MIGRATIONS"]), "*0\r\n");
    assert_eq!(n.run(&["PINN.MIGRATIONS", "COUNT", "5"]), "*0\r\n");
    assert_eq!(
        n.run(&["PINN.MIGRATIONS", "COUNT", "-1"]),
        "-ERR value is out of range, must be positive\r\n"
    );
    assert_eq!(
        n.run(&["PINN.MIGRATIONS", "LIMIT"]),
        "-ERR syntax error\r\n"
    );
}

#[test]
fn train_runs_a_round_on_recorded_traffic() {
    let _turn = settings_lock();
    let mut n = TestNode::new();
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "train-steps", "3"]),
        "+OK\r\n"
    );
    let svc = pinn::service();
    // Ten seconds of a hot spot moving along the ring, recorded as the dispatcher would.
    for k in 0..10u64 {
        for i in 0..50u16 {
            pinn::record((k as u16 * 1000 + i) % 16384, i % 3 == 0, 16);
        }
        svc.tick(2_000_000_000 + k);
    }
    let r = n.run(&["PINN.TRAIN"]);
    assert!(r.starts_with("*36\r\n$7\r\nenabled\r\n:1\r\n"), "{r:?}");
    assert!(
        r.contains("$10\r\nlast_round\r\n*22\r\n$5\r\nround\r\n:"),
        "{r:?}"
    );
    // Burgers' on u itself unless learn_velocity is on: velocity units (0, 1).
    assert!(
        r.contains("$10\r\nvelocity_a\r\n$1\r\n0\r\n$10\r\nvelocity_b\r\n$1\r\n1\r\n"),
        "{r:?}"
    );
    assert!(r.contains("$5\r\nsteps\r\n:3\r\n"), "{r:?}");
    assert!(r.contains("$4\r\nloss\r\n*10\r\n$4\r\ndata\r\n$"), "{r:?}");
    n.resp3();
    let r = n.run(&["PINN.PREDICT", "0"]);
    assert!(
        r.contains("$4\r\npinn\r\n,") && r.contains("$11\r\npinn-change\r\n,"),
        "the trained model forecasts its field and its change: {r:?}"
    );
    assert_eq!(
        n.run(&["PINN.CONFIG", "SET", "train-steps", "200"]),
        "+OK\r\n"
    );
}
