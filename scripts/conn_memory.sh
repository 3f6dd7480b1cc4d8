#!/usr/bin/env bash
# Server memory per idle streaming connection, and SSE/WebSocket fan-out, against a release build.
#
#   scripts/conn_memory.sh BIN_DIR KIND N [conn_memory flags...]
#
# BIN_DIR holds `polyport` and `examples/conn_memory` (e.g. target/release, or a copy of it);
# KIND is sse or ws; N the number of idle connections (1000 .. 10000). Extra flags go to
# conn_memory, e.g. `--fanout --rate 10 --seconds 10`. The server runs on core 0 and the client
# on core 1 (taskset), on 127.0.0.1 only; both stop by themselves when the run ends.
# EXTRA_PUSH adds lines to the server's [push] section (e.g. EXTRA_PUSH='ws_read_buffer_bytes = 1024');
# SERVER_ENV prefixes the server's command (e.g. SERVER_ENV='env LD_PRELOAD=...').
#
# It raises the open-file limit to the hard limit and starts the
# server with a configuration whose push.max_streams admits N streams (the default is 10000).
set -euo pipefail
bin_dir=${1:?BIN_DIR}
kind=${2:?sse or ws}
n=${3:?number of connections}
shift 3

# Each connection is one descriptor in the server and one in the client (separate processes).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 256)) ]; then
    echo "the open-file limit $(ulimit -n) is too low for $n connections" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
# Every connection comes from 127.0.0.1 and idles: past the default per-address and per-caller
# shares, and longer than the default idle timeout, so those are lifted for the measurement.
cat >"$work/polyport.toml" <<TOML
[server]
max_connections = $((n + 1000))
max_connections_per_ip = 0
idle_timeout = "1h"
[push]
max_streams = $((n + 1000))
max_streams_per_caller = 0
${EXTRA_PUSH:-}
TOML

port=${PORT:-18090}
# Authentication and rate limits off: the measuring client sends no credentials.
${SERVER_ENV:-} taskset -c 0 "$bin_dir/polyport" serve --addr "127.0.0.1:$port" --config "$work/polyport.toml" \
    --insecure-no-auth --no-rate-limit >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    grep -q "listening" "$work/server.log" && break
    sleep 0.1
done
grep -q "listening" "$work/server.log" || { cat "$work/server.log"; exit 1; }
# A few ordinary requests first, so start-up allocations are not counted per connection.
for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/v1/orders/1"; done
sleep 1
timeout 300 taskset -c 1 "$bin_dir/examples/conn_memory" --target "127.0.0.1:$port" \
    --pid "$server" --kind "$kind" --n "$n" "$@"
