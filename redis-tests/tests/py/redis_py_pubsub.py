"""redis-py pub/sub against a server: channels, patterns, shard channels, PUBSUB introspection,
a listener thread, over RESP2 or RESP3.

Usage: python3 redis_py_pubsub.py PORT PROTOCOL(2|3)
Exits non-zero (with a traceback) on the first failed check; prints OK at the end.
"""
import sys
import threading
import time

import redis


def get(p, timeout=5.0):
    """The next message (not a confirmation) within `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = p.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m is not None:
            return m
    raise AssertionError("no message within %.1fs" % timeout)


def confirmations(p, n):
    out = []
    deadline = time.time() + 5
    while len(out) < n and time.time() < deadline:
        m = p.get_message(timeout=0.1)
        if m is not None:
            out.append((m["type"], m["channel"], m["data"]))
    assert len(out) == n, out
    return out


def main():
    port, proto = int(sys.argv[1]), int(sys.argv[2])
    r = redis.Redis(port=port, protocol=proto)
    p = r.pubsub()

    p.subscribe("news", "sport")
    assert confirmations(p, 2) == [
        ("subscribe", b"news", 1),
        ("subscribe", b"sport", 2),
    ]
    p.psubscribe("n*")
    assert confirmations(p, 1) == [("psubscribe", b"n*", 3)]

    assert r.publish("news", "hello") == 2
    m = get(p)
    assert (m["type"], m["channel"], m["data"]) == ("message", b"news", b"hello"), m
    m = get(p)
    assert (m["type"], m["pattern"], m["channel"], m["data"]) == (
        "pmessage",
        b"n*",
        b"news",
        b"hello",
    ), m
    assert r.publish("nothing-here", "x") == 1  # the pattern n* matches
    assert get(p)["channel"] == b"nothing-here"

    assert r.pubsub_numsub("news", "other") == [(b"news", 1), (b"other", 0)]
    assert r.pubsub_numpat() == 1
    assert sorted(r.pubsub_channels()) == [b"news", b"sport"]
    assert r.pubsub_channels("s*") == [b"sport"]

    # Binary payloads survive.
    payload = bytes(range(256))
    r.publish("sport", payload)
    assert get(p)["data"] == payload

    p.unsubscribe("sport")
    assert confirmations(p, 1) == [("unsubscribe", b"sport", 2)]
    assert r.publish("sport", "gone") == 0

    # Shard channels.
    s = r.pubsub()
    s.ssubscribe("{room}a", "{room}b")
    assert confirmations(s, 2) == [
        ("ssubscribe", b"{room}a", 1),
        ("ssubscribe", b"{room}b", 2),
    ]
    assert r.spublish("{room}a", "shard") == 1
    m = s.get_sharded_message(timeout=5.0)
    while m is not None and m["type"] != "smessage":
        m = s.get_sharded_message(timeout=5.0)
    assert m is not None and (m["channel"], m["data"]) == (b"{room}a", b"shard"), m
    assert r.pubsub_shardnumsub("{room}a") == [(b"{room}a", 1)]
    assert sorted(r.pubsub_shardchannels()) == [b"{room}a", b"{room}b"]
    s.close()

    # A listener thread with a handler, as applications use it.
    got = []
    done = threading.Event()

    def handler(msg):
        got.append(msg["data"])
        if len(got) == 100:
            done.set()

    t = r.pubsub()
    t.subscribe(**{"events": handler})
    worker = t.run_in_thread(sleep_time=0.01, daemon=True)
    deadline = time.time() + 5
    while r.pubsub_numsub("events")[0][1] != 1 and time.time() < deadline:
        time.sleep(0.01)
    for i in range(100):
        r.publish("events", str(i))
    assert done.wait(10), len(got)
    assert got == [str(i).encode() for i in range(100)]
    worker.stop()
    worker.join(5)
    t.close()

    p.close()
    deadline = time.time() + 5
    while r.pubsub_numpat() != 0 and time.time() < deadline:
        time.sleep(0.01)
    assert r.pubsub_numpat() == 0
    assert r.pubsub_numsub("news") == [(b"news", 0)]
    print("OK")


if __name__ == "__main__":
    main()
