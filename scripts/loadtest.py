#!/usr/bin/env python3
"""Independent-tool load tests for BENCHMARKS.md: wrk (REST, GraphQL, bare hyper), h2load (gRPC,
bare tonic) and examples/ws_roundtrip (WebSocket commands), against release builds.

    scripts/loadtest.py BIN_DIR [--runs 3] [--seconds 10] [--connections 64]
                        [--only rest,rest_include,graphql,grpc,ws,hello_hyper,hello_tonic]
                        [--preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2] [--label NAME]
                        [--server-env RUST_LOG=warn] [--node DIR] [--before DIR]

BIN_DIR holds polyport and examples/{hello_hyper,hello_tonic,ws_roundtrip} from the same release
profile. Each server runs alone on core 0 and the load generator on core 1 (taskset), so they
do not compete for a core. There are --runs rounds; in each, every workload gets a fresh server,
a 2 s warm-up and one timed run. The table shows the median of each figure over the rounds, and
the server's CPU time per run comes from
/proc/PID/stat (utime + stime) read before and after. Everything targets 127.0.0.1 and stops
by itself. --preload starts the server with LD_PRELOAD (to compare allocators on one binary).

--node DIR adds the Node.js peer (a copy of ../shared/peers/node with `npm install` done) as
node_rest, node_graphql (mercurius with graphql-jit) and node_grpc, measured in the same rounds.
--before DIR adds an earlier build's polyport (DIR/polyport) as rest_before, rest_nested_before,
graphql_before and grpc_before, so "before" and "after" are measured in the same rounds.
Before each timed run one request is sent and its answer checked (2xx, and no GraphQL
`errors`), so a figure never counts fast failures.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
PORT = 18080
GRAPHQL_QUERY = (
    '{ order(id: "1") { id status totalCents currency createdAt version '
    "customer { id name email } "
    "items { id quantity unitPriceCents product { id name priceCents currency } } } }"
)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_server(cmd, preload=None, extra_env=()):
    if isinstance(cmd, tuple):  # (argv, env, cwd): the Node peer
        cmd, peer_env, cwd = cmd
        extra_env = [*extra_env, *peer_env]
    else:
        cwd = None
    env = dict(os.environ)
    if preload:
        env["LD_PRELOAD"] = preload
    for pair in extra_env:
        key, _, value = pair.partition("=")
        env[key] = value
    log = tempfile.NamedTemporaryFile(prefix="pp-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=log, stderr=log, env=env,
                            cwd=cwd)
    # Ready when the port accepts a connection (the "listening" log line may be filtered out).
    for _ in range(300):
        time.sleep(0.1)
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
    proc.kill()
    with open(log.name) as f:
        raise RuntimeError(f"server did not start: {cmd}: {f.read()[-2000:]}")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out):
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"requests": requests, "p99_ms": p99, "errors": errors}


def parse_h2load(out):
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    status = re.search(r"status codes: (\d+) 2xx", out)
    return {"requests": int(m.group(1)), "p99_ms": None, "errors": int(m.group(2)),
            "http_2xx": int(status.group(1)) if status else None}


def parse_ws(out):
    m = re.search(r"round_trips (\d+) errors (\d+)", out)
    return {"requests": int(m.group(1)), "p99_ms": None, "errors": int(m.group(2))}


def check_answer(path, body=None):
    """One request, answer checked: 2xx, and for GraphQL no `errors`."""
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
        assert 200 <= response.status < 300, (path, response.status, text[:300])
    if path == "/graphql":
        answer = json.loads(text)
        assert "errors" not in answer and answer["data"]["order"]["customer"], text[:300]
    return text


def workloads(bin_dir, conns, tmp, node_dir=None):
    url = f"http://127.0.0.1:{PORT}"
    # Authentication and rate limits off (the gate still runs): the independent tools send no
    # credentials, and a load test is far over any sane per-caller quota.
    polyport = [f"{bin_dir}/polyport", "serve", "--addr", f"127.0.0.1:{PORT}",
                "--insecure-no-auth", "--no-rate-limit"]
    lua = os.path.join(tmp, "graphql.lua")
    with open(lua, "w") as f:
        body = json.dumps({"query": GRAPHQL_QUERY}).replace("\\", "\\\\").replace('"', '\\"')
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.body = "{body}"\n')
    grpc_body = os.path.join(tmp, "get_order.bin")
    with open(grpc_body, "wb") as f:
        # One gRPC frame: uncompressed flag, 4-byte length, GetOrderRequest { id: "1" }.
        message = b"\x0a\x011"
        f.write(b"\x00" + len(message).to_bytes(4, "big") + message)

    def wrk(path, extra=()):
        return lambda secs: (["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", *extra,
                              f"{url}{path}"], parse_wrk)

    def h2load(secs):
        return (["h2load", "-c", str(conns), "-m", "1", "-D", str(secs), "-d", grpc_body,
                 "-H", "content-type: application/grpc", "-H", "te: trailers",
                 f"{url}/polyport.orders.v1.Orders/GetOrder"], parse_h2load)

    def ws(secs):
        return ([f"{bin_dir}/examples/ws_roundtrip", "--target", f"127.0.0.1:{PORT}",
                 "--connections", str(conns), "--seconds", str(secs)], parse_ws)

    hello_hyper = [f"{bin_dir}/examples/hello_hyper", "--addr", f"127.0.0.1:{PORT}"]
    hello_tonic = [f"{bin_dir}/examples/hello_tonic", "--addr", f"127.0.0.1:{PORT}"]
    graphql_body = json.dumps({"query": GRAPHQL_QUERY}).encode()
    table = {
        "hello_hyper": (hello_hyper, wrk("/")),
        "rest": (polyport, wrk("/v1/orders/1"), "/v1/orders/1"),
        "rest_include": (polyport, wrk("/v1/orders/1?include=customer,items"),
                         "/v1/orders/1?include=customer,items"),
        # The same data as the GraphQL query: the order, its customer, each item's product.
        "rest_nested": (polyport, wrk("/v1/orders/1?include=customer,items.product"),
                        "/v1/orders/1?include=customer,items.product"),
        "graphql": (polyport, wrk("/graphql", ("-s", lua)), "/graphql", graphql_body),
        "hello_tonic": (hello_tonic, h2load),
        "grpc": (polyport, h2load),
        "ws": (polyport, ws),
    }
    if node_dir:
        node = (["node", "server.mjs"], [f"PORT={PORT}", "HOST=127.0.0.1"], node_dir)
        node_jit = (["node", "server.mjs"], [f"PORT={PORT}", "HOST=127.0.0.1", "GRAPHQL_JIT=1"],
                    node_dir)

        def node_h2load(secs):
            cmd, parse = h2load(secs)
            return [arg.replace(f":{PORT}/", f":{PORT + 1}/") for arg in cmd], parse

        table["node_rest"] = (node, wrk("/v1/orders/1"), "/v1/orders/1")
        table["node_graphql"] = (node_jit, wrk("/graphql", ("-s", lua)), "/graphql", graphql_body)
        table["node_grpc"] = (node, node_h2load)
    return table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", default="hello_hyper,rest,rest_include,graphql,hello_tonic,grpc,ws")
    parser.add_argument("--preload")
    parser.add_argument("--server-env", action="append", default=[],
                        help="KEY=VALUE for the server, e.g. RUST_LOG=warn (repeatable)")
    parser.add_argument("--label", default="")
    parser.add_argument("--node", help="a copy of the Node peer with npm install done")
    parser.add_argument("--before", help="a directory with an earlier build's polyport")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="pp-load-")
    node_dir = os.path.abspath(args.node) if args.node else None
    table = workloads(os.path.abspath(args.bin_dir), args.connections, tmp, node_dir)
    if args.before:
        earlier = workloads(os.path.abspath(args.before), args.connections, tmp)
        for name in ("rest", "rest_include", "rest_nested", "graphql", "grpc"):
            table[f"{name}_before"] = earlier[name]
    names = args.only.split(",")
    runs = {name: [] for name in names}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    # Rounds outside, workloads inside: the machine is shared, and interleaving puts a baseline
    # and the run it is compared with as close together in time as possible.
    for _ in range(args.runs):
        for name in names:
            server_cmd, load, *check = table[name]
            server = start_server(server_cmd, args.preload, args.server_env)
            try:
                if check:
                    check_answer(*check)
                cmd, _ = load(2)
                subprocess.run(["taskset", "-c", "1", *cmd], capture_output=True, check=True,
                               timeout=60)
                cmd, parse = load(args.seconds)
                before = cpu_seconds(server.pid)
                out = subprocess.run(["taskset", "-c", "1", *cmd], capture_output=True,
                                     text=True, check=True, timeout=args.seconds + 60).stdout
                cpu = cpu_seconds(server.pid) - before
                run = parse(out)
                run["req_s"] = run["requests"] / args.seconds
                run["server_cpu_s"] = cpu
                run["per_cpu_s"] = run["requests"] / cpu if cpu else None
                run["rss_kib"] = rss_kib(server.pid)
            finally:
                stop_server(server)
            runs[name].append(run)
    results = {}
    for name in names:
        med = {key: statistics.median(r[key] for r in runs[name])
               for key in ("req_s", "per_cpu_s", "server_cpu_s", "errors", "rss_kib")}
        p99s = [r["p99_ms"] for r in runs[name] if r["p99_ms"] is not None]
        med["p99_ms"] = statistics.median(p99s) if p99s else None
        results[name] = {"median": med, "runs": runs[name]}
        p99 = f"{med['p99_ms']:.2f}" if med["p99_ms"] is not None else "-"
        print(f"{args.label:10} {name:13} req/s {med['req_s']:>9.0f}  p99 ms {p99:>6}  "
              f"per server CPU-s {med['per_cpu_s']:>9.0f}  server CPU s {med['server_cpu_s']:.2f}  "
              f"errors {med['errors']:.0f}  RSS KiB {med['rss_kib']:.0f}  runs req/s "
              f"{[round(r['req_s']) for r in runs[name]]}", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    out = os.path.join(tmp, "results.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"raw figures: {out}")


if __name__ == "__main__":
    main()
