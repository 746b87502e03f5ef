#!/usr/bin/env bash
# Durability targets of issue 12, in-memory and durable runs of the same
# `lastmile bench` command, alternated (in memory, then durable), PAIRS times:
#
#   1. durable ReportIncident p50 at concurrency 1 <= in-memory p50 + 1.5 x
#      the fsync p50 that the durable run's probe measured (4 KiB +
#      fdatasync in its data folder, before its load);
#   2. durable ReportIncident throughput at concurrency 64 >= 50% of
#      in-memory, with a fleet big enough that most reports are fully paged
#      (--fleet-scale).
#
#   benches/durability.sh [PAIRS] [BINARY]     (3, target/release/lastmile)
#
# Each durable run gets a fresh journal under $TMPDIR (deleted after it).
# Environment: C1_INCIDENTS (3000), C64_INCIDENTS (10000), FLEET_SCALE (8),
# OPEN_INCIDENTS (20), SEED (13510); OUT (a folder: keeps every run's JSON);
# REUSE=1 with OUT: only print the checks of the runs already in OUT.
set -euo pipefail

pairs=${1:-3}
bin=${2:-target/release/lastmile}
c1_incidents=${C1_INCIDENTS:-3000}
c64_incidents=${C64_INCIDENTS:-10000}
fleet_scale=${FLEET_SCALE:-8}
open_incidents=${OPEN_INCIDENTS:-20}
seed=${SEED:-13510}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
[ -x "$bin" ] || { echo "no binary $bin (cargo build --release -p lastmile --locked)" >&2; exit 2; }

c1=(bench --incidents "$c1_incidents" --pings 1000 --concurrency 1 --scenario uniform --seed "$seed")
c64=(bench --incidents "$c64_incidents" --pings 5000 --concurrency 64 --scenario uniform --seed "$seed"
     --fleet-scale "$fleet_scale" --open-incidents "$open_incidents")

# run NAME ARGS...: one bench run, its JSON in $out/NAME.json
run() {
  local name=$1; shift
  "$bin" "$@" --json --chart "$out/$name.svg" >"$out/$name.json" 2>"$out/$name.err" \
    || { echo "$name failed:"; tail -5 "$out/$name.err"; exit 1; }
}
durable() {
  local name=$1; shift
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/lastmile-durability-XXXXXX")
  run "$name" "$@" --data-dir "$dir"
  rm -rf "$dir"
}
j() { jq -r "$2" "$out/$1.json"; }

echo "commands (alternated, $pairs pairs; JSON in $out):"
echo "  $bin ${c1[*]} [--data-dir FRESH]"
echo "  $bin ${c64[*]} [--data-dir FRESH]"
echo

if [ "${REUSE:-0}" != 1 ]; then
  for i in $(seq 1 "$pairs"); do
    run "c1-mem-$i" "${c1[@]}"
    durable "c1-dur-$i" "${c1[@]}"
  done
  for i in $(seq 1 "$pairs"); do
    run "c64-mem-$i" "${c64[@]}"
    durable "c64-dur-$i" "${c64[@]}"
  done
fi

met1=0; met3=0
echo "1. ReportIncident p50 at concurrency 1: durable <= in-memory + 1.5 x fsync p50 (same durable run)"
echo "   (fsync: the probe before the load, as the target says; loaded: the probe during the reports, one round per 20 ms)"
printf '   %-4s %10s %10s %10s %10s %10s %8s %12s %12s  %s\n' pair mem_p50 fsync_p50 budget dur_p50 dur-mem met loaded_p50 loaded_budget 'fully paged (mem / dur)'
for i in $(seq 1 "$pairs"); do
  m=$(j "c1-mem-$i" '.report_incident.latency_us.p50')
  d=$(j "c1-dur-$i" '.report_incident.latency_us.p50')
  f=$(j "c1-dur-$i" '.fsync.p50_us')
  l=$(j "c1-dur-$i" '.fsync_during_load.p50_us // 0')
  budget=$(( m + (3 * f) / 2 ))
  ok=no; [ "$d" -le "$budget" ] && { ok=yes; met1=$((met1 + 1)); }
  printf '   %-4s %8sµs %8sµs %8sµs %8sµs %8sµs %8s %10sµs %10sµs  %s / %s of %s\n' "$i" "$m" "$f" "$budget" "$d" $((d - m)) "$ok" \
    "$l" $(( m + (3 * l) / 2 )) \
    "$(j "c1-mem-$i" .dispatch.incidents_fully_paged)" "$(j "c1-dur-$i" .dispatch.incidents_fully_paged)" "$c1_incidents"
done
echo "   met in $met1 of $pairs pairs"
echo
echo "3. ReportIncident throughput at concurrency 64 (fleet x$fleet_scale, $open_incidents kept open): durable >= 50% of in-memory"
printf '   %-4s %10s %10s %8s %5s  %s  %s\n' pair mem/s dur/s ratio met 'fully paged (mem / dur)' 'CPU per report (mem / dur)'
for i in $(seq 1 "$pairs"); do
  m=$(j "c64-mem-$i" '.report_incident.throughput_per_s')
  d=$(j "c64-dur-$i" '.report_incident.throughput_per_s')
  ratio=$(jq -n "$d / $m")
  ok=no; jq -e -n "$ratio >= 0.5" >/dev/null && { ok=yes; met3=$((met3 + 1)); }
  printf '   %-4s %8.0f/s %8.0f/s %7.0f%% %5s  %s / %s of %s  %.0f / %.0f µs\n' "$i" "$m" "$d" "$(jq -n "$ratio * 100")" "$ok" \
    "$(j "c64-mem-$i" .dispatch.incidents_fully_paged)" "$(j "c64-dur-$i" .dispatch.incidents_fully_paged)" "$c64_incidents" \
    "$(j "c64-mem-$i" .cpu.report_us_per_op)" "$(j "c64-dur-$i" .cpu.report_us_per_op)"
done
echo "   met in $met3 of $pairs pairs"
