//! Harness logic that needs no server process: link modes set by partitions.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::spawn::Spawner;
use super::{Cluster, Node};
use crate::proxy::{Mode, Proxy};

/// A cluster of `n` nodes that were never started, with proxies to a dead address.
fn unstarted(n: usize, proxies: bool) -> Cluster {
    let root = tempfile::tempdir().expect("tempdir");
    let nodes: Vec<Node> = (1..=n)
        .map(|i| Node {
            id: i,
            ip: Ipv4Addr::new(127, 0, 0, 10 + i as u8),
            port: 1,
            bus_port: 1,
            dir: root.path().join(format!("node{i}")),
            log: root.path().join(format!("node{i}.log")),
            child: None,
            paused: false,
            starts: 0,
            env: Vec::new(),
            join: false,
        })
        .collect();
    let dead: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let proxies = if proxies {
        (0..n).map(|_| Proxy::start(dead).expect("proxy")).collect()
    } else {
        Vec::new()
    };
    Cluster {
        nodes,
        proxies,
        peers: String::new(),
        args: Vec::new(),
        spawner: Spawner::new().expect("spawner"),
        root: Some(root),
        bin: crate::process::pinnacle_bin(),
    }
}

fn ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i))
}

/// The mode of connections from `from` into `to`.
fn link(c: &Cluster, from: u8, to: usize) -> Mode {
    c.proxy(to).expect("proxy").mode(ip(from))
}

#[test]
fn partition_cuts_both_directions_between_groups_only() {
    let c = unstarted(5, true);
    c.partition(&[1, 2], &[3, 4, 5]).expect("partition");
    for (a, b) in [(1u8, 3usize), (2, 5), (1, 4)] {
        assert_eq!(link(&c, a, b), Mode::Blackhole);
        assert_eq!(link(&c, b as u8, a as usize), Mode::Blackhole);
    }
    assert_eq!(link(&c, 1, 2), Mode::Pass);
    assert_eq!(link(&c, 2, 1), Mode::Pass);
    assert_eq!(link(&c, 3, 4), Mode::Pass);
    assert_eq!(link(&c, 5, 3), Mode::Pass);
    c.heal().expect("heal");
    assert_eq!(link(&c, 1, 3), Mode::Pass);
    assert_eq!(link(&c, 3, 1), Mode::Pass);
}

#[test]
fn isolate_cuts_one_node_from_all_others() {
    let c = unstarted(3, true);
    c.isolate(2).expect("isolate");
    for other in [1u8, 3] {
        assert_eq!(link(&c, other, 2), Mode::Blackhole);
        assert_eq!(link(&c, 2, other as usize), Mode::Blackhole);
    }
    assert_eq!(link(&c, 1, 3), Mode::Pass);
    assert_eq!(link(&c, 3, 1), Mode::Pass);
    c.set_link(1, 3, Mode::Drop).expect("link");
    assert_eq!(link(&c, 1, 3), Mode::Drop);
    assert_eq!(link(&c, 3, 1), Mode::Pass);
}

#[test]
fn faults_need_proxies_and_running_nodes() {
    let mut c = unstarted(3, false);
    assert!(c.partition(&[1], &[2, 3]).is_err());
    assert!(c.heal().is_err());
    assert!(c.sigstop(1).is_err());
    assert!(c.live().is_empty());
    assert_eq!(c.majority(), 2);
    assert_eq!(c.addr(3).to_string(), "127.0.0.13:1");
}

#[test]
fn spawner_children_survive_the_calling_thread() {
    let c = unstarted(1, false);
    let child = std::thread::scope(|s| {
        s.spawn(|| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("30");
            c.spawner.spawn(cmd).expect("spawn")
        })
        .join()
        .expect("thread")
    });
    // The spawning test thread is gone; PDEATHSIG must not have fired.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut child = child;
    assert!(child.try_wait().expect("try_wait").is_none());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn cluster_and_client_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Cluster>();
    send_sync::<Proxy>();
    send::<super::LeaderClient>();
}
