#!/usr/bin/env bash
# 3-node Raft cluster vs a single redis-server, same run, same machine (issue 4, BENCHMARKS.md).
#   - starts 3 pinnacle nodes on 127.0.0.11-13 (free ports, data under one temporary folder) and a
#     redis-server with `--appendonly yes --appendfsync everysec`;
#   - redis-benchmark -t set,get -n N -c 50 -r 100000 at -P 1 and -P 16 against the Raft leader
#     (reads: ReadIndex, the default) and against redis-server, prints rps, p50/p99 and ratios;
#     then SET+GET again on a second cluster started with `--raft-read lease` (GET row shown);
#   - election time after SIGKILL of the leader over T trials: the time from the kill until a
#     survivor says `role:master` and the other survivor names it leader (INFO replication polled
#     every 5 ms), and until the first SET through the new leader is acknowledged; the killed
#     node is restarted and caught up before the next trial. Prints p50 / p99 / max.
# Environment: BENCH_N (default 100000), BENCH_TRIALS (default 50), BENCH_RAFT_ARGS (extra flags
# for every node), BENCH_LEASE=0 (skip the lease run), PINNACLE_BIN (skip the build),
# BENCH_KEEP=1 (keep the data/log folder).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "ERROR: $tool is missing (scripts/test.sh installs it)" >&2; exit 1; }
done

if [ -z "${PINNACLE_BIN:-}" ]; then
    cargo build --release -p pinnacle-server --bin pinnacle
    PINNACLE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pinnacle
fi
export PINNACLE_BIN

exec python3 - "$@" <<'PYEOF'
import ctypes, csv, io, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BIN = os.environ["PINNACLE_BIN"]
N = int(os.environ.get("BENCH_N", "100000"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "50"))
EXTRA = os.environ.get("BENCH_RAFT_ARGS", "").split()
LEASE = os.environ.get("BENCH_LEASE", "1") != "0"
work = tempfile.mkdtemp(prefix="pinnacle-bench-raft.")
procs = []  # every Popen we started, killed by pid at exit

libc = ctypes.CDLL("libc.so.6", use_errno=True)
def die_with_parent():
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

def spawn(args, log):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=open(log, "ab"),
                         stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    procs.append(p)
    return p

def free_port(ip):
    s = socket.socket(); s.bind((ip, 0)); port = s.getsockname()[1]; s.close()
    return port

def cmd(addr, *args, timeout=1.0):
    """One RESP command on a fresh connection; returns the decoded reply (bytes/int/str error)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+": return rest.decode()
        if t == b"-": return Exception(rest.decode())
        if t == b":": return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2]
        raise ValueError(line)

def info(addr):
    r = cmd(addr, "INFO", "replication", timeout=0.5)
    if not isinstance(r, bytes):
        raise ConnectionError(str(r))
    return dict(l.split(":", 1) for l in r.decode().splitlines() if ":" in l and not l.startswith("#"))

def wait_ping(addr, p, what):
    for _ in range(600):
        if p.poll() is not None:
            sys.exit(f"ERROR: {what} exited, see {work}")
        try:
            if cmd(addr, "PING") == "PONG": return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"ERROR: {what} did not answer PING")

class Cluster:
    def __init__(self, name, extra):
        self.nodes = {}
        for i in (1, 2, 3):
            ip = f"127.0.0.{10 + i}"
            self.nodes[i] = dict(ip=ip, port=free_port(ip), bus=free_port(ip),
                                 dir=os.path.join(work, name, f"node{i}"),
                                 log=os.path.join(work, name, f"node{i}.log"), proc=None)
            os.makedirs(self.nodes[i]["dir"])
        self.peers = ",".join(f"{i}@{n['ip']}:{n['port']}@{n['bus']}" for i, n in self.nodes.items())
        self.extra = extra
        for i in self.nodes: self.start(i, wait=False)
        for i in self.nodes: wait_ping(self.addr(i), self.nodes[i]["proc"], f"node{i}")

    def addr(self, i):
        return (self.nodes[i]["ip"], self.nodes[i]["port"])

    def start(self, i, wait=True):
        n = self.nodes[i]
        n["proc"] = spawn([BIN, "--node-id", str(i), "--bind", n["ip"], "--port", str(n["port"]),
                           "--cluster-port", str(n["bus"]), "--cluster-peers", self.peers,
                           "--dir", n["dir"], *self.extra], n["log"])
        if wait: wait_ping(self.addr(i), n["proc"], f"node{i}")

    def kill9(self, i):
        p = self.nodes[i]["proc"]
        p.kill(); p.wait()

    def leader(self, among=None, timeout=20.0):
        """A node claiming role:master that a majority (2 of 3) names as leader in its term."""
        among = among or list(self.nodes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = {}
            for i in among:
                try: infos[i] = info(self.addr(i))
                except (OSError, ValueError): pass
            for i, inf in infos.items():
                if inf.get("role") == "master" and inf.get("raft_leader_id") == str(i):
                    votes = sum(1 for o in infos.values()
                                if o.get("raft_leader_id") == str(i) and o.get("raft_term") == inf.get("raft_term"))
                    if votes >= 2: return i
            time.sleep(0.005)
        raise TimeoutError("no leader")

    def serving(self, i, timeout=20.0):
        """Waits until node i acknowledges a write and serves a read (a fresh leader may refuse
        both until its first entry commits; redis-benchmark gives up on an error reply)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cmd(self.addr(i), "SET", "bench:ready", "1") == "OK" and cmd(self.addr(i), "GET", "bench:ready") == b"1":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"node{i} does not serve")

    def stop(self):
        for n in self.nodes.values():
            if n["proc"] and n["proc"].poll() is None:
                n["proc"].kill(); n["proc"].wait()

