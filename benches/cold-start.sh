#!/usr/bin/env bash
# Cold start: how long `lastmile serve` on an existing journal takes to be
# ready, i.e. to print its "lastmile listening on ADDR" line (recovery of the
# live state, the idempotency cache and the timers comes before it).
#
#   benches/cold-start.sh DIR [BINARY]      (BINARY: target/release/lastmile)
#
# Drops the page cache first (`sync; echo 3 > /proc/sys/vm/drop_caches`,
# needs root; if that is refused the run is WARM and says so), starts the
# server with `--listen 127.0.0.1:0 --no-http`, times the ready line from just
# before the start (so the binary's own load from disk counts), prints the
# server's "recovered ... elapsed_ms" log line, then stops it with SIGINT.
# WARM=1 skips the drop (a warm start, for comparison).
set -euo pipefail

dir=${1:?usage: benches/cold-start.sh DIR [BINARY]}
bin=${2:-target/release/lastmile}
[ -d "$dir" ] || { echo "no journal folder $dir" >&2; exit 2; }
[ -x "$bin" ] || { echo "no binary $bin (cargo build --release -p lastmile --locked)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkfifo "$work/stdout"

sync
if [ "${WARM:-0}" = 1 ]; then
  cache="warm (WARM=1: page cache not dropped)"
elif { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
  cache="cold (page cache dropped)"
else
  cache="WARM (drop_caches not permitted here)"
fi

start_ns=$(date +%s%N)
RUST_LOG=${RUST_LOG:-info} "$bin" serve --data-dir "$dir" --listen 127.0.0.1:0 --no-http \
  >"$work/stdout" 2>"$work/log" &
pid=$!
exec 3<"$work/stdout"
if ! IFS= read -r -t 300 line <&3; then
  echo "the server printed no ready line within 300 s; its log:" >&2
  cat "$work/log" >&2
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || true
  exit 1
fi
ready_ns=$(date +%s%N)

kill -INT "$pid"
wait "$pid" || true
exec 3<&-

echo "cache: $cache"
echo "ready line: $line"
echo "start to ready: $(( (ready_ns - start_ns) / 1000000 )) ms"
grep -a 'recovered' "$work/log" | sed 's/\x1b\[[0-9;]*m//g' || echo "(no \"recovered\" log line: a fresh journal?)"
