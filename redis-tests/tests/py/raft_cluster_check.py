"""redis-py RedisCluster against a Pinnacle Raft cluster (one shard owning every slot).

Usage: python3 raft_cluster_check.py HOST PORT PROTOCOL(2|3) write|read N
  write: SET k0..k{N-1} through the cluster client started from HOST:PORT (any node), read back
  read:  GET k0..k{N-1} and check the values (after a failover the client must find the new leader)
Prints OK on success.
"""
import sys
import time

from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, ConnectionError, TimeoutError


def retrying(fn, attempts=40):
    for i in range(attempts):
        try:
            return fn()
        except (ClusterDownError, ConnectionError, TimeoutError):
            if i == attempts - 1:
                raise
            time.sleep(0.25)


def main():
    host, port, proto, phase, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    rc = retrying(lambda: RedisCluster(host=host, port=port, protocol=proto, decode_responses=True))
    slots = rc.cluster_slots(target_nodes=RedisCluster.RANDOM)
    # Every slot covered by one range whose master is the Raft leader.
    assert len(slots) == 1 and (0, 16383) in slots, slots
    info = rc.cluster_info(target_nodes=RedisCluster.RANDOM)
    assert info["cluster_state"] == "ok", info
    if phase == "write":
        for i in range(n):
            assert retrying(lambda: rc.set(f"k{i}", f"v{i}")) is True
        for i in range(n):
            assert rc.get(f"k{i}") == f"v{i}"
        assert rc.incr("counter") == 1
        rc.hset("h", mapping={"a": "1", "b": "2"})
        assert rc.hgetall("h") == {"a": "1", "b": "2"}
    else:
        for i in range(n):
            assert retrying(lambda: rc.get(f"k{i}")) == f"v{i}", i
        assert retrying(lambda: rc.incr("counter")) == 2
    print("OK")


if __name__ == "__main__":
    main()
