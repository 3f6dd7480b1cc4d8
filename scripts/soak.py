#!/usr/bin/env python3
"""Bounded soak and overload test of issue 15.

    cargo build --release
    scripts/soak.py [--duration 120] [--rate R] [--mix-rate 3000] [--wrk-connections 900]
                    [--settle 10] [--bin target/release/polyport] [--server-arg ARG ...]

Starts target/release/polyport (`serve --addr 127.0.0.1:0 --insecure-no-auth --no-access-log`,
plus any --server-arg) pinned to core 0, and runs every load generator pinned to core 1. All
traffic goes to 127.0.0.1 and stops by itself after --duration seconds (plus a few seconds of
probe and --settle).

1. Sustainable rate: 4 s of wrk, 64 connections, REST GET /v1/orders/{id} (or --rate R).
2. Overload for --duration: wrk with --wrk-connections connections (closed loop, REST GETs,
   statuses counted by a Lua script) plus this script's own mixed traffic (from source address
   127.0.0.2, so the per-address connection cap is not shared), paced to --mix-rate: REST GETs
   and lists, POST creates (half with an Idempotency-Key, some replayed), GraphQL queries, gRPC
   unary GetOrder; SSE subscribers that read slowly, SSE subscribers that vanish and resume with
   Last-Event-ID, /v1/ws subscribers that vanish and resume with after_seq, long polls.
   503 and 429 are accepted answers; other 5xx and unintended connection errors are failures.
3. Checks: RSS start / peak / after settling (must come back within 20 % + 16 MiB of start),
   threads and fds before / after, /readyz `streams` back to 0, every 201 create present
   afterwards, every stream's seqs contiguous across reconnects unless a `reset` announced the
   gap, no panic in the server's stderr. Prints a summary; exits 1 if a check fails.
"""

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict

SRC = "127.0.0.2"  # source address of this script's traffic (the destination is always 127.0.0.1)
HOST = "127.0.0.1"

WRK_LUA = r"""
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
request = function()
  if math.random(10) == 1 then return wrk.format("GET", "/v1/orders?limit=20") end
  return wrk.format("GET", "/v1/orders/" .. math.random(1, 24))
end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do io.write(string.format("STATUS %s %d\n", k, v)) end
  end
  local e = summary.errors
  io.write(string.format("ERRORS connect=%d read=%d write=%d timeout=%d\n",
    e.connect, e.read, e.write, e.timeout))
  io.write(string.format("TOTAL %d %f\n", summary.requests, summary.duration / 1e6))
end
"""


# ---------------------------------------------------------------- server process figures

def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- minimal HTTP/1.1 client

class Conn:
    """One keep-alive HTTP/1.1 connection from SRC to the server."""

    def __init__(self, port):
        self.port, self.r, self.w = port, None, None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(HOST, self.port, local_addr=(SRC, 0),
                                                       limit=1 << 20)

    def close(self):
        if self.w:
            self.w.transport.abort()
        self.r = self.w = None

    async def request(self, method, path, body=None, headers=None, timeout=30):
        if self.w is None:
            await self.open()
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.w.write(head.encode() + b"\r\n" + data)
        return await asyncio.wait_for(read_response(self.r), timeout)


async def read_head(r):
    raw = await r.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


async def read_response(r):
    status, hdrs = await read_head(r)
    if "content-length" in hdrs:
        body = await r.readexactly(int(hdrs["content-length"]))
    elif hdrs.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await r.readline()).split(b";")[0], 16)
            chunk = await r.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, hdrs, body


# ---------------------------------------------------------------- the soak

