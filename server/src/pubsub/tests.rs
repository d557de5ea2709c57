//! Pub/sub through the real command pipeline: the bytes a connection would write, pushes
//! included, for several clients of one server.

use crate::command::testutil::TestNode;
use crate::command::{call, Client, Ctx};
use bytes::{Bytes, BytesMut};
use pinnacle_resp::Protocol;

/// Runs `args` as `client` and returns what the connection writes: queued pushes, then the
/// reply (as the connection loop does).
fn run(n: &TestNode, client: &mut Client, args: &[&str]) -> String {
    let argv: Vec<Bytes> = args
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    let mut ctx = Ctx {
        server: &n.server,
        client,
    };
    let reply = call(&mut ctx, &argv);
    let mut out = BytesMut::new();
    super::flush_own(client, &mut out);
    if client.take_reply_allowed() {
        reply.encode(client.protocol, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What has been published to `client` since its last command.
fn pending(client: &Client) -> String {
    let mut out = BytesMut::new();
    super::flush_own(client, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn sub_frame(word: &str, name: &str, n: i64) -> String {
    format!(
        "*3\r\n${}\r\n{word}\r\n${}\r\n{name}\r\n:{n}\r\n",
        word.len(),
        name.len()
    )
}

#[test]
fn subscribe_confirms_each_channel_with_counts() {
    let n = TestNode::new();
    let mut a = n.other_client();
    assert_eq!(
        run(&n, &mut a, &["SUBSCRIBE", "a", "b", "a"]),
        sub_frame("subscribe", "a", 1)
            + &sub_frame("subscribe", "b", 2)
            + &sub_frame("subscribe", "a", 2)
    );
    assert_eq!(
        run(&n, &mut a, &["PSUBSCRIBE", "a*"]),
        sub_frame("psubscribe", "a*", 3)
    );
    // Shard channels count on their own.
    assert_eq!(
        run(&n, &mut a, &["SSUBSCRIBE", "x"]),
        sub_frame("ssubscribe", "x", 1)
    );
    assert_eq!(
        run(&n, &mut a, &["UNSUBSCRIBE", "b", "zz"]),
        sub_frame("unsubscribe", "b", 2) + &sub_frame("unsubscribe", "zz", 2)
    );
    assert_eq!(
        run(&n, &mut a, &["PUNSUBSCRIBE"]),
        sub_frame("punsubscribe", "a*", 1)
    );
    assert_eq!(
        run(&n, &mut a, &["PUNSUBSCRIBE"]),
        "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:1\r\n"
    );
    assert_eq!(
        run(&n, &mut a, &["SUNSUBSCRIBE"]),
        sub_frame("sunsubscribe", "x", 0)
    );
}

#[test]
fn publish_reaches_channel_and_pattern_subscribers() {
    let n = TestNode::new();
    let mut s = n.other_client();
    let mut p = n.other_client();
    run(&n, &mut s, &["SUBSCRIBE", "news"]);
    run(&n, &mut s, &["PSUBSCRIBE", "n*", "x*"]);
    assert_eq!(run(&n, &mut p, &["PUBLISH", "news", "hi"]), ":2\r\n");
    assert_eq!(
        pending(&s),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(run(&n, &mut p, &["PUBLISH", "other", "hi"]), ":0\r\n");
    assert_eq!(pending(&s), "");
    // Shard channels are a separate namespace.
    assert_eq!(run(&n, &mut p, &["SPUBLISH", "news", "hi"]), ":0\r\n");
    run(&n, &mut s, &["SSUBSCRIBE", "news"]);
    assert_eq!(run(&n, &mut p, &["SPUBLISH", "news", "yo"]), ":1\r\n");
    assert_eq!(
        pending(&s),
        "*3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$2\r\nyo\r\n"
    );
    assert_eq!(run(&n, &mut p, &["PUBSUB", "NUMPAT"]), ":2\r\n");
    assert_eq!(n.server.pubsub.channel_count(), 1);
    assert_eq!(n.server.pubsub.shard_channel_count(), 1);
    assert_eq!(
        run(&n, &mut p, &["PUBSUB", "NUMSUB", "news", "none"]),
        "*4\r\n$4\r\nnews\r\n:1\r\n$4\r\nnone\r\n:0\r\n"
    );
    assert_eq!(
        run(&n, &mut p, &["PUBSUB", "CHANNELS", "n*"]),
        "*1\r\n$4\r\nnews\r\n"
    );
    assert_eq!(run(&n, &mut p, &["PUBSUB", "CHANNELS", "z*"]), "*0\r\n");
    assert_eq!(
        run(&n, &mut p, &["PUBSUB", "SHARDNUMSUB", "news"]),
        "*2\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        run(&n, &mut p, &["PUBSUB", "CHANNELS", "a", "b"]),
        "-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.\r\n"
    );
    // Disconnecting removes every subscription.
    n.server.unregister_client(&s);
    assert_eq!(run(&n, &mut p, &["PUBLISH", "news", "hi"]), ":0\r\n");
    assert_eq!(run(&n, &mut p, &["PUBSUB", "NUMPAT"]), ":0\r\n");
    assert_eq!(run(&n, &mut p, &["PUBSUB", "SHARDCHANNELS"]), "*0\r\n");
}

#[test]
fn resp2_subscribed_mode_allows_only_pubsub_commands() {
    let n = TestNode::new();
    let mut c = n.other_client();
    run(&n, &mut c, &["SUBSCRIBE", "a"]);
    assert_eq!(run(&n, &mut c, &["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(
        run(&n, &mut c, &["PING", "x"]),
        "*2\r\n$4\r\npong\r\n$1\r\nx\r\n"
    );
    assert_eq!(
        run(&n, &mut c, &["GET", "a"]),
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(
        run(&n, &mut c, &["CLIENT", "LIST"]),
        "-ERR Can't execute 'client|list': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    // Arity is checked first, as in Redis.
    assert_eq!(
        run(&n, &mut c, &["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    let line = c.handle.info_line();
    c.publish(0, 0);
    let line2 = c.handle.info_line();
    assert!(!line.contains("flags=P"));
    assert!(line2.contains("flags=P "), "{line2}");
    assert!(line2.contains(" sub=1 psub=0 ssub=0 "), "{line2}");
    // Leaving the last channel leaves subscribed mode.
    run(&n, &mut c, &["UNSUBSCRIBE"]);
    assert_eq!(run(&n, &mut c, &["PING"]), "+PONG\r\n");
    assert_eq!(run(&n, &mut c, &["GET", "a"]), "$-1\r\n");
}

#[test]
fn reset_leaves_every_subscription_silently() {
    let n = TestNode::new();
    let mut c = n.other_client();
    let mut p = n.other_client();
    run(&n, &mut c, &["SUBSCRIBE", "a"]);
    run(&n, &mut c, &["PSUBSCRIBE", "*"]);
    run(&n, &mut c, &["SSUBSCRIBE", "s"]);
    assert_eq!(run(&n, &mut c, &["RESET"]), "+RESET\r\n");
    assert_eq!(run(&n, &mut c, &["PING"]), "+PONG\r\n");
    assert_eq!(run(&n, &mut p, &["PUBLISH", "a", "x"]), ":0\r\n");
    assert_eq!(run(&n, &mut p, &["SPUBLISH", "s", "x"]), ":0\r\n");
    assert_eq!(pending(&c), "");
}

#[test]
fn resp3_pushes_and_any_command() {
    let n = TestNode::new();
    let mut c = n.other_client();
    c.protocol = Protocol::Resp3;
    assert_eq!(
        run(&n, &mut c, &["SUBSCRIBE", "a"]),
        ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
    );
    assert_eq!(run(&n, &mut c, &["PING"]), "+PONG\r\n");
    // Its own message arrives before the PUBLISH reply.
    assert_eq!(
        run(&n, &mut c, &["PUBLISH", "a", "self"]),
        ">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$4\r\nself\r\n:1\r\n"
    );
    assert_eq!(run(&n, &mut c, &["GET", "a"]), "_\r\n");
    assert_eq!(
        run(&n, &mut c, &["UNSUBSCRIBE"]),
        ">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"
    );
    assert_eq!(
        run(&n, &mut c, &["UNSUBSCRIBE"]),
        ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
    );
}

#[test]
fn sharded_channels_must_share_a_slot() {
    let n = TestNode::new();
    let mut c = n.other_client();
    assert_eq!(
        run(&n, &mut c, &["SSUBSCRIBE", "a", "b"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        run(&n, &mut c, &["SSUBSCRIBE", "{t}a", "{t}b"]),
        sub_frame("ssubscribe", "{t}a", 1) + &sub_frame("ssubscribe", "{t}b", 2)
    );
}

#[test]
fn slow_subscriber_is_killed_at_the_hard_limit() {
    let n = TestNode::with_config(&[("client-output-buffer-limit", "pubsub 1kb 0 0")]);
    let mut s = n.other_client();
    let mut p = n.other_client();
    run(&n, &mut s, &["SUBSCRIBE", "c"]);
    let payload = "x".repeat(100);
    // Each frame is 132 bytes: seven fit under 1 KiB, the eighth crosses it.
    for _ in 0..7 {
        run(&n, &mut p, &["PUBLISH", "c", &payload]);
    }
    assert!(!s.handle.is_killed());
    run(&n, &mut p, &["PUBLISH", "c", &payload]);
    assert!(s.handle.is_killed());
    // Its queue was dropped: memory is released at once.
    assert_eq!(pending(&s), "");
}
