#!/usr/bin/env python3
"""Generates server/src/command/generated.rs (the static command table data) and the
COMMAND INFO fixture used by server's tests, from a live redis-server 7.0.15.

Usage: scripts/gen-command-table.py [--port 7777]
Starts its own redis-server (cluster mode, so replies match what pinnacle claims to be) on the
given port unless --no-start is passed, reads `COMMAND INFO` and `COMMAND DOCS` over RESP3,
and writes Rust source with one `CommandSpec` per command and subcommand.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_RS = os.path.join(ROOT, "server/src/command/generated.rs")
OUT_FIXTURE = os.path.join(ROOT, "server/src/command/fixtures/command_info.txt")


class Conn:
    """A tiny RESP3 client that keeps reply types (status vs bulk, set vs array, map)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)

    def raw(self, *args):
        """Sends a command and returns the exact reply bytes."""
        self.send(*args)
        start = len(self.buf)
        assert start == 0
        self.read()
        data, self.consumed = self.consumed, None
        return data

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf[self.pos:]:
            self._fill()
        i = self.buf.index(b"\r\n", self.pos)
        line = self.buf[self.pos:i]
        self.pos = i + 2
        return line

    def read(self):
        self.pos = 0
        v = self._parse()
        self.consumed = self.buf[: self.pos]
        self.buf = self.buf[self.pos:]
        return v

    def _parse(self):
        line = self._line()
        t, rest = chr(line[0]), line[1:]
        if t == "+":
            return ("status", rest.decode())
        if t == "-":
            raise RuntimeError(rest.decode())
        if t == ":":
            return ("int", int(rest))
        if t == "$":
            n = int(rest)
            while len(self.buf) < self.pos + n + 2:
                self._fill()
            v = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return ("bulk", v.decode())
        if t == "_":
            return ("null", None)
        if t in "*~":
            n = int(rest)
            return ("arr" if t == "*" else "set", [self._parse() for _ in range(n)])
        if t == "%":
            n = int(rest)
            return ("map", [(self._parse(), self._parse()) for _ in range(n)])
        raise ValueError("unexpected type %r" % t)

    def call(self, *args):
        self.send(*args)
        return self.read()


def rs_str(s):
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    out.append('"')
    return "".join(out)


def lit(v):
    t, x = v
    if t == "bulk":
        return "Lit::Bulk(%s)" % rs_str(x)
    if t == "status":
        return "Lit::Status(%s)" % rs_str(x)
    if t == "int":
        return "Lit::Int(%d)" % x
    if t == "null":
        return "Lit::Null"
    if t == "arr":
        return "Lit::Arr(&[%s])" % ", ".join(lit(e) for e in x)
    if t == "set":
        return "Lit::Set(&[%s])" % ", ".join(lit(e) for e in x)
    if t == "map":
        return "Lit::Map(&[%s])" % ", ".join("(%s, %s)" % (lit(k), lit(v)) for k, v in x)
    raise ValueError(t)


def strs(v):
    return "&[%s]" % ", ".join(rs_str(e[1]) for e in v[1])


def mapget(m, key):
    for k, v in m[1]:
        if k[1] == key:
            return v
    return None


def key_spec(m):
    """A typed key spec; the generic map form is rebuilt from it at run time."""
    notes = mapget(m, "notes")
    flags = mapget(m, "flags")
    bs = mapget(m, "begin_search")
    fk = mapget(m, "find_keys")
    keys = [k[1] for k, _ in m[1]]
    assert keys == [k for k in ["notes", "flags", "begin_search", "find_keys"] if k in keys], keys
    bt, bspec = mapget(bs, "type")[1], mapget(bs, "spec")
    if bt == "index":
        begin = "BeginSearch::Index(%d)" % mapget(bspec, "index")[1]
    elif bt == "keyword":
        begin = "BeginSearch::Keyword { keyword: %s, startfrom: %d }" % (
            rs_str(mapget(bspec, "keyword")[1]), mapget(bspec, "startfrom")[1])
    else:
        assert bt == "unknown" and bspec[1] == [], bs
        begin = "BeginSearch::Unknown"
    ft, fspec = mapget(fk, "type")[1], mapget(fk, "spec")
    if ft == "range":
        find = "FindKeys::Range { lastkey: %d, keystep: %d, limit: %d }" % (
            mapget(fspec, "lastkey")[1], mapget(fspec, "keystep")[1], mapget(fspec, "limit")[1])
    elif ft == "keynum":
        find = "FindKeys::Keynum { keynumidx: %d, firstkey: %d, keystep: %d }" % (
            mapget(fspec, "keynumidx")[1], mapget(fspec, "firstkey")[1], mapget(fspec, "keystep")[1])
    else:
        assert ft == "unknown" and fspec[1] == [], fk
        find = "FindKeys::Unknown"
    return "KeySpec { notes: %s, flags: %s, begin_search: %s, find_keys: %s }" % (
        "Some(%s)" % rs_str(notes[1]) if notes else "None", strs(flags), begin, find)


DOC_FIXED = ["summary", "since", "group", "complexity"]  # complexity is optional


