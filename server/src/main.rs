//! `pinnacle`: a Redis-protocol-compatible server.

use anyhow::Context;
use clap::Parser;
use pinnacle_lsm::SyncPolicy;
use pinnacle_server::command::state::NodeIds;
use pinnacle_server::command::Server;
use pinnacle_server::config::{Cli, Config, Settings};
use pinnacle_server::{net, replication, storage};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    // Before any thread exists: the PINN trainer's matmuls stay on one core.
    pinnacle_server::pinn::prepare_process();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft logs routine timer events at INFO many times a second.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    // Test builds only: FAILPOINTS="name=action;..." (see README "Failpoints"); a fired `panic`
    // aborts the whole process, as a crash at that exact point would.
    #[cfg(feature = "failpoints")]
    let _failpoints = {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort();
        }));
        fail::FailScenario::setup()
    };
    let settings = Settings::load(&cli)?;
    let config = Config::new(&settings)?;

    let dir = config.dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    config.set_dir_absolute(&dir);
    let fsync = config
        .get("appendfsync")
        .unwrap_or_else(|| "everysec".into());
    let raft_mode = cli.cluster_peers.is_some() || cli.cluster_join;
    let sync = match fsync.as_str() {
        // In Raft mode the Raft log is the durability point (fsynced per batch); the LSM's
        // WAL only bounds how much of the log a restart re-applies.
        _ if raft_mode => SyncPolicy::EveryMillis(1000),
        "always" => SyncPolicy::Always,
        "no" => SyncPolicy::Never,
        _ => SyncPolicy::EveryMillis(1000),
    };
    let ids = match cli.node_id {
        // Every member must be able to name every other one: ids derive from Raft ids.
        Some(id) if raft_mode => NodeIds {
            node_id: replication::topology::cluster_id(id),
            shard_id: replication::topology::shard_id(),
        },
        _ => NodeIds::load_or_create(&dir)
            .with_context(|| format!("loading the node id in {}", dir.display()))?,
    };
    // Raft mode keeps one keyspace per shard (each is one Raft group's state machine).
    let db_dirs: Vec<std::path::PathBuf> = if raft_mode {
        (0..cli.shards)
            .map(|i| dir.join(format!("shard-{i}")))
            .collect()
    } else {
        vec![dir.join("db")]
    };
    let mut dbs = Vec::with_capacity(db_dirs.len());
    for d in &db_dirs {
        dbs.push(
            storage::Db::open(d, sync)
                .with_context(|| format!("opening the keyspace in {}", d.display()))?,
        );
    }
    let port = config.get_i64("port").unwrap_or(6379) as u16;
    let tls_port = config.get_i64("tls-port").unwrap_or(0) as u16;
    let tls = net::tls::client_acceptor(&config).context("TLS")?;
    let bus_security = net::tls::bus_security(&config).context("cluster bus security")?;
    if raft_mode && matches!(bus_security, pinnacle_raft::transport::BusSecurity::Open) {
        tracing::warn!(
            "the cluster bus is unauthenticated: set --cluster-secret-file or --tls-cluster yes"
        );
    }
    let bind = config.get("bind").unwrap_or_else(|| "127.0.0.1".into());
    let server = Arc::new(Server::with_shards(dbs, config, ids));
    // A bad ACL file refuses to start, as Redis does.
    if let Err(e) = server.acl.load_file() {
        anyhow::bail!("Aborting startup because of ACL errors: {e}");
    }
    pinnacle_server::pinn::init(&server);
    // Raft mode: reads queued in a MULTI with writes run when its entry is applied.
    pinnacle_server::commands::transactions::install_tx_reader(&server);
    let opts = net::NetOptions {
        blocking_commands: sync == SyncPolicy::Always,
    };

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_workers(cores))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    // Raft and the cluster bus get threads of their own (see pinnacle_raft::runtime).
    let raft_runtime = match cli.raft_threads {
        n if raft_mode && n > 0 => {
            Some(pinnacle_raft::runtime::build(n as usize).context("starting the Raft runtime")?)
        }
        _ => None,
    };
    let raft_handle = raft_runtime.as_ref().map(|r| r.handle().clone());
    runtime.block_on(async {
        if raft_mode {
            // Redis derives the bus port from the TLS port when the bus runs TLS.
            let tls_bus = server.config.get("tls-cluster").as_deref() == Some("yes");
            let bus_base = if tls_bus && tls_port != 0 {
                tls_port
            } else {
                port
            };
            // PUBLISH is relayed over TLS with the bus's certificate when the bus runs TLS.
            if let pinnacle_raft::transport::BusSecurity::Tls(t) = &bus_security {
                pinnacle_server::pubsub::relay::set_tls_client(t.client.clone());
            }
            let repl = start_replication(
                &cli,
                bus_base,
                &bind,
                &dir,
                &server,
                bus_security,
                raft_handle,
            )
            .await?;
            pinnacle_server::pinn::mover::set_mover(Arc::new(
                replication::mover::ClusterMover::new(
                    repl.clone(),
                    tokio::runtime::Handle::current(),
                ),
            ));
            // Each node records its TLS port in the metadata; with `tls-cluster yes` TLS
            // clients are redirected to TLS ports, as in Redis.
            repl.set_tls_port(tls_port);
            if tls_bus {
                let r = repl.clone();
                pinnacle_server::command::route::set_tls_resolver(Box::new(move |a| {
                    r.tls_client_addr(a)
                }));
            }
            let waiters = server.waiters.clone();
            repl.set_on_moved(Box::new(move |slots| waiters.notify_slots(slots)));
            // PUBLISH reaches the subscribers of every node, as in Redis Cluster.
            let peers = repl.clone();
            let me = Arc::downgrade(&server);
            server.pubsub.start_relay(
                Box::new(move || peers.peer_client_addrs()),
                Arc::new(move || me.upgrade().and_then(|s| s.config.requirepass())),
            );
            let _ = server.replication.set(repl);
        }
        let mut tasks = Vec::new();
        for addr in bind.split_whitespace() {
            // Redis's `*` means every IPv4 address; `-` prefixes mark optional addresses.
            let optional = addr.starts_with('-');
            let host = match addr.trim_start_matches('-') {
                "*" => "0.0.0.0",
                h => h,
            };
            // The plain port and the TLS port; 0 disables either, as in Redis.
            for (port, tls) in [(port, None), (tls_port, tls.clone())] {
                if port == 0 {
                    continue;
                }
                let kind = if tls.is_some() { "TLS " } else { "" };
                match tokio::net::TcpListener::bind((host, port)).await {
                    Ok(l) => {
                        tracing::info!("Ready to accept {kind}connections on {host}:{port}");
                        let task = match tls {
                            Some(acc) => tokio::spawn(net::serve_tls(l, server.clone(), opts, acc)),
                            None => tokio::spawn(net::serve(l, server.clone(), opts)),
                        };
                        tasks.push(task);
                    }
                    Err(e) if optional => {
                        tracing::warn!("could not bind optional {host}:{port}: {e}")
                    }
                    Err(e) => {
                        return Err(anyhow::anyhow!(e).context(format!("binding {host}:{port}")))
                    }
                }
            }
        }
        // Read-only HTTP pages on the first bind address: Prometheus metrics, PINN dashboard.
        let http_host = match bind.split_whitespace().next().unwrap_or("127.0.0.1") {
            "*" => "0.0.0.0",
            h => h.trim_start_matches('-'),
        };
        for (param, what) in [("metrics-port", "metrics"), ("dashboard-port", "dashboard")] {
            let p = server.config.get_i64(param).unwrap_or(0) as u16;
            if p == 0 {
                continue;
            }
            let addr = tokio::net::lookup_host((http_host, p))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .with_context(|| format!("resolving {http_host}:{p} for --{param}"))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr} for --{param}"))?;
            tracing::info!("{what} on http://{addr}/");
            let router = match what {
                "metrics" => pinnacle_server::metrics::router(server.clone()),
                _ => pinnacle_server::pinn::dashboard::router(server.clone()),
            };
            tokio::spawn(pinnacle_server::http::serve_on(listener, router));
        }
        tracing::info!(
            "pinnacle {} node {} data in {}, appendfsync {}",
            env!("CARGO_PKG_VERSION"),
            server.node_id,
            dir.display(),
            fsync
        );
        // INFO's instantaneous_* rates, sampled like Redis's serverCron (every 100 ms).
        let sampler = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tick.tick().await;
                sampler.stats.sample_rates();
            }
        });
        let signals = server.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::warn!("Received shutdown signal, scheduling shutdown...");
            signals.request_shutdown();
        });
        server.wait_shutdown().await;
        for t in tasks {
            let _ = t.await;
        }
        if let Some(r) = server.replication.get() {
            r.shutdown().await;
        }
        Ok(())
    })?;
    tracing::info!("flushing the storage engine before exit");
    for db in &server.dbs {
        db.engine().flush().context("flushing the storage engine")?;
    }
    tracing::info!("Pinnacle is now ready to exit, bye bye...");
    // Connection tasks may still hold the server; the process ends here regardless.
    std::process::exit(0);
}

