"""redis-py RedisCluster over TLS against a tls-cluster Pinnacle cluster.

Usage: tls_cluster_check.py <tls-port> <ca-file> <resp 2|3>
Prints the ports of the nodes it discovered (CLUSTER SLOTS over TLS), then OK.
"""
import sys

from redis.cluster import RedisCluster


def main() -> None:
    port, ca, proto = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rc = RedisCluster(
        host="127.0.0.1",
        port=port,
        ssl=True,
        ssl_ca_certs=ca,
        protocol=proto,
    )
    for i in range(60):
        assert rc.set(f"py:{i}", str(i))
    for i in range(60):
        got = rc.get(f"py:{i}")
        assert got == str(i).encode(), (i, got)
    print(" ".join(str(p) for p in sorted({n.port for n in rc.get_nodes()})))
    rc.close()
    print("OK")


if __name__ == "__main__":
    main()
