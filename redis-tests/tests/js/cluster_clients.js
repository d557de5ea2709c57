// ioredis `Cluster` against a multi-shard cluster (Pinnacle `--shards 3`, or a real Redis Cluster).
// Driven by redis-tests/tests/cluster_clients.rs, which installs ioredis next to a copy of this file.
//
// Usage:
//   node cluster_clients.js check HOST PORT N
//     SET/GET N keys, MSET/MGET under 50 hash tags, INCR, HSET, a same-slot pipeline; checks that
//     the client sees >= 2 masters and that the keys landed on >= 2 of them. Prints OK.
//   node cluster_clients.js write HOST PORT PREFIX STOPFILE ACKFILE
//     SETs PREFIX:<i> = val-<i> one after another until STOPFILE exists; writes every acknowledged
//     i to ACKFILE; prints one JSON line {"attempts","acked","error_count","reconnects":0,
//     "max_outage":0,"max_latency","errors":[first messages]} (ioredis retries refused
//     connections itself, so every error it returns counts; max_latency is the slowest
//     acknowledged SET in seconds, client retries included).
"use strict";

const fs = require("fs");
const Redis = require("ioredis");

function client(host, port) {
  // Retry settings sized for a Raft election (about a second or two): every retry is transparent
  // to the caller, so a test that asserts zero errors tests the server's redirects, not luck.
  return new Redis.Cluster([{ host, port }], {
    maxRedirections: 64,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 100,
    retryDelayOnMoved: 0,
    slotsRefreshTimeout: 2000,
    clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
    redisOptions: { connectTimeout: 2000, maxRetriesPerRequest: 20 },
  });
}

function assert(cond, msg) {
  if (!cond) throw new Error("assertion failed: " + msg);
}

async function ready(c) {
  if (c.status === "ready") return;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("cluster not ready within 20 s")), 20000);
    c.once("ready", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function check(host, port, n) {
  const c = client(host, port);
  await ready(c);
  const masters = c.nodes("master");
  assert(masters.length >= 2, `ioredis sees ${masters.length} master(s); a multi-shard cluster has >= 2`);

  const keys = [];
  for (let i = 0; i < n; i++) keys.push(`js:k${i}`);
  for (let i = 0; i < n; i += 100) {
    const batch = keys.slice(i, i + 100);
    const replies = await Promise.all(batch.map((k) => c.set(k, `v-${k}`)));
    replies.forEach((r, j) => assert(r === "OK", `SET ${batch[j]} -> ${r}`));
  }
  for (let i = 0; i < n; i += 100) {
    const batch = keys.slice(i, i + 100);
    const values = await Promise.all(batch.map((k) => c.get(k)));
    values.forEach((v, j) => assert(v === `v-${batch[j]}`, `GET ${batch[j]} -> ${v}`));
  }
  // ioredis keeps slot -> [master, replicas...] addresses; the keys must span several masters.
  const owners = new Set(keys.map((k) => c.slots[keySlot(k)][0]));
  assert(owners.size >= 2, `keys landed on ${owners.size} master(s)`);

  for (let t = 0; t < 50; t++) {
    const tag = `{js-tag${t}}`;
    const kv = {};
    for (let j = 0; j < 5; j++) kv[`${tag}:f${j}`] = `${t}-${j}`;
    assert((await c.mset(kv)) === "OK", `MSET ${tag}`);
    const got = await c.mget(Object.keys(kv));
    assert(JSON.stringify(got) === JSON.stringify(Object.values(kv)), `MGET ${tag} -> ${got}`);
  }
  const p = c.pipeline();
  for (let j = 0; j < 20; j++) p.incr("{js-pipe}:counter");
  const res = await p.exec();
  assert(res.length === 20 && res.every(([err]) => err === null), `pipeline: ${JSON.stringify(res)}`);
  assert(res[19][1] === 20, `INCR x20 -> ${res[19][1]}`);
  await c.hset("js:h", { a: "1", b: "2" });
  const h = await c.hgetall("js:h");
  assert(h.a === "1" && h.b === "2", `HGETALL -> ${JSON.stringify(h)}`);
  c.disconnect();
  console.log("OK");
}

// CRC16-XMODEM slot with the hash-tag rule, as ioredis (cluster-key-slot) computes it.
function keySlot(key) {
  let s = key;
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) s = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const b of Buffer.from(s)) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc & 0x3fff;
}

async function write(host, port, prefix, stopfile, ackfile) {
  const c = client(host, port);
  await ready(c);
  const acked = [];
  const errors = [];
  let errorCount = 0;
  let i = 0;
  let maxLatency = 0;
  while (!fs.existsSync(stopfile)) {
    const started = process.hrtime.bigint();
    try {
      const r = await c.set(`${prefix}:${i}`, `val-${i}`);
      if (r !== "OK") throw new Error(`SET replied ${r}`);
      acked.push(i);
      maxLatency = Math.max(maxLatency, Number(process.hrtime.bigint() - started) / 1e9);
    } catch (e) {
      errorCount++;
      if (errors.length < 20) errors.push(`${prefix}:${i}: ${e.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    i++;
  }
  fs.writeFileSync(ackfile, acked.join("\n") + "\n");
  c.disconnect();
  console.log(
    JSON.stringify({
      attempts: i,
      acked: acked.length,
      error_count: errorCount,
      reconnects: 0,
      max_outage: 0,
      max_latency: Math.round(maxLatency * 1000) / 1000,
      errors,
    }),
  );
}

async function main() {
  const [mode, host, port, ...rest] = process.argv.slice(2);
  if (mode === "check") await check(host, Number(port), Number(rest[0]));
  else if (mode === "write") await write(host, Number(port), rest[0], rest[1], rest[2]);
  else throw new Error(`unknown mode ${mode}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(1);
  },
);
