use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{connect_from, Mode, Proxy};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// An echo server on a free port; runs until the test process ends.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn connect(p: &Proxy, src: IpAddr) -> TcpStream {
    let s = connect_from(src, p.addr(), Duration::from_secs(2)).expect("connect via proxy");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

/// What one round trip gives: Some(bytes) echoed, or None when nothing came back in time.
#[derive(Debug, PartialEq)]
enum Echo {
    Got(Vec<u8>),
    Nothing,
    Closed,
}

fn echo(s: &mut TcpStream, msg: &[u8]) -> Echo {
    if s.write_all(msg).is_err() {
        return Echo::Closed;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < msg.len() {
        match s.read(&mut buf) {
            Ok(0) => return Echo::Closed,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Echo::Nothing
            }
            Err(_) => return Echo::Closed,
        }
    }
    Echo::Got(got)
}

/// Reads until EOF/reset or timeout; true when the connection was closed.
fn closed_within(s: &mut TcpStream, t: Duration) -> bool {
    let deadline = Instant::now() + t;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn pass_forwards_both_ways() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut s = connect(&p, LOCAL);
    assert_eq!(echo(&mut s, b"hello"), Echo::Got(b"hello".to_vec()));
    let big = vec![7u8; 200_000];
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(echo(&mut s, &big), Echo::Got(big.clone()));
    // The pump counts a chunk after writing it, so the echo can arrive before its count.
    crate::tools::wait_until("both directions counted", Duration::from_secs(5), || {
        let n = p.forwarded_bytes();
        (n >= 2 * 200_005, n)
    });
    assert_eq!(p.accepted(), 1);
}

#[test]
fn blackhole_stalls_existing_connections_and_heal_resets_them() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut s = connect(&p, LOCAL);
    assert_eq!(echo(&mut s, b"a"), Echo::Got(b"a".to_vec()));
    p.set_mode(LOCAL, Mode::Blackhole);
    assert_eq!(echo(&mut s, b"lost"), Echo::Nothing);
    // New connections are accepted but stall as well.
    let mut s2 = connect(&p, LOCAL);
    assert_eq!(echo(&mut s2, b"x"), Echo::Nothing);
    assert!(p.discarded_bytes() >= 5);
    p.heal();
    // The stream lost bytes: it is reset rather than resumed with a hole.
    assert!(closed_within(&mut s, Duration::from_secs(2)));
    let mut s3 = connect(&p, LOCAL);
    assert_eq!(echo(&mut s3, b"back"), Echo::Got(b"back".to_vec()));
}

#[test]
fn modes_are_per_source_ip() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut a = connect(&p, LOCAL);
    let mut b = connect(&p, OTHER);
    p.set_mode(OTHER, Mode::Blackhole);
    assert_eq!(echo(&mut a, b"a"), Echo::Got(b"a".to_vec()));
    assert_eq!(echo(&mut b, b"b"), Echo::Nothing);
    assert_eq!(p.mode(LOCAL), Mode::Pass);
    p.set_default(Mode::Drop);
    assert_eq!(p.mode(LOCAL), Mode::Drop);
    assert_eq!(p.mode(OTHER), Mode::Blackhole);
}

#[test]
fn drop_closes_existing_and_refuses_new() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut s = connect(&p, LOCAL);
    assert_eq!(echo(&mut s, b"a"), Echo::Got(b"a".to_vec()));
    p.set_mode(LOCAL, Mode::Drop);
    assert!(closed_within(&mut s, Duration::from_secs(2)));
    // The reset may already hit the connect (setting socket options on a reset socket fails).
    if let Ok(mut s2) = connect_from(LOCAL, p.addr(), Duration::from_secs(2)) {
        s2.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        assert_ne!(echo(&mut s2, b"x"), Echo::Got(b"x".to_vec()));
        assert!(closed_within(&mut s2, Duration::from_secs(2)));
    }
    assert_eq!(p.open_connections(), 0);
    p.set_mode(LOCAL, Mode::Pass);
    let mut s3 = connect(&p, LOCAL);
    assert_eq!(echo(&mut s3, b"ok"), Echo::Got(b"ok".to_vec()));
}

#[test]
fn delay_applies_to_existing_connections() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut s = connect(&p, LOCAL);
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let t = Instant::now();
    assert_eq!(echo(&mut s, b"fast"), Echo::Got(b"fast".to_vec()));
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    p.set_mode(LOCAL, Mode::Delay(Duration::from_millis(200)));
    let t = Instant::now();
    assert_eq!(echo(&mut s, b"slow"), Echo::Got(b"slow".to_vec()));
    // Delayed on the way there and on the way back.
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn delay_keeps_order_and_throughput() {
    let p = Proxy::start(echo_server()).expect("proxy");
    p.set_mode(LOCAL, Mode::Delay(Duration::from_millis(100)));
    let mut s = connect(&p, LOCAL);
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let t = Instant::now();
    let mut w = s.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        for i in 0..20u8 {
            w.write_all(&[i]).expect("write");
            thread::sleep(Duration::from_millis(10));
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 20 {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    writer.join().expect("writer");
    assert_eq!(got, (0..20u8).collect::<Vec<_>>());
    // Chunks are delayed in a pipeline, not one after another (20 x 200 ms would be 4 s).
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn loss_closes_connections() {
    let p = Proxy::start(echo_server()).expect("proxy");
    p.set_seed(42);
    p.set_mode(LOCAL, Mode::Loss(1.0));
    let mut s = connect(&p, LOCAL);
    assert_ne!(echo(&mut s, b"x"), Echo::Got(b"x".to_vec()));
    assert!(closed_within(&mut s, Duration::from_secs(2)));
    // With p = 0.05 per chunk some of 20 connections die and some survive 10 round trips.
    p.set_mode(LOCAL, Mode::Loss(0.05));
    let (mut alive, mut dead) = (0, 0);
    for _ in 0..20 {
        let mut s = connect(&p, LOCAL);
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let ok = (0..10).all(|_| echo(&mut s, b"y") == Echo::Got(b"y".to_vec()));
        if ok {
            alive += 1;
        } else {
            dead += 1;
        }
    }
    assert!(alive > 0 && dead > 0, "alive {alive} dead {dead}");
}

#[test]
fn drop_of_the_proxy_closes_connections() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut s = connect(&p, LOCAL);
    assert_eq!(echo(&mut s, b"a"), Echo::Got(b"a".to_vec()));
    let addr = p.addr();
    drop(p);
    assert!(closed_within(&mut s, Duration::from_secs(2)));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}
