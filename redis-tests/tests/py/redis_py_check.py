"""redis-py against a server: strings/keys round trips, pipelines, expiry.

Usage: python3 redis_py_check.py PORT PROTOCOL(2|3) [cluster]
Exits non-zero (with a traceback) on the first failed check; prints OK at the end.
"""
import sys
import time

import redis
from redis.cluster import RedisCluster


def check(r, proto, cluster):
    # In cluster mode HELLO has no key: ask the node client the cluster client built.
    node = r.get_default_node().redis_connection if cluster else r
    hello = node.execute_command("HELLO", proto)
    if isinstance(hello, list):  # RESP2: a flat array of pairs
        hello = dict(zip(hello[::2], hello[1::2]))
    assert hello[b"proto"] == proto, hello
    assert hello[b"server"] == b"redis", hello

    assert r.ping() is True
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.get("missing") is None
    assert r.set("greeting", "x", nx=True) is None
    assert r.set("fresh", "x", xx=True) is None
    assert r.set("greeting", "world", get=True) == b"hello"
    assert r.getdel("greeting") == b"world"
    assert r.exists("greeting") == 0

    # Binary, empty and large values.
    binary = bytes(range(256))
    assert r.set(b"\x00\xff key", binary)
    assert r.get(b"\x00\xff key") == binary
    assert r.set("empty", b"")
    assert r.get("empty") == b""
    big = bytes(i % 251 for i in range(500_000))
    assert r.set("big", big)
    assert r.get("big") == big
    assert r.strlen("big") == len(big)

    # Multi-key commands within one hash slot.
    assert r.mset({"{u}a": 1, "{u}b": 2}) is True
    assert r.mget(["{u}a", "{u}nope", "{u}b"]) == [b"1", None, b"2"]
    assert r.msetnx({"{u}a": 5, "{u}c": 6}) is False
    assert r.get("{u}c") is None

    # Counters.
    assert r.incr("n") == 1
    assert r.incrby("n", 41) == 42
    assert r.decrby("n", 50) == -8
    assert r.incrbyfloat("n", "0.5") == -7.5
    assert r.incrbyfloat("f", "3.0e3") == 3000.0
    assert r.get("f") == b"3000"
    r.set("max", 2**63 - 1)
    try:
        r.incr("max")
        raise AssertionError("INCR past i64::MAX succeeded")
    except redis.ResponseError as e:
        assert "increment or decrement would overflow" in str(e), e
    try:
        r.incr("big")
        raise AssertionError("INCR on a non-integer succeeded")
    except redis.ResponseError as e:
        assert "value is not an integer or out of range" in str(e), e

    # Strings.
    assert r.append("s", "Hello") == 5
    assert r.append("s", " World") == 11
    assert r.getrange("s", -5, -1) == b"World"
    assert r.setrange("s", 6, "Redis") == 11
    assert r.get("s") == b"Hello Redis"
    assert r.setrange("pad", 2, "x") == 3
    assert r.get("pad") == b"\x00\x00x"

    # Keys.
    assert r.type("s") == b"string"
    assert r.type("none") == b"none"
    r.set("{r}a", "v")
    assert r.rename("{r}a", "{r}b") is True
    assert r.get("{r}b") == b"v"
    r.set("{r}c", "w")
    assert r.renamenx("{r}b", "{r}c") is False
    assert r.exists("{u}a", "{u}b", "{u}zz") == 2
    assert r.delete("{u}a", "{u}b", "{u}zz") == 2

    # Expiry.
    assert r.set("ex", "v", ex=100) is True
    ttl = r.ttl("ex")
    assert 98 <= ttl <= 100, ttl
    assert r.ttl("missing") == -2
    assert r.ttl("s") == -1
    assert r.expire("s", 50, xx=True) is False
    assert r.expire("s", 50, nx=True) is True
    assert r.expire("s", 40, gt=True) is False
    assert r.expire("s", 40, lt=True) is True
    assert r.persist("s") is True
    assert r.ttl("s") == -1
    assert r.set("short", "v", px=100) is True
    time.sleep(0.3)
    assert r.get("short") is None
    assert r.exists("short") == 0

    # Pipelines (non-transactional).
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set(f"p:{i}", i)
    p.get("p:499")
    p.incr("s")  # an error in the middle
    p.get("p:0")
    out = p.execute(raise_on_error=False)
    assert out[:500] == [True] * 500, out[:5]
    assert out[500] == b"499"
    assert isinstance(out[501], redis.ResponseError), out[501]
    assert out[502] == b"0"

    # SCAN sees every key once.
    keys = set(r.scan_iter(match="p:*", count=100))
    assert len(keys) == 500, len(keys)


def main():
    port, proto = int(sys.argv[1]), int(sys.argv[2])
    cluster = len(sys.argv) > 3 and sys.argv[3] == "cluster"
    if cluster:
        r = RedisCluster(host="127.0.0.1", port=port, protocol=proto)
    else:
        r = redis.Redis(host="127.0.0.1", port=port, protocol=proto)
    r.flushall()
    check(r, proto, cluster)
    print("OK")


if __name__ == "__main__":
    main()
