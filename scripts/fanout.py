#!/usr/bin/env python3
"""SSE and WebSocket fan-out, polyport against the Node.js peer, for BENCHMARKS.md.

    scripts/fanout.py POLYPORT FANOUT_LOAD [--node DIR] [--runs 3] [--seconds 10]
                      [--cases sse:2000:10,sse:10000:5,ws:10000:5] [--label NAME]

POLYPORT is a release build of polyport; FANOUT_LOAD is `../shared/fanout-load` built with
`cargo build --release` (copied out of shared/ first); --node DIR is a copy of
`../shared/peers/node` with `npm install` done. Each case is TRANSPORT:SUBSCRIBERS:ORDERS_PER_S.

In each round every case runs against a fresh polyport and then a fresh Node peer, so the two
figures of a case are measured minutes apart at most. The server runs alone on core 0 and
fanout-load on core 1. fanout-load opens the subscribers, reads the server's RSS before and
after (KiB per connection), creates orders over REST at the given rate, and reports delivery
latency and the server's CPU time per delivered event. A run counts only when every event
reached every subscriber with no disconnect; otherwise the script says so and stops. The table
gives the median of each figure over the rounds. Everything targets 127.0.0.1 and stops by
itself.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadtest import PORT, start_server, stop_server  # noqa: E402


def parse(out):
    """The figures of one fanout-load run, or an error naming what went wrong."""
    delivered = re.search(r"delivered (\d+) \(([\d.]+)%\), duplicates (\d+)", out)
    errors = re.search(r"disconnects (\d+) .*connect failures (\d+), no subscribe ack (\d+)", out)
    if not delivered or not errors:
        raise RuntimeError(f"unexpected fanout-load output:\n{out}")
    if float(delivered.group(2)) < 100.0 or int(delivered.group(3)) or any(
            int(n) for n in errors.groups()):
        raise RuntimeError(f"a run lost, repeated or refused events:\n{out}")
    return {
        "p99_ms": float(re.search(r"p99 ([\d.]+)", out).group(1)),
        "kib_per_conn": float(re.search(r"-> ([\d.]+) KiB/conn", out).group(1)),
        "us_per_event": float(re.search(r"\(([\d.]+) us/delivered event\)", out).group(1)),
        "events_per_s": float(re.search(r"delivered/s\s+(\d+)", out).group(1)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("polyport")
    parser.add_argument("fanout_load")
    parser.add_argument("--node", help="a copy of the Node peer with npm install done")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--cases", default="sse:2000:10,sse:10000:5,ws:10000:5")
    parser.add_argument("--label", default="polyport")
    args = parser.parse_args()

    config = tempfile.NamedTemporaryFile("w", prefix="pp-fanout-", suffix=".toml", delete=False)
    # Room for every subscriber: the default stream cap (10 000) is below the largest case,
    # and every subscriber comes from 127.0.0.1, past the default per-address and per-caller
    # shares (1 000 each).
    config.write("[server]\nmax_connections = 60000\nmax_connections_per_ip = 0\n"
                 "[push]\nmax_streams = 50000\nmax_streams_per_caller = 0\n")
    config.close()
    # Authentication and rate limits off (the gate still runs): fanout-load sends no
    # credentials. The access log stays on, as by default.
    servers = {args.label: ([args.polyport, "serve", "--addr", f"127.0.0.1:{PORT}",
                             "--insecure-no-auth", "--no-rate-limit", "--config", config.name],
                            "order_id")}
    if args.node:
        servers["node"] = ((["node", "server.mjs"], [f"PORT={PORT}", "HOST=127.0.0.1"],
                            args.node), "id")
    cases = [tuple(c.split(":")) for c in args.cases.split(",")]
    results = {}
    for run in range(args.runs):
        for transport, subscribers, rate in cases:
            for name, (cmd, id_key) in servers.items():
                proc = start_server(cmd)
                try:
                    out = subprocess.run(
                        ["taskset", "-c", "1", args.fanout_load,
                         "--target", f"http://127.0.0.1:{PORT}", "--transport", transport,
                         "--subscribers", subscribers, "--rate", rate,
                         "--duration", f"{args.seconds}s", "--server-pid", str(proc.pid),
                         "--id-key", id_key],
                        capture_output=True, text=True, timeout=300).stdout
                finally:
                    stop_server(proc)
                figures = parse(out)
                key = (f"{transport} {subscribers} x {rate}/s", name)
                results.setdefault(key, []).append(figures)
                print(f"run {run + 1}: {key[0]:<20} {name:<10} {figures}", flush=True)

    print()
    print("| case | server | delivered/s | p99 ms | KiB/conn | server us/event |")
    print("|---|---|---:|---:|---:|---:|")
    for (case, name), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {case} | {name} | {med['events_per_s']:.0f} | {med['p99_ms']:.1f} "
              f"| {med['kib_per_conn']:.1f} | {med['us_per_event']:.2f} |")


if __name__ == "__main__":
    main()
