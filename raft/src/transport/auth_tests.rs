//! The shared-secret handshake over real localhost TCP: the handshake functions on their own,
//! and transports that must refuse peers without the secret before decoding any frame.

use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::auth::{accept_handshake, dial_handshake, AuthError, Secret};
use super::*;

const T: Duration = Duration::from_secs(2);

/// Counts the requests that reached the group (none may arrive from an unauthenticated peer).
struct Counting(Arc<AtomicUsize>);

impl GroupService for Counting {
    fn handle(&self, from: NodeId, _req: RpcRequest) -> HandlerFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { RpcResponse::Error(format!("hi {from}")) })
    }
}

fn end() -> RpcRequest {
    RpcRequest::StreamEnd { stream: 1 }
}

async fn secured(id: NodeId, secret: &[u8]) -> (Transport, Arc<AtomicUsize>) {
    let sec = BusSecurity::Secret(Secret::new(secret).unwrap());
    let t = Transport::bind_secure(id, "127.0.0.1:0".parse().unwrap(), sec)
        .await
        .unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    t.register(7, Arc::new(Counting(hits.clone())));
    (t, hits)
}

/// A connected localhost TCP pair (dialer, acceptor).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (d, a) = tokio::join!(TcpStream::connect(addr), l.accept());
    (d.unwrap(), a.unwrap().0)
}

#[tokio::test]
async fn handshake_with_the_same_secret_succeeds_both_ways() {
    let (mut d, mut a) = tcp_pair().await;
    let s = Secret::new(b"cluster secret").unwrap();
    let (rd, ra) = tokio::join!(dial_handshake(&mut d, &s), accept_handshake(&mut a, &s));
    rd.unwrap();
    ra.unwrap();
    // The streams are still usable and aligned after the handshake (nothing over-read).
    d.write_all(b"after").await.unwrap();
    let mut buf = [0u8; 5];
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after");
}

#[tokio::test]
async fn handshake_with_a_wrong_secret_fails_on_both_sides() {
    let (mut d, mut a) = tcp_pair().await;
    let good = Secret::new(b"cluster secret").unwrap();
    let bad = Secret::new(b"cluster secreT").unwrap();
    // The acceptor answers first, so the dialer detects the wrong MAC and hangs up; the
    // acceptor then sees the connection end instead of a proof.
    let (rd, ra) = tokio::join!(
        async move {
            let r = dial_handshake(&mut d, &bad).await;
            drop(d);
            r
        },
        accept_handshake(&mut a, &good)
    );
    assert!(matches!(rd, Err(AuthError::BadMac)), "{rd:?}");
    assert!(ra.is_err());

    // A dialer that skips checking and sends a forged proof is refused by the acceptor.
    let (mut d, mut a) = tcp_pair().await;
    let acc = tokio::spawn(async move { accept_handshake(&mut a, &good).await });
    let mut hello = Vec::from(auth::MAGIC);
    hello.push(auth::AUTH_VERSION);
    hello.extend_from_slice(&[7u8; 32]);
    d.write_all(&hello).await.unwrap();
    let mut challenge = [0u8; 69];
    d.read_exact(&mut challenge).await.unwrap();
    d.write_all(&[0u8; 32]).await.unwrap();
    assert!(matches!(acc.await.unwrap(), Err(AuthError::BadMac)));
}

#[tokio::test]
async fn truncated_or_foreign_handshakes_are_refused() {
    let s = Secret::new(b"k").unwrap();
    // Truncated hello, then EOF.
    let (mut d, mut a) = tcp_pair().await;
    d.write_all(&auth::MAGIC).await.unwrap();
    d.write_all(&[auth::AUTH_VERSION, 1, 2, 3]).await.unwrap();
    drop(d);
    assert!(matches!(
        accept_handshake(&mut a, &s).await,
        Err(AuthError::Io(_))
    ));
    // A plaintext bus frame instead of a handshake.
    let (mut d, mut a) = tcp_pair().await;
    let frame = Frame::Hello { from: 1, to: 2 }.encode().unwrap();
    let mut junk = frame.clone();
    junk.resize(64, 0);
    d.write_all(&junk).await.unwrap();
    assert!(matches!(
        accept_handshake(&mut a, &s).await,
        Err(AuthError::Protocol)
    ));
    // Truncated challenge seen by a dialer.
    let (mut d, mut a) = tcp_pair().await;
    let dial = tokio::spawn(async move { dial_handshake(&mut d, &s).await });
    let mut hello = [0u8; 37];
    a.read_exact(&mut hello).await.unwrap();
    a.write_all(b"PN").await.unwrap();
    drop(a);
    assert!(matches!(dial.await.unwrap(), Err(AuthError::Io(_))));
    assert!(Secret::new(b"").is_err());
}

