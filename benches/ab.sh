#!/usr/bin/env bash
# A/B of two lastmile binaries on the same `lastmile bench` workloads,
# alternating A and B so drift of this shared machine hits both alike.
#
#   benches/ab.sh BEFORE_BIN AFTER_BIN [ROUNDS]      (default 2 rounds)
#
# One line per run: workload, binary, Ping p50 and throughput, ReportIncident
# p50 and throughput, their ratios, CPU per report, and how many incidents
# found every unit they needed. Workloads are those of BENCHMARKS.md: c=1 and
# c=64 in memory (uniform), c=64 durable (uniform, a fresh journal each run)
# and the typhoon burst of 10 000.
set -euo pipefail
A="$1"; B="$2"; ROUNDS="${3:-2}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lastmile-ab.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
workloads=(
  "c1|--incidents 5000 --concurrency 1 --scenario uniform --seed 13510"
  "c64|--incidents 5000 --concurrency 64 --scenario uniform --seed 13510"
  "c64-durable|--incidents 5000 --concurrency 64 --scenario uniform --seed 13510 --data-dir JOURNAL"
  "burst|--incidents 10000 --burst --concurrency 64 --scenario typhoon --seed 13510"
)
summary() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
p, r, x = d["ping"], d["report_incident"], d["dispatch"]
burst = d.get("burst") or {}
print("ping p50 %5d us %7.0f/s | report p50 %6d us %7.0f/s | p50 x%.2f thr %3.0f%% | cpu/report %4.0f us | fully paged %d/%d%s" % (
  p["latency_us"]["p50"], p["throughput_per_s"], r["latency_us"]["p50"], r["throughput_per_s"],
  d["ratios"]["p50_report_over_ping"], 100 * d["ratios"]["throughput_report_over_ping"],
  d["cpu"]["report_us_per_op"] or 0, x["incidents_fully_paged"], d["incidents"],
  " | burst to last page %.2f s" % burst["first_send_to_last_page_delivered_s"] if "--burst" in sys.argv[1] else ""))
' "$1"
}
for round in $(seq "$ROUNDS"); do
  for w in "${workloads[@]}"; do
    name="${w%%|*}"; args="${w#*|}"
    for bin in "$A" "$B"; do
      rm -rf "$WORK/journal"
      run_args="${args//JOURNAL/$WORK/journal}"
      # shellcheck disable=SC2086
      out="$("$bin" bench $run_args --json --chart "$WORK/chart.svg" 2>/dev/null)"
      printf '%-12s %-22s ' "$name" "$(basename "$bin")"
      summary "$run_args" <<<"$out"
    done
  done
done