/// Starts Raft mode: the cluster bus on the first bind address, the group over the keyspace.
async fn start_replication(
    cli: &Cli,
    port: u16,
    bind: &str,
    dir: &std::path::Path,
    server: &Server,
    security: pinnacle_raft::transport::BusSecurity,
    runtime: Option<tokio::runtime::Handle>,
) -> anyhow::Result<Arc<replication::Replication>> {
    let node_id = cli
        .node_id
        .context("--cluster-peers needs --node-id (this node's id in the list)")?;
    let host = match bind.split_whitespace().next().unwrap_or("127.0.0.1") {
        "*" => "0.0.0.0",
        h => h.trim_start_matches('-'),
    };
    let bus_port = match cli.cluster_port {
        Some(p) => p,
        None => port
            .checked_add(10000)
            .context("the client port is too high for a bus port (set --cluster-port)")?,
    };
    let ip: std::net::IpAddr = host
        .parse()
        .with_context(|| format!("the cluster bus needs an IP bind address, not {host}"))?;
    let peers = match &cli.cluster_peers {
        Some(p) => replication::parse_peers(p)?,
        // Joining: only this node is known until the leader's MEET.
        None => [(node_id, format!("{ip}:{port}@{bus_port}"))].into(),
    };
    let read_mode = match cli.raft_read.as_str() {
        "lease" => replication::ReadMode::Lease,
        "index" => replication::ReadMode::Index,
        other => anyhow::bail!("--raft-read must be index or lease, not {other}"),
    };
    let opts = replication::ReplOptions {
        node_id,
        peers,
        bus_listen: std::net::SocketAddr::new(ip, bus_port),
        dir: dir.join("raft"),
        read_mode,
        snapshot_after: cli.raft_snapshot_after,
        join: cli.cluster_join,
        shards: cli.shards as usize,
        security,
        runtime,
    };
    tracing::info!(
        "raft node {node_id}: cluster bus on {ip}:{bus_port}, reads by {:?}",
        read_mode
    );
    replication::Replication::start(opts, server.dbs.clone())
        .await
        .context("starting raft")
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
