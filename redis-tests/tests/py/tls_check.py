"""redis-py over TLS (ssl=True) against a server's --tls-port.

Usage: python3 tls_check.py PORT PROTOCOL(2|3) CA_FILE [CERT_FILE KEY_FILE]
Verifies the server certificate against CA_FILE (and its 127.0.0.1 name); presents the client
certificate when given. Exits non-zero on the first failed check; prints OK at the end.
"""
import sys

import redis


def main():
    port, proto, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cert = sys.argv[4] if len(sys.argv) > 5 else None
    key = sys.argv[5] if len(sys.argv) > 5 else None
    r = redis.Redis(
        host="127.0.0.1",
        port=port,
        protocol=proto,
        ssl=True,
        ssl_ca_certs=ca,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_cert_reqs="required",
        ssl_check_hostname=True,
        socket_timeout=10,
    )
    assert r.ping() is True
    assert r.set("tls:greeting", "hello") is True
    assert r.get("tls:greeting") == b"hello"
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.incr("tls:counter")
    assert pipe.execute()[-1] >= 100
    big = "x" * 200_000
    assert r.set("tls:big", big) is True
    assert r.get("tls:big") == big.encode()
    print("OK")


if __name__ == "__main__":
    main()