def spec(info, docs, indent):
    t, e = info
    assert t == "arr" and len(e) == 10, info
    name = e[0][1]
    subs = e[9][1]
    doc = docs.get(name)
    assert doc is not None, name
    extra = []
    fixed = {}
    sub_docs = {}
    for k, v in doc[1]:
        key = k[1]
        if key in DOC_FIXED:
            fixed[key] = v[1]
        elif key == "subcommands":
            sub_docs = {sk[1]: sv for sk, sv in v[1]}
        else:
            extra.append("(%s, %s)" % (rs_str(key), lit(v)))
    # Redis's DOCS keys always start with these four, in this order.
    order = [k[1] for k, _ in doc[1]]
    assert order[:3] == DOC_FIXED[:3] and ("complexity" not in order or order[3] == "complexity"), name
    pad = " " * indent
    sub_src = ",\n".join(spec(s, sub_docs, indent + 8) for s in subs)
    return (
        "%sCommandSpec {\n"
        "%s    name: %s,\n"
        "%s    arity: %d,\n"
        "%s    flags: %s,\n"
        "%s    first_key: %d,\n"
        "%s    last_key: %d,\n"
        "%s    step: %d,\n"
        "%s    acl_categories: %s,\n"
        "%s    tips: %s,\n"
        "%s    key_specs: &[%s],\n"
        "%s    summary: %s,\n"
        "%s    since: %s,\n"
        "%s    group: %s,\n"
        "%s    complexity: %s,\n"
        "%s    doc_extra: &[%s],\n"
        "%s    subcommands: &[%s],\n"
        "%s}"
    ) % (
        pad, pad, rs_str(name), pad, e[1][1], pad, strs(e[2]), pad, e[3][1], pad, e[4][1],
        pad, e[5][1], pad, strs(e[6]), pad, strs(e[7]), pad,
        ", ".join(key_spec(k) for k in e[8][1]),
        pad, rs_str(fixed["summary"]), pad, rs_str(fixed["since"]), pad, rs_str(fixed["group"]),
        pad, ("Some(%s)" % rs_str(fixed["complexity"])) if "complexity" in fixed else "None", pad, ", ".join(extra),
        pad, ("\n" + sub_src + "\n" + pad + "    ") if subs else "", pad)


def escape_bytes(b):
    out = []
    for c in b:
        if c == 0x5C:
            out.append("\\\\")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x0A:
            out.append("\\n")
        elif 32 <= c < 127:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=7777)
    ap.add_argument("--no-start", action="store_true")
    args = ap.parse_args()
    proc = None
    tmp = tempfile.mkdtemp()
    if not args.no_start:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(args.port), "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(tmp, "nodes.conf"), "--save", "",
             "--dir", tmp, "--daemonize", "no"],
            stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        c = Conn(args.port)
        c.call("HELLO", "3")
        # Redis keeps subcommands in a dict whose iteration order changes while it is still
        # being rehashed (every lookup advances the rehash). Look every name up until two
        # passes agree, so the order we record is the one the server will keep answering.
        names = sorted(i[1][0][1] for i in c.call("COMMAND", "INFO")[1])
        previous = None
        for _ in range(20):
            current = [c.raw("COMMAND", "INFO", n) for n in names]
            if current == previous:
                break
            previous = current
        infos = [c.call("COMMAND", "INFO", n)[1][0] for n in names]
        docs_map = c.call("COMMAND", "DOCS")
        docs = {k[1]: v for k, v in docs_map[1]}
        infos.sort(key=lambda i: i[1][0][1])
        body = ",\n".join(spec(i, docs, 4) for i in infos)
        with open(OUT_RS, "w") as f:
            f.write("//! @generated by scripts/gen-command-table.py from redis-server 7.0.15's\n")
            f.write("//! `COMMAND INFO` and `COMMAND DOCS`. Do not edit by hand.\n\n")
            f.write("use super::spec::{BeginSearch, CommandSpec, FindKeys, KeySpec, Lit};\n\n")
            f.write("/// Every command redis-server 7.0.15 knows, sorted by name.\n")
            f.write("pub static REDIS_COMMANDS: &[CommandSpec] = &[\n%s,\n];\n" % body)
        # Keep the file as `cargo fmt` would leave it, so regenerating gives no spurious diff.
        subprocess.run(["rustfmt", "--edition", "2021", OUT_RS], check=True)
        # Fixture: the exact COMMAND INFO bytes of each command and subcommand, RESP2 and RESP3.
        os.makedirs(os.path.dirname(OUT_FIXTURE), exist_ok=True)
        names = []
        for i in infos:
            names.append(i[1][0][1])
            names.extend(s[1][0][1] for s in i[1][9][1])
        c2 = Conn(args.port)
        lines = []
        for n in names:
            r3 = c.raw("COMMAND", "INFO", n)
            r2 = c2.raw("COMMAND", "INFO", n)
            lines.append("%s\t%s\t%s" % (n, escape_bytes(r2), escape_bytes(r3)))
        with open(OUT_FIXTURE, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote %d commands (%d with subcommands) to %s" % (len(infos), len(names), OUT_RS))
    finally:
        if proc:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
