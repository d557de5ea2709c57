#!/usr/bin/env python3
"""Shows that redis-benchmark --cluster sends more requests than -n after CLUSTERDOWN replies.

A mock 3-master Redis Cluster (one process, ports BASE..BASE+2) counts the INCRs it receives.
Node 3 answers its first DOWN INCRs with CLUSTERDOWN (as during an election), everything else
with an integer. redis-benchmark sleeps 1 s per CLUSTERDOWN reply in the thread of that node's
clients; meanwhile the other threads' clients, done with their share, busy-loop in their write
handler, each turn adding -P to the 32-bit `requests_issued`. After ~2^31/P turns it wraps
negative and every idle client sends one more pipeline.

    python3 scripts/redis-benchmark-oversend.py 20061 48 &
    redis-benchmark --cluster -p 20061 -t incr -n 20000 -P 16 -q
    # 2026-12-07, redis-benchmark 7.0.15, loaded 2-core box: received=20688 (48 CLUSTERDOWN)

Why redis_benchmark_cluster_zero_errors (redis-tests/tests/cluster_clients.rs) counts the INCRs
the servers ran instead of trusting -n (closing12's 40,464 INCRs for 2 x 20,000).
"""

import asyncio, sys, time
base, down = int(sys.argv[1]), int(sys.argv[2])
ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
ids = [f"{i+1:040d}" for i in range(3)]
received = 0
downs_left = down
start = time.time()

def bulk(b): return b"$%d\r\n%s\r\n" % (len(b), b)

def nodes(me):
    lines = []
    for i in range(3):
        flags = "myself,master" if i == me else "master"
        lines.append(f"{ids[i]} 127.0.0.1:{base+i}@{base+i+10000} {flags} - 0 0 1 connected {ranges[i][0]}-{ranges[i][1]}")
    return bulk(("\n".join(lines) + "\n").encode())

def slots():
    out = b"*3\r\n"
    for i in range(3):
        out += b"*3\r\n:%d\r\n:%d\r\n*3\r\n" % ranges[i] + bulk(b"127.0.0.1") + b":%d\r\n" % (base + i) + bulk(ids[i].encode())
    return out

async def read_cmd(r):
    line = await r.readline()
    if not line:
        return None
    n = int(line[1:])
    args = []
    for _ in range(n):
        l = await r.readline()
        args.append((await r.readexactly(int(l[1:]) + 2))[:-2])
    return args

def handler(me):
    async def handle(r, w):
        global received, downs_left
        try:
            while True:
                args = await read_cmd(r)
                if args is None:
                    break
                cmd = args[0].upper()
                if cmd == b'INCR':
                    received += 1
                    if me == 2 and downs_left > 0:
                        downs_left -= 1
                        w.write(b"-CLUSTERDOWN The cluster is down\r\n")
                    else:
                        w.write(b":1\r\n")
                elif cmd == b'CLUSTER' and args[1].upper() == b'NODES':
                    w.write(nodes(me))
                elif cmd == b'CLUSTER':
                    w.write(slots())
                elif cmd == b'CONFIG':
                    w.write(b"*2\r\n" + bulk(args[2]) + bulk(b""))
                else:
                    w.write(b"+OK\r\n")
                await w.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
    return handle

async def report():
    while True:
        await asyncio.sleep(5)
        print(f"t={time.time()-start:.0f}s received={received}", flush=True)

async def main():
    srvs = [await asyncio.start_server(handler(i), '127.0.0.1', base + i) for i in range(3)]
    asyncio.create_task(report())
    await asyncio.gather(*(s.serve_forever() for s in srvs))

asyncio.run(main())
