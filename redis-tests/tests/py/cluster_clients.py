"""redis-py RedisCluster against a multi-shard cluster (Pinnacle --shards 3, or a real Redis Cluster).

Driven by redis-tests/tests/cluster_clients.rs.

Usage:
  cluster_clients.py check HOST PORT PROTO N
      CLUSTER SLOTS covers all 16384 slots with >= 2 masters; SET/GET N keys (they must land on
      >= 2 masters); MSET/MGET under 50 hash tags; mset_nonatomic/mget_nonatomic across slots; a
      cluster pipeline; INCR; HSET. Prints OK.
  cluster_clients.py write HOST PORT PROTO PREFIX STOPFILE ACKFILE
      SETs PREFIX:<i> = val-<i> one after another until STOPFILE exists; writes every acknowledged
      i to ACKFILE; prints one JSON line {"attempts", "acked", "error_count", "reconnects",
      "max_outage", "max_latency", "errors": [first messages]}.
      redis-py retries a refused connection after re-reading CLUSTER SLOTS but without waiting, so
      its retries can run out while a killed master's shard elects a new leader (a few hundred ms).
      The writer then retries the same key itself after 100 ms: counted in "reconnects"; the longest
      time from such an error to the next acknowledged write is "max_outage" (s). Other errors
      count in "error_count". "max_latency" is the slowest acknowledged SET, client retries included.
"""
import json
import os
import sys
import time

from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterError, ConnectionError, RedisError, TimeoutError
from redis.retry import Retry


def connect(host, port, proto):
    # Retries sized for a Raft election (a second or two); each one is transparent to the caller.
    return RedisCluster(
        host=host,
        port=port,
        protocol=proto,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=20),
    )


def check_coverage(rc):
    slots = rc.cluster_slots(target_nodes=RedisCluster.RANDOM)
    ranges = sorted(slots)
    assert ranges and ranges[0][0] == 0 and ranges[-1][1] == 16383, ranges
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert start == end + 1, f"gap or overlap in CLUSTER SLOTS: {ranges}"
    masters = {(v["primary"][0], v["primary"][1]) for v in slots.values()}
    assert len(masters) >= 2, f"CLUSTER SLOTS names {len(masters)} master(s): {slots}"
    assert len(rc.get_primaries()) >= 2, rc.get_primaries()
    info = rc.cluster_info(target_nodes=RedisCluster.RANDOM)
    assert info["cluster_state"] == "ok", info


def check(host, port, proto, n):
    rc = connect(host, port, proto)
    check_coverage(rc)
    pfx = f"py{proto}"
    keys = [f"{pfx}:k{i}" for i in range(n)]
    for k in keys:
        assert rc.set(k, f"v-{k}") is True, k
    for k in keys:
        got = rc.get(k)
        assert got == f"v-{k}", (k, got)
    owners = {rc.get_node_from_key(k).name for k in keys}
    assert len(owners) >= 2, f"{n} keys all on {owners}"

    for t in range(50):
        tag = f"{{{pfx}-tag{t}}}"
        kv = {f"{tag}:f{j}": f"{t}-{j}" for j in range(5)}
        assert rc.mset(kv) is True, tag
        assert rc.mget(list(kv)) == list(kv.values()), tag
    # Keys of many slots: the client splits them per slot.
    many = {f"{pfx}:m{i}": str(i) for i in range(200)}
    assert all(rc.mset_nonatomic(many)), "mset_nonatomic"
    assert rc.mget_nonatomic(list(many)) == list(many.values()), "mget_nonatomic"
    pipe = rc.pipeline()
    for i in range(200):
        pipe.set(f"{pfx}:p{i}", i)
    for i in range(200):
        pipe.get(f"{pfx}:p{i}")
    res = pipe.execute()
    assert res[:200] == [True] * 200 and res[200:] == [str(i) for i in range(200)], res
    assert rc.incr(f"{pfx}:counter") == 1
    rc.hset(f"{pfx}:h", mapping={"a": "1", "b": "2"})
    assert rc.hgetall(f"{pfx}:h") == {"a": "1", "b": "2"}
    rc.close()
    print("OK")


def write(host, port, proto, prefix, stopfile, ackfile):
    rc = connect(host, port, proto)
    acked, errors, error_count, i = [], [], 0, 0
    reconnects, outage_start, max_outage, max_latency = 0, None, 0.0, 0.0
    while not os.path.exists(stopfile):
        started = time.monotonic()
        try:
            if rc.set(f"{prefix}:{i}", f"val-{i}") is not True:
                raise RedisError("SET did not reply OK")
            acked.append(i)
            now = time.monotonic()
            max_latency = max(max_latency, now - started)
            if outage_start is not None:
                max_outage = max(max_outage, now - outage_start)
                outage_start = None
        # ClusterError("TTL exhausted"): redis-py gave up after 16 redirects/CLUSTERDOWN retries
        # while a killed shard leader's followers elect (nothing was applied: every hop was a
        # refusal). Retried like a connection error, and bounded by the same outage limit.
        except (ConnectionError, TimeoutError, ClusterError) as e:
            reconnects += 1
            outage_start = outage_start or started
            if len(errors) < 20:
                errors.append(f"(retried) {prefix}:{i}: {type(e).__name__}: {e}")
            time.sleep(0.1)
            continue  # the same key again
        except RedisError as e:
            error_count += 1
            if len(errors) < 20:
                errors.append(f"{prefix}:{i}: {type(e).__name__}: {e}")
            time.sleep(0.1)
        i += 1
    with open(ackfile, "w") as f:
        f.write("".join(f"{a}\n" for a in acked))
    rc.close()
    print(json.dumps({"attempts": i, "acked": len(acked), "error_count": error_count,
                      "reconnects": reconnects, "max_outage": round(max_outage, 3),
                      "max_latency": round(max_latency, 3), "errors": errors}))


def main():
    mode, host, port, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "check":
        check(host, port, proto, int(sys.argv[5]))
    elif mode == "write":
        write(host, port, proto, *sys.argv[5:8])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