def bench(addr, tests, pipeline):
    out = subprocess.run(["redis-benchmark", "-h", addr[0], "-p", str(addr[1]), "-t", tests,
                          "-n", str(N), "-c", "50", "-r", "100000", "-P", str(pipeline), "--csv"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    rows = list(csv.reader(io.StringIO(out.stdout)))
    if not rows:
        sys.exit(f"ERROR: redis-benchmark printed nothing: {out.stderr}")
    if out.returncode != 0 or "rror" in out.stderr:
        print(f"# WARNING: redis-benchmark on {addr} -P {pipeline}: exit {out.returncode}: {out.stderr.strip()[:300]}")
    head = rows[0]
    res = {}
    for r in rows[1:]:
        d = dict(zip(head, r))
        res[d["test"]] = (float(d["rps"]), float(d["p50_latency_ms"]), float(d["p99_latency_ms"]))
    return res

def pct(xs, p):
    xs = sorted(xs)
    k = max(1, min(len(xs), int(-(-len(xs) * p // 1)))) - 1
    return xs[k]

try:
    print(f"# machine: {os.cpu_count()} cores, load {open('/proc/loadavg').read().split()[:3]}")
    print(f"# date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; pinnacle {BIN} {' '.join(EXTRA)}")
    print(f"# command: redis-benchmark -h HOST -p PORT -t set,get -n {N} -c 50 -r 100000 -P {{1,16}} --csv")
    rport = free_port("127.0.0.1")
    os.makedirs(os.path.join(work, "redis"))
    rp = spawn(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", os.path.join(work, "redis"),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"],
               os.path.join(work, "redis.log"))
    wait_ping(("127.0.0.1", rport), rp, "redis-server")
    c = Cluster("index", EXTRA)
    l = c.leader()
    c.serving(l)
    results = {}
    for P in (1, 16):
        order = [("raft", c.addr(l)), ("redis", ("127.0.0.1", rport))]
        if P == 16: order.reverse()  # neither side always gets the warmer machine
        for who, addr in order:
            for test, v in bench(addr, "set,get", P).items():
                results[(who, test, P)] = v
    if c.leader(timeout=5) != l:
        print(f"# WARNING: leadership moved during the benchmark (node{l} -> node{c.leader()})")
    c.stop()
    if LEASE:
        cl = Cluster("lease", EXTRA + ["--raft-read", "lease"])
        ll = cl.leader()
        cl.serving(ll)
        for P in (1, 16):
            # SET first so GETs find the same keys as on the other servers (misses are cheaper).
            for test, v in bench(cl.addr(ll), "set,get", P).items():
                results[("lease", test, P)] = v
        cl.stop()

    print()
    print("| test | -P | raft leader rps | redis rps | ratio | raft p50 ms | redis p50 ms | raft p99 ms | redis p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for P in (1, 16):
        for test, who in (("SET", "raft"), ("GET", "raft"), ("GET", "lease")):
            a, b = results.get((who, test, P)), results.get(("redis", test, P))
            if not a or not b:
                print(f"| {test} ({who}) | {P} | missing | | | | | | |")
                continue
            label = test + (" (lease reads)" if who == "lease" else " (ReadIndex)" if test == "GET" else "")
            print(f"| {label} | {P} | {a[0]:.0f} | {b[0]:.0f} | {a[0]/b[0]:.2f} | {a[1]:.3f} | {b[1]:.3f} | {a[2]:.3f} | {b[2]:.3f} |")
    sys.stdout.flush()

    # --- election time after SIGKILL of the leader ---------------------------------------------
    c = Cluster("election", EXTRA)
    elect, first_write = [], []
    l = c.leader()
    for t in range(TRIALS):
        cmd(c.addr(l), "SET", f"trial:{t}", "before")
        c.kill9(l)
        t0 = time.monotonic()
        survivors = [i for i in c.nodes if i != l]
        new = c.leader(among=survivors, timeout=10)
        elect.append((time.monotonic() - t0) * 1000)
        while True:
            try:
                if cmd(c.addr(new), "SET", f"trial:{t}", "after", timeout=2) == "OK": break
            except OSError:
                pass
            if time.monotonic() - t0 > 10: sys.exit(f"ERROR: trial {t}: no write acknowledged after 10 s")
            time.sleep(0.002)
        first_write.append((time.monotonic() - t0) * 1000)
        c.start(l)
        target = int(info(c.addr(new))["raft_commit_index"])
        deadline = time.monotonic() + 20
        while True:
            try:
                if int(info(c.addr(l))["raft_applied_index"]) >= target: break
            except (OSError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline: sys.exit(f"ERROR: trial {t}: node{l} did not catch up")
            time.sleep(0.01)
        l = c.leader()
    c.stop()
    print()
    print(f"# election after leader SIGKILL, {TRIALS} trials (3 nodes, idle cluster, INFO polled every 5 ms)")
    print("| measure | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    for name, xs in (("new leader agreed by a majority", elect), ("first SET acknowledged by it", first_write)):
        print(f"| {name} | {pct(xs, 0.5):.0f} | {pct(xs, 0.99):.0f} | {max(xs):.0f} |")
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if os.environ.get("BENCH_KEEP") == "1":
        print(f"# data and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
PYEOF