class Soak:
    def __init__(self, args, port, pid):
        self.args, self.port, self.pid = args, port, pid
        self.outcomes = defaultdict(Counter)  # protocol -> outcome -> count
        self.failures = []  # (protocol, detail), first few kept
        self.created = set()  # ids answered 201
        self.idem = {}  # Idempotency-Key -> (body, order id)
        self.replay_mismatch = 0
        self.stop = asyncio.Event()
        self.streams = {}  # name -> dict(seen, gaps, announced, reconnects, ...)
        self.samples = []

    def fail(self, proto, detail):
        self.outcomes[proto]["FAIL"] += 0
        if len(self.failures) < 40:
            self.failures.append((proto, detail))

    def record(self, proto, status):
        self.outcomes[proto][status] += 1
        if isinstance(status, int) and status >= 500 and status != 503:
            self.fail(proto, f"HTTP {status}")

    # ---- request mix

    async def mixed_worker(self, slots, t0):
        conn = Conn(self.port)
        rate = self.args.mix_rate
        while not self.stop.is_set():
            i = next(slots)
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stop.is_set():
                break
            x = random.random()
            proto = "rest_get"
            try:
                if x < 0.35:
                    proto, (st, _, _) = "rest_get", await conn.request(
                        "GET", f"/v1/orders/{random.randint(1, 24)}")
                elif x < 0.45:
                    proto, (st, _, _) = "rest_list", await conn.request(
                        "GET", "/v1/orders?limit=20&include=items")
                elif x < 0.70:
                    proto = "rest_create"
                    st = await self.create(conn)
                else:
                    proto = "graphql"
                    q = {"query": '{ order(id: "%d") { id status totalCents customer { name } '
                                  'items { quantity product { name } } } }' % random.randint(1, 24)}
                    st, _, body = await conn.request("POST", "/graphql", q)
                    if st == 200 and b'"errors"' in body and b"RATE_LIMITED" not in body:
                        st = "200+errors"
                        self.fail(proto, body[:200].decode(errors="replace"))
                self.record(proto, st)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                self.record(proto, "conn_error")
                self.fail("http", f"{type(e).__name__}: {e}")
                conn.close()
        conn.close()

    async def create(self, conn):
        body = {"customer_id": str(random.randint(1, 8)),
                "items": [{"product_id": str(random.randint(1, 24)), "quantity": random.randint(1, 3)}]}
        headers = {}
        replay = None
        if self.idem and random.random() < 0.1:
            key = random.choice(list(self.idem))
            body, replay = self.idem[key]
            headers["Idempotency-Key"] = key
        elif random.random() < 0.5:
            key = str(uuid.uuid4())
            headers["Idempotency-Key"] = key
        st, hdrs, resp = await conn.request("POST", "/v1/orders", body, headers)
        if st == 201 or (st == 200 and replay):
            oid = json.loads(resp)["id"]
            if replay is not None:
                if oid != replay:
                    self.replay_mismatch += 1
                    self.fail("rest_create", f"replay of key gave order {oid}, first was {replay}")
                return "replayed" if hdrs.get("idempotent-replayed") == "true" else st
            self.created.add(oid)
            if "Idempotency-Key" in headers and len(self.idem) < 2000:
                self.idem[headers["Idempotency-Key"]] = (body, oid)
        return st

    async def grpc_worker(self):
        import grpc
        ch = grpc.aio.insecure_channel(f"{HOST}:{self.port}")
        call = ch.unary_unary("/polyport.orders.v1.Orders/GetOrder")
        while not self.stop.is_set():
            oid = str(random.randint(1, 24)).encode()
            try:
                await call(b"\x0a" + bytes([len(oid)]) + oid, timeout=10)
                self.record("grpc", "OK")
            except grpc.aio.AioRpcError as e:
                code = e.code().name
                self.record("grpc", code)
                if code not in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                    self.fail("grpc", f"{code}: {e.details()}")
            await asyncio.sleep(0.02)
        await ch.close()

    # ---- streams: seq bookkeeping shared by SSE, WS, long polling

    def stream_state(self, name, start):
        s = {"last": start, "events": 0, "gaps": 0, "announced": 0, "dups": 0,
             "reconnects": 0, "unintended": 0, "server_closes": Counter()}
        self.streams[name] = s
        return s

    def saw(self, s, name, seq):
        if seq <= s["last"]:
            s["dups"] += 1
        elif seq != s["last"] + 1:
            s["gaps"] += 1
            self.fail(name, f"gap: after {s['last']} came {seq}")
            s["last"] = seq
        else:
            s["last"] = seq
        s["events"] += 1

    def reset(self, s, requested_after, resumed_after):
        s["announced"] += 1
        s["last"] = max(s["last"], resumed_after)

    async def sse_client(self, name, start, slow):
        s = self.stream_state(name, start)
        while not self.stop.is_set():
            conn = Conn(self.port)
            try:
                await conn.open()
                conn.w.write((f"GET /v1/events HTTP/1.1\r\nHost: {HOST}\r\n"
                              f"Last-Event-ID: {s['last']}\r\nAccept: text/event-stream\r\n\r\n").encode())
                st, hdrs = await asyncio.wait_for(read_head(conn.r), 30)
                self.record("sse_connect", st)
                if st != 200:
                    conn.close()
                    await asyncio.sleep(0.5)
                    continue
                life = time.monotonic() + (1e9 if slow else random.uniform(1, 6))
                chunked = hdrs.get("transfer-encoding", "").lower() == "chunked"
                ev, buf = {}, b""
                while not self.stop.is_set() and time.monotonic() < life:
                    try:
                        if chunked:
                            size_line = await asyncio.wait_for(conn.r.readline(), 1.0)
                            if not size_line:
                                raise ConnectionError("server closed the stream")
                            size = int(size_line.split(b";")[0], 16)
                            if size == 0:
                                raise ConnectionError("server ended the stream (last chunk)")
                            buf += (await asyncio.wait_for(conn.r.readexactly(size + 2), 30))[:-2]
                        else:
                            data = await asyncio.wait_for(conn.r.read(4096), 1.0)
                            if not data:
                                raise ConnectionError("server closed the stream")
                            buf += data
                    except asyncio.TimeoutError:
                        continue
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        line = line.rstrip(b"\r")
                        if line.startswith(b"id:"):
                            ev["id"] = int(line[3:])
                        elif line.startswith(b"event:"):
                            ev["event"] = line[6:].strip().decode()
                        elif line.startswith(b"data:"):
                            ev["data"] = line[5:].strip()
                        elif line == b"" and "id" in ev:
                            if ev.get("event") == "reset":
                                d = json.loads(ev["data"])
                                self.reset(s, d["requested_after"], d["resumed_after"])
                            else:
                                self.saw(s, name, ev["id"])
                            ev = {}
                    if slow:
                        await asyncio.sleep(0.01 * max(1, len(lines) // 3))
                conn.close()  # vanish mid-stream (no goodbye)
                if not self.stop.is_set():
                    s["reconnects"] += 1
                    await asyncio.sleep(0.2)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                conn.close()
                if self.stop.is_set():
                    break
                s["unintended"] += 1
                self.fail(name, f"{type(e).__name__}: {e}")
                await asyncio.sleep(0.5)
        self.outcomes["sse"]["events"] += s["events"]

    async def ws_client(self, name, start):
        import websockets
        from websockets.asyncio.client import connect
        s = self.stream_state(name, start)
        while not self.stop.is_set():
            try:
                async with connect(f"ws://{HOST}:{self.port}/v1/ws", local_addr=(SRC, 0),
                                   compression=None, open_timeout=30, ping_interval=None) as ws:
                    self.record("ws_connect", 101)
                    await ws.send(json.dumps({"op": "subscribe", "id": "s1", "topic": "orders",
                                              "after_seq": s["last"]}))
                    life = time.monotonic() + random.uniform(1, 6)
                    while not self.stop.is_set() and time.monotonic() < life:
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                        except asyncio.TimeoutError:
                            continue
                        op = msg.get("op")
                        if op == "event":
                            self.saw(s, name, msg["seq"])
                        elif op == "reset":
                            self.reset(s, msg.get("requested_after"), msg.get("resumed_after", s["last"]))
                        elif op == "error":
                            self.record("ws_command", msg.get("status"))
                            if msg.get("status") not in (429, 503):
                                self.fail(name, f"error message: {msg}")
                    ws.transport.abort()  # vanish
                s["reconnects"] += 1
                await asyncio.sleep(0.2)
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                if self.stop.is_set():
                    break
                s["server_closes"][code] += 1
                if code not in (4008, 4429, 1013):  # slow consumer, quota, try again later
                    s["unintended"] += 1
                    self.fail(name, f"closed {code}: {e}")
                await asyncio.sleep(0.2)
            except websockets.exceptions.InvalidStatus as e:
                self.record("ws_connect", e.response.status_code)
                await asyncio.sleep(0.5)
            except (OSError, asyncio.TimeoutError) as e:
                if self.stop.is_set():
                    break
                s["unintended"] += 1
                self.fail(name, f"{type(e).__name__}: {e}")
                await asyncio.sleep(0.5)
        self.outcomes["ws"]["events"] += s["events"]

    async def long_poll(self, name, start):
        s = self.stream_state(name, start)
        conn = Conn(self.port)
        while not self.stop.is_set():
            try:
                st, _, body = await conn.request("GET", f"/v1/events/poll?since={s['last']}&timeout=5", timeout=30)
                self.record("long_poll", st)
                if st != 200:
                    await asyncio.sleep(0.2)
                    continue
                d = json.loads(body)
                if d.get("reset"):
                    self.reset(s, d["reset"]["requested_after"], d["reset"]["resumed_after"])
                for e in d["events"]:
                    self.saw(s, name, e["seq"])
                s["last"] = max(s["last"], d["next_since"])
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                conn.close()
                if self.stop.is_set():
                    break
                s["unintended"] += 1
                self.fail(name, f"{type(e).__name__}: {e}")
                await asyncio.sleep(0.5)
        conn.close()
        self.outcomes["long_poll"]["events"] += s["events"]

    async def sampler(self):
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), proc_status(self.pid, "VmRSS"),
                                     proc_status(self.pid, "Threads"), fds(self.pid)))
            except OSError:
                pass
            await asyncio.sleep(0.5)

    async def run(self, start_seq):
        a = self.args
        tasks = [asyncio.create_task(self.sampler())]
        for i in range(a.sse_slow):
            tasks.append(asyncio.create_task(self.sse_client(f"sse_slow{i}", start_seq, True)))
        for i in range(a.sse_vanish):
            tasks.append(asyncio.create_task(self.sse_client(f"sse_vanish{i}", start_seq, False)))
        for i in range(a.ws):
            tasks.append(asyncio.create_task(self.ws_client(f"ws{i}", start_seq)))
        for i in range(a.long_polls):
            tasks.append(asyncio.create_task(self.long_poll(f"poll{i}", start_seq)))
        for _ in range(a.grpc):
            tasks.append(asyncio.create_task(self.grpc_worker()))
        slots = iter(range(1 << 60))
        t0 = time.monotonic()
        for _ in range(a.mix_connections):
            tasks.append(asyncio.create_task(self.mixed_worker(slots, t0)))
        await asyncio.sleep(a.duration)
        self.stop.set()
        self.mix_elapsed = time.monotonic() - t0
        done, pending = await asyncio.wait(tasks, timeout=40)
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception():
                self.fail("script", repr(t.exception()))


