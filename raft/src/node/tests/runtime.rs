//! Nodes on Raft runtimes of their own keep their leader while the runtime that started them
//! is stalled, as client work saturating the server's workers would stall it.

use super::*;

/// How long the caller's runtime is stalled: about seven election timeouts (225-300 ms).
const STALL: Duration = Duration::from_millis(2000);

async fn stall_the_caller(dedicated: bool) -> (u64, u64, bool) {
    let rts: Vec<_> = (0..3)
        .map(|_| crate::runtime::build(1).expect("raft runtime"))
        .collect();
    let handles: Vec<_> = rts.iter().map(|r| r.handle().clone()).collect();
    let c = Cluster::start(3, |o| {
        if dedicated {
            o.runtime = Some(handles[(o.id - 1) as usize].clone());
        }
    })
    .await;
    let leader = c.confirmed_leader(Duration::from_secs(10)).await;
    c.group(leader).propose(b"before".to_vec()).await.unwrap();
    let term = c.group(leader).metrics().current_term;
    // The test's only thread blocks: nothing on the caller's runtime runs meanwhile.
    std::thread::sleep(STALL);
    let res = c.group(leader).propose(b"after".to_vec()).await;
    if let Err(e) = &res {
        println!("write after the stall: {e}");
    }
    let wrote = res.is_ok();
    let after = c
        .live
        .values()
        .map(|m| m.group.metrics().current_term)
        .max()
        .unwrap_or(0);
    c.shutdown().await;
    for rt in rts {
        rt.shutdown_background();
    }
    (term, after, wrote)
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_caller_runtime_does_not_depose_the_leader() {
    let (before, after, wrote) = stall_the_caller(true).await;
    assert_eq!(
        before, after,
        "an election happened while only the caller's runtime was stalled"
    );
    assert!(wrote, "the leader no longer accepted writes");
}

/// The same stall with every node on the caller's runtime, to compare by hand with
/// `cargo test -p pinnacle-raft stalled -- --ignored --nocapture`: every timer fires late at
/// once and the leader steps down for want of a quorum heard within its lease ("not the
/// leader (leader: None at None)" in 3 of 3 runs), so the write after the stall fails.
#[tokio::test(flavor = "current_thread")]
#[ignore]
async fn a_stalled_shared_runtime_for_comparison() {
    let (before, after, wrote) = stall_the_caller(false).await;
    println!("shared runtime: term {before} -> {after}, write after the stall: {wrote}");
}
