#!/usr/bin/env bash
# Durable ReportIncident on the PostgreSQL journal next to SQLite and the
# memory journal, rotated (memory, SQLite, PostgreSQL), PAIRS rounds, at
# concurrency 1 and 64; every run measures its own Ping (the floor) and
# says how many reports were fully paged.
#
#   eval "$(bash .ci/postgres.sh)"           # a PostgreSQL server: LASTMILE_TEST_PG_URL
#   benches/postgres.sh [ROUNDS] [BINARY]    (2, target/release/lastmile)
#
# SQLite runs get a fresh --data-dir; PostgreSQL runs the bench's own schema
# (--postgres-schema lastmile_bench, emptied by the bench). The database is
# the one LASTMILE_TEST_PG_URL names, on this machine: its fsyncs share the
# disk and its processes the 2 cores with the bench.
# Environment: OUT (a folder: keeps every run's JSON), SEED (13510).
set -euo pipefail

rounds=${1:-2}
bin=${2:-target/release/lastmile}
seed=${SEED:-13510}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
[ -x "$bin" ] || { echo "no binary $bin (cargo build --release -p lastmile --locked)" >&2; exit 2; }
: "${LASTMILE_TEST_PG_URL:?set it: eval \"\$(bash .ci/postgres.sh)\"}"

c1=(bench --incidents 3000 --pings 1000 --concurrency 1 --scenario uniform --seed "$seed" --fleet-scale 4 --open-incidents 8)
c64=(bench --incidents 10000 --pings 5000 --concurrency 64 --scenario uniform --seed "$seed" --fleet-scale 8 --open-incidents 20)

run() {
  local name=$1; shift
  "$bin" "$@" --json --chart "$out/$name.svg" >"$out/$name.json" 2>"$out/$name.err" \
    || { echo "$name failed:"; tail -5 "$out/$name.err"; exit 1; }
}
sqlite() {
  local name=$1; shift
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/lastmile-pgbench-XXXXXX")
  run "$name" "$@" --data-dir "$dir"
  rm -rf "$dir"
}
j() { jq -r "$2" "$out/$1.json"; }

echo "commands (rotated, $rounds rounds; JSON in $out):"
echo "  $bin ${c1[*]} [--data-dir FRESH | --postgres \$LASTMILE_TEST_PG_URL]"
echo "  $bin ${c64[*]} [--data-dir FRESH | --postgres \$LASTMILE_TEST_PG_URL]"
echo
for i in $(seq 1 "$rounds"); do
  for c in c1 c64; do
    declare -n args=$c
    run "$c-mem-$i" "${args[@]}"
    sqlite "$c-sqlite-$i" "${args[@]}"
    run "$c-pg-$i" "${args[@]}" --postgres "$LASTMILE_TEST_PG_URL"
  done
done
for c in c1 c64; do
  echo "concurrency ${c#c}:"
  printf '   %-6s %-7s %10s %12s %12s %12s %14s  %s\n' round journal ping_p50 report_p50 report_p90 report_p99 throughput 'fully paged'
  for i in $(seq 1 "$rounds"); do
    for k in mem sqlite pg; do
      n="$c-$k-$i"
      printf '   %-6s %-7s %8sµs %10sµs %10sµs %10sµs %12.0f/s  %s of %s\n' "$i" "$k" \
        "$(j "$n" '.ping.latency_us.p50')" "$(j "$n" '.report_incident.latency_us.p50')" \
        "$(j "$n" '.report_incident.latency_us.p90')" "$(j "$n" '.report_incident.latency_us.p99')" \
        "$(j "$n" '.report_incident.throughput_per_s')" "$(j "$n" '.dispatch.incidents_fully_paged')" "$(j "$n" '.incidents')"
    done
  done
done