#[tokio::test]
async fn transports_with_the_secret_talk() {
    let (a, _) = secured(1, b"s3cret").await;
    let (b, hits) = secured(2, b"s3cret").await;
    let ba = b.local_addr().to_string();
    match a.call(2, &ba, 7, end(), T).await.unwrap() {
        RpcResponse::Error(s) => assert_eq!(s, "hi 1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(b.refused_count(), 0);
}

#[tokio::test]
async fn wrong_secret_or_no_secret_never_reaches_a_group() {
    let (member, hits) = secured(2, b"right").await;
    let addr = member.local_addr().to_string();
    // A transport with the wrong secret: its dial fails.
    let (rogue, _) = secured(1, b"wrong").await;
    let r = rogue.call(2, &addr, 7, end(), T).await;
    assert!(matches!(r, Err(CallError::Unreachable(..))), "{r:?}");
    // An open transport (no handshake at all): the member reads 37 bytes of its frames as a
    // handshake, refuses, and closes.
    let open = Transport::bind(3, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let r = open.call(2, &addr, 7, end(), T).await;
    assert!(r.is_err(), "{r:?}");
    // A raw peer that sends a valid hello and a request frame right away.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    let mut bytes = Frame::Hello { from: 9, to: 2 }.encode().unwrap();
    bytes.extend(
        Frame::Request {
            id: 1,
            group: 7,
            sent_ms: 0,
            body: end(),
        }
        .encode()
        .unwrap(),
    );
    bytes.extend(std::iter::repeat_n(0u8, 128));
    let _ = raw.write_all(&bytes).await;
    let mut sink = Vec::new();
    // The member closes the connection; whatever it sent is its challenge, never a HelloAck.
    let _ = tokio::time::timeout(T, raw.read_to_end(&mut sink)).await;
    assert!(sink.len() <= 69, "{} bytes", sink.len());
    assert!(sink.is_empty() || sink.starts_with(&auth::MAGIC));
    // A peer that connects and says nothing is dropped after the hello timeout.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(HELLO_TIMEOUT + T, silent.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");

    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "an unauthenticated request ran"
    );
    assert!(member.refused_count() >= 4, "{}", member.refused_count());
    // The member still serves peers that know the secret.
    let (friend, _) = secured(4, b"right").await;
    assert!(friend.call(2, &addr, 7, end(), T).await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// `identify` learns a node's id over an authenticated connection (no session is opened on
/// either side), and learns nothing from a node with another secret.
#[tokio::test]
async fn identify_needs_the_secret_and_opens_no_session() {
    let (a, _) = secured(1, b"cluster secret").await;
    let (b, hits) = secured(42, b"cluster secret").await;
    let (outsider, _) = secured(3, b"another secret").await;
    let at = b.local_addr().to_string();
    assert_eq!(a.identify(&at).await.unwrap(), 42);
    // The Redis form `ip:port@cport` is dialed at its bus port.
    let redis_form = format!("127.0.0.1:6379@{}", b.local_addr().port());
    assert_eq!(a.identify(&redis_form).await.unwrap(), 42);
    assert!(outsider.identify(&at).await.is_err());
    // The acceptor counts the refusal on its own task.
    let start = Instant::now();
    while b.refused_count() == 0 && start.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.refused_count(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert!(b.live(1).is_none(), "identify left a session behind");
}

/// An [`APP_GROUP`] service answers application requests from authenticated peers.
#[tokio::test]
async fn app_requests_reach_the_app_service() {
    struct Echo;
    impl GroupService for Echo {
        fn handle(&self, from: NodeId, req: RpcRequest) -> HandlerFuture {
            Box::pin(async move {
                match req {
                    RpcRequest::App(b) => RpcResponse::App(Ok([b, vec![from as u8]].concat())),
                    other => RpcResponse::Error(format!("unexpected {other:?}")),
                }
            })
        }
    }
    let (a, _) = secured(1, b"cluster secret").await;
    let (b, _) = secured(2, b"cluster secret").await;
    b.register(APP_GROUP, Arc::new(Echo));
    let at = b.local_addr().to_string();
    match a.call(2, &at, APP_GROUP, RpcRequest::App(vec![7]), T).await {
        Ok(RpcResponse::App(Ok(v))) => assert_eq!(v, vec![7, 1]),
        other => panic!("{other:?}"),
    }
}
