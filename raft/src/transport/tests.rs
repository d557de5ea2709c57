use super::*;

struct Echo;

impl GroupService for Echo {
    fn handle(&self, from: NodeId, req: RpcRequest) -> HandlerFuture {
        Box::pin(async move {
            match req {
                RpcRequest::SnapshotChunk { offset, .. } if offset == u64::MAX => {
                    // Never answers in time.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    RpcResponse::SnapshotAck
                }
                RpcRequest::SnapshotChunk { data, .. } => {
                    RpcResponse::Error(format!("from {from}: {}", String::from_utf8_lossy(&data)))
                }
                _ => RpcResponse::NoGroup,
            }
        })
    }
}

fn chunk(data: &str, offset: u64) -> RpcRequest {
    RpcRequest::SnapshotChunk {
        vote: crate::types::Vote::new(1, 1),
        transfer: 1,
        offset,
        data: data.as_bytes().to_vec(),
        last: false,
    }
}

const T: Duration = Duration::from_secs(2);

async fn node(id: NodeId) -> Transport {
    let t = Transport::bind(id, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    t.register(7, Arc::new(Echo));
    t
}

#[tokio::test]
async fn both_directions_share_one_connection_and_groups_are_routed() {
    let a = node(1).await;
    let b = node(2).await;
    let (aa, ba) = (a.local_addr().to_string(), b.local_addr().to_string());
    for i in 0..50 {
        match a
            .call(2, &ba, 7, chunk(&format!("x{i}"), 0), T)
            .await
            .unwrap()
        {
            RpcResponse::Error(s) => assert_eq!(s, format!("from 1: x{i}")),
            other => panic!("{other:?}"),
        }
    }
    match b.call(1, &aa, 7, chunk("back", 0), T).await.unwrap() {
        RpcResponse::Error(s) => assert_eq!(s, "from 2: back"),
        other => panic!("{other:?}"),
    }
    // An unknown group is answered, not dropped.
    assert!(matches!(
        a.call(2, &ba, 99, chunk("", 0), T).await.unwrap(),
        RpcResponse::NoGroup
    ));
    assert_eq!(
        a.dial_count() + b.dial_count(),
        1,
        "one connection for the pair"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_match_their_responses() {
    let a = node(1).await;
    let b = node(2).await;
    let ba = b.local_addr().to_string();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let a = a.clone();
        let ba = ba.clone();
        tasks.push(tokio::spawn(async move {
            match a
                .call(2, &ba, 7, chunk(&i.to_string(), 0), T)
                .await
                .unwrap()
            {
                RpcResponse::Error(s) => assert_eq!(s, format!("from 1: {i}")),
                other => panic!("{other:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn wrong_node_at_address_is_refused() {
    let a = node(1).await;
    let b = node(2).await;
    let err = a
        .call(3, &b.local_addr().to_string(), 7, chunk("", 0), T)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected node 3"), "{err}");
}

#[tokio::test]
async fn timeout_then_peer_down_then_reconnect() {
    let a = node(1).await;
    let b = node(2).await;
    let addr = b.local_addr();
    let err = a
        .call(
            2,
            &addr.to_string(),
            7,
            chunk("", u64::MAX),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout(2, _)), "{err}");

    b.shutdown().await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = a
        .call(2, &addr.to_string(), 7, chunk("", 0), T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Unreachable(2, _) | CallError::Closed(2)),
        "{err}"
    );

    // Same node id comes back on the same port: calls succeed again after the backoff.
    let b2 = Transport::bind(2, addr).await.unwrap();
    b2.register(7, Arc::new(Echo));
    let start = Instant::now();
    loop {
        match a.call(2, &addr.to_string(), 7, chunk("again", 0), T).await {
            Ok(RpcResponse::Error(s)) => {
                assert_eq!(s, "from 1: again");
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "never reconnected: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn simultaneous_dials_settle_on_one_connection_without_breaking_calls() {
    for _ in 0..5 {
        let a = node(1).await;
        let b = node(2).await;
        let (aa, ba) = (a.local_addr().to_string(), b.local_addr().to_string());
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (a, b, aa, ba) = (a.clone(), b.clone(), aa.clone(), ba.clone());
            tasks.push(tokio::spawn(async move {
                let (x, y) = tokio::join!(
                    a.call(2, &ba, 7, chunk(&format!("a{i}"), 0), T),
                    b.call(1, &aa, 7, chunk(&format!("b{i}"), 0), T)
                );
                assert!(
                    matches!(x.unwrap(), RpcResponse::Error(s) if s == format!("from 1: a{i}"))
                );
                assert!(
                    matches!(y.unwrap(), RpcResponse::Error(s) if s == format!("from 2: b{i}"))
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let settled = a.dial_count() + b.dial_count();
        assert!(settled <= 2, "{settled} dials");
        // Both ends picked the same connection: no further dials, calls keep working.
        for i in 0..20 {
            a.call(2, &ba, 7, chunk(&i.to_string(), 0), T)
                .await
                .unwrap();
            b.call(1, &aa, 7, chunk(&i.to_string(), 0), T)
                .await
                .unwrap();
        }
        assert_eq!(a.dial_count() + b.dial_count(), settled);
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test]
async fn outgoing_connections_use_the_node_address_as_source() {
    // A plain listener on 127.0.0.3 sees where the dial comes from.
    let l = TcpListener::bind("127.0.0.3:0").await.unwrap();
    let target = l.local_addr().unwrap().to_string();
    let a = Transport::bind(1, "127.0.0.2:0".parse().unwrap())
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        a.call(9, &target, 7, chunk("", 0), Duration::from_millis(300))
            .await
    });
    let (_s, from) = l.accept().await.unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    // No hello answer: the call gives up in time.
    assert!(call.await.unwrap().is_err());
}

#[tokio::test]
async fn redis_form_address_dials_the_bus_port() {
    let a = node(1).await;
    let b = node(2).await;
    // Client port 1 is bogus on purpose: only the part after `@` may be dialed.
    let ba = format!("127.0.0.1:1@{}", b.local_addr().port());
    match a.call(2, &ba, 7, chunk("hi", 0), T).await.unwrap() {
        RpcResponse::Error(s) => assert_eq!(s, "from 1: hi"),
        other => panic!("{other:?}"),
    }
    a.shutdown().await;
    b.shutdown().await;
}