def run_wrk(port, conns, seconds, lua_path, out_path=None):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
           "-s", lua_path, f"http://{HOST}:{port}/v1/orders/1"]
    if out_path:
        return subprocess.Popen(cmd, stdout=open(out_path, "w"), stderr=subprocess.STDOUT)
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def parse_wrk(text):
    counts, errors, total, secs = Counter(), {}, 0, 1.0
    for line in text.splitlines():
        if line.startswith("STATUS "):
            _, k, v = line.split()
            counts[int(k)] += int(v)
        elif line.startswith("ERRORS "):
            errors = {k: int(v) for k, v in (p.split("=") for p in line.split()[1:])}
        elif line.startswith("TOTAL "):
            total, secs = int(line.split()[1]), float(line.split()[2])
    return counts, errors, total, secs


def http_get_json(port, path):
    import http.client
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body else None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=120)
    p.add_argument("--rate", type=float, help="sustainable REST rate (skip the probe)")
    p.add_argument("--mix-rate", type=float, default=3000, help="target rate of this script's mixed requests")
    p.add_argument("--mix-connections", type=int, default=64)
    p.add_argument("--wrk-connections", type=int, default=900)
    p.add_argument("--sse-slow", type=int, default=20)
    p.add_argument("--sse-vanish", type=int, default=20)
    p.add_argument("--ws", type=int, default=20)
    p.add_argument("--long-polls", type=int, default=10)
    p.add_argument("--grpc", type=int, default=4, help="gRPC unary callers (0: none)")
    p.add_argument("--settle", type=float, default=10)
    p.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "polyport"))
    p.add_argument("--server-arg", action="append", default=[])
    a = p.parse_args()

    os.sched_setaffinity(0, {1})
    err = tempfile.NamedTemporaryFile("w+", prefix="soak-server-", suffix=".log", delete=False)
    server = subprocess.Popen(["taskset", "-c", "0", a.bin, "serve", "--addr", "127.0.0.1:0",
                               "--insecure-no-auth", "--no-access-log", *a.server_arg],
                              stdout=subprocess.DEVNULL, stderr=err)
    port = None
    for _ in range(100):
        time.sleep(0.1)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(err.name).read())
        if m:
            port = int(m.group(1))
            break
    if not port:
        print(open(err.name).read())
        server.kill()
        sys.exit("server did not start")
    pid = server.pid
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write(WRK_LUA)
    lua.close()
    print(f"server pid {pid} on 127.0.0.1:{port}, stderr in {err.name}")

    try:
        rss0, thr0, fd0 = proc_status(pid, "VmRSS"), proc_status(pid, "Threads"), fds(pid)
        _, ready0 = http_get_json(port, "/readyz")
        if a.rate:
            rate = a.rate
        else:
            counts, errors, total, secs = parse_wrk(run_wrk(port, 64, 4, lua.name))
            rate = counts.get(200, 0) / secs
            print(f"sustainable REST GET rate (wrk, 64 connections, 4 s): {rate:.0f}/s")
        rss_probe = proc_status(pid, "VmRSS")
        cpu0 = cpu_seconds(pid)
        wrk_out = tempfile.NamedTemporaryFile(prefix="soak-wrk-", delete=False).name
        wrk = run_wrk(port, a.wrk_connections, int(a.duration), lua.name, wrk_out) if a.wrk_connections else None
        soak = Soak(a, port, pid)
        t_load = time.monotonic()
        asyncio.run(soak.run(ready0["last_event_seq"]))
        if wrk:
            wrk.wait()
        load_secs = time.monotonic() - t_load
        cpu_load = cpu_seconds(pid) - cpu0
        wcounts, werrors, wtotal, wsecs = parse_wrk(open(wrk_out).read()) if wrk else (Counter(), {}, 0, 1)

        # settle: streams must drain, memory come back
        streams_after = None
        t_end = time.monotonic() + a.settle
        while time.monotonic() < t_end:
            time.sleep(0.5)
        _, ready1 = http_get_json(port, "/readyz")
        streams_after = ready1["streams"]
        rss1, thr1, fd1 = proc_status(pid, "VmRSS"), proc_status(pid, "Threads"), fds(pid)
        rss_peak = max([s[1] for s in soak.samples] + [rss0, rss1])

        # every acknowledged create is there
        import http.client
        c = http.client.HTTPConnection(HOST, port, timeout=10)
        lost = []
        for oid in sorted(soak.created, key=int):
            for _ in range(50):  # the rate limit, if on, answers 429: wait and ask again
                c.request("GET", f"/v1/orders/{oid}")
                r = c.getresponse()
                r.read()
                if r.status not in (429, 503):
                    break
                time.sleep(float(r.getheader("retry-after") or 1))
            if r.status != 200:
                lost.append((oid, r.status))
        c.close()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    stderr = open(err.name).read()
    panics = [l for l in stderr.splitlines() if "panic" in l.lower()]
    errors_logged = [l for l in stderr.splitlines() if " ERROR " in l]

    # ---- summary
    print()
    print("requests by outcome, per protocol")
    wrk_row = dict(wcounts)
    for k, v in werrors.items():
        if v:
            wrk_row[f"sock_{k}"] = v
    rows = [("rest_get (wrk)", wrk_row)] + sorted(soak.outcomes.items())
    for proto, outcomes in rows:
        print(f"  {proto:16} " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items(), key=lambda kv: str(kv[0]))))
    mix_total = sum(v for proto, o in soak.outcomes.items() if proto in ("rest_get", "rest_list", "rest_create", "graphql")
                    for k, v in o.items())
    mix_503 = sum(o.get(503, 0) for proto, o in soak.outcomes.items())
    req_total = wtotal + mix_total + sum(soak.outcomes["grpc"].values())
    shed = wcounts.get(503, 0) + mix_503 + soak.outcomes["grpc"].get("UNAVAILABLE", 0)
    limited = wcounts.get(429, 0) + sum(o.get(429, 0) for o in soak.outcomes.values())
    st = soak.streams
    gaps = sum(s["gaps"] for s in st.values())
    announced = sum(s["announced"] for s in st.values())
    unintended = sum(s["unintended"] for s in st.values())
    reconnects = sum(s["reconnects"] for s in st.values())
    closes = Counter()
    for s in st.values():
        closes.update(s["server_closes"])
    wrk_sock_errors = sum(werrors.values())
    bad5xx = sum(v for o in [wcounts] + list(soak.outcomes.values()) for k, v in o.items()
                 if isinstance(k, int) and k >= 500 and k != 503)
    mem_ok = rss1 <= rss0 * 1.2 + 16384

    table = [
        ("sustainable REST rate (probe)", f"{rate:.0f}/s"),
        ("load duration", f"{load_secs:.0f} s"),
        ("achieved rate, all requests", f"{req_total / load_secs:.0f}/s ({req_total / load_secs / rate:.2f}x sustainable)"),
        ("  wrk REST GETs", f"{wtotal / wsecs:.0f}/s, {a.wrk_connections} connections"),
        ("  mixed (REST, GraphQL)", f"{mix_total / soak.mix_elapsed:.0f}/s of {a.mix_rate:.0f}/s targeted"),
        ("shed (503 / UNAVAILABLE)", f"{shed} ({shed / max(req_total, 1):.2%})"),
        ("rate limited (429)", f"{limited}"),
        ("5xx other than 503", f"{bad5xx}"),
        ("wrk socket errors", f"{werrors}"),
        ("server CPU during load", f"{cpu_load / load_secs:.0%} of core 0"),
        ("RSS start / after probe / peak / after settle", f"{rss0 // 1024} / {rss_probe // 1024} / {rss_peak // 1024} / {rss1 // 1024} MiB"),
        ("threads before / after", f"{thr0} / {thr1}"),
        ("fds before / after", f"{fd0} / {fd1}"),
        ("streams after (readyz)", f"{streams_after}"),
        ("orders before / after", f"{ready0['orders']} / {ready1['orders']}"),
        ("acknowledged creates (201)", f"{len(soak.created)}"),
        ("lost acknowledged writes", f"{len(lost)}"),
        ("idempotent replays with another id", f"{soak.replay_mismatch}"),
        ("stream events seen (sse / ws / poll)", f"{soak.outcomes['sse']['events']} / {soak.outcomes['ws']['events']} / {soak.outcomes['long_poll']['events']}"),
        ("stream reconnects (resumes)", f"{reconnects}"),
        ("gaps announced by reset", f"{announced}"),
        ("stream gaps not announced", f"{gaps}"),
        ("unintended stream errors", f"{unintended}"),
        ("ws closes by server (code: n)", f"{dict(closes)}"),
        ("panics / ERROR lines in server log", f"{len(panics)} / {len(errors_logged)}"),
    ]
    print()
    print("| figure | value |\n|---|---|")
    for k, v in table:
        print(f"| {k} | {v} |")

    checks = {
        "memory back near start": mem_ok,
        "streams back to 0": streams_after == 0,
        "fds back near start": fd1 <= fd0 + 5,
        "no lost acknowledged write": not lost,
        "no unannounced stream gap": gaps == 0,
        "no unintended stream error": unintended == 0,
        "no 5xx other than 503": bad5xx == 0,
        "no request connection error": soak.outcomes and sum(o.get("conn_error", 0) for o in soak.outcomes.values()) == 0,
        "no idempotency replay mismatch": soak.replay_mismatch == 0,
        "no panic in server log": not panics,
    }
    print()
    for k, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {k}")
    if soak.failures:
        print("\nfirst failures:")
        for proto, d in soak.failures[:20]:
            print(f"  {proto}: {d}")
    if lost:
        print("lost:", lost[:20])
    for l in (panics + errors_logged)[:10]:
        print("  server:", l)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
