#!/usr/bin/env bash
# CI: the OpenAPI document checked against the real server by schemathesis
# (property-based: requests generated from the document, every answer checked
# against it).
#
#   .ci/schemathesis.sh [BIN]     BIN: the lastmile binary (default target/debug/lastmile)
#
# How to run it: build the binary (`cargo build -p lastmile`), then run
# `.ci/schemathesis.sh`. It makes a venv in target/schemathesis-venv, installs
# tests/schemathesis/requirements.txt (schemathesis pinned, every package with
# its hashes), starts `BIN serve --in-memory` on free loopback ports with auth
# on (a dispatcher and an admin token, no rate limit worth the name), and runs
# schemathesis against the served `/openapi.json`: every operation except the
# `/v1/events` stream (an SSE response never ends, so a generated request would
# only time out; tests/gateway.rs covers it), with SEED (below) as its seed, at
# most MAX_EXAMPLES cases per operation and phase, and every check
# (`--checks all`: no 5xx, status codes, content types, headers and bodies as
# documented, invalid requests refused, valid ones accepted, auth enforced).
# The dispatcher token runs every operation it may call; the admin token the
# three only an admin may (PUT /v1/units/{id}, the webhook dead letters).
# Replay a run with `SCHEMATHESIS_SEED=<seed>`; `SCHEMATHESIS_MAX_EXAMPLES=<n>`
# changes the count. Failures are printed with a curl line that reproduces
# them; JUnit reports are left in target/schemathesis-report/. Its last line is
# `schemathesis: N passed, N failed` (one per token's run). Needs python3
# (3.9+, with venv) and PyPI for the install; the run itself is offline
# (schemathesis 4 has no telemetry or upload; the example database is off).
set -euo pipefail

SEED="${SCHEMATHESIS_SEED:-13510}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-300}"
SERVER_START_TIMEOUT_S=60   # for the "lastmile http listening on ADDR" line
PIP_TIMEOUT_S=600           # the whole pip install
RUN_TIMEOUT_S=600           # each schemathesis run
SERVER_STOP_TIMEOUT_S=10    # after SIGTERM, before SIGKILL

if [[ $# -ge 1 ]]; then
  BIN="$(realpath -m -- "$1")"
fi
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${BIN:-$PWD/$TARGET/debug/lastmile}"
PYTHON="${PYTHON:-python3}"
VENV="$TARGET/schemathesis-venv"
REPORTS="$TARGET/schemathesis-report"

# shellcheck source=.ci/server.sh
source .ci/server.sh
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lastmile-schemathesis.XXXXXX")"
PASSED=0
FAILED=0

# A step before the runs' end failed: it counts as one more failure.
early_failure_line() { echo "schemathesis: $PASSED passed, $((FAILED + 1)) failed"; }
trap_finish_step

echo "== schemathesis: venv and requirements"
[[ -x "$BIN" ]] || { echo "no executable lastmile binary at $BIN (build it, or pass its path)"; exit 1; }
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
timeout "$PIP_TIMEOUT_S" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  --require-hashes -r tests/schemathesis/requirements.txt
"$VENV/bin/schemathesis" --version

echo "== schemathesis: server ($BIN, auth on)"
# The repository's config (copied whole, so its dataset paths still resolve)
# with auth on: the tokens are read from the environment (token_env).
cp -R config "$WORK/config"
cat >>"$WORK/config/lastmile.toml" <<'EOF'

# Added by .ci/schemathesis.sh: auth on, one token per role the run uses,
# rates high enough that no generated request meets a 429.
[auth]
enabled = true
default_rate_per_s = 1000000.0
default_burst = 1000000

[[auth.tokens]]
name = "schemathesis-dispatcher"
role = "dispatcher"
token_env = "LASTMILE_SCHEMATHESIS_DISPATCHER_TOKEN"

[[auth.tokens]]
name = "schemathesis-admin"
role = "admin"
token_env = "LASTMILE_SCHEMATHESIS_ADMIN_TOKEN"
EOF
DISPATCHER_TOKEN="schemathesis-dispatcher-$SEED"
ADMIN_TOKEN="schemathesis-admin-$SEED"
LASTMILE_SCHEMATHESIS_DISPATCHER_TOKEN="$DISPATCHER_TOKEN" LASTMILE_SCHEMATHESIS_ADMIN_TOKEN="$ADMIN_TOKEN" \
  "$BIN" serve --config "$WORK/config/lastmile.toml" --in-memory \
  --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!

wait_for_ready_line 2 "lastmile http listening on"
echo "server http listening on $ADDR"

# What schemathesis cannot learn from the document, each with its reason.
# (On the command line below: `--checks all` less positive_data_acceptance,
# "schema-valid request rejected". The document states what JSON Schema can,
# and in words what it cannot, so a request valid by the schema may rightly
# be refused with 400: byte bounds on ids and texts (at most 128 bytes of
# UTF-8, where maxLength counts characters), grid_id checked against the
# location's cell, the report's "exactly one of week, month, or from and to"
# and its 367-day range, opaque page tokens. Every other check stays on, the
# refusal of invalid requests included.)
cat >"$WORK/schemathesis.toml" <<'EOF'
# Page tokens are opaque: only one this server issued is valid. The runs ask
# for first pages, so the filters and page sizes reach the listing; the
# next_page_token round trip is in tests/gateway.rs.
[parameters]
"page_token" = ""
EOF

run_schemathesis() {
  local name="$1" token="$2"
  shift 2
  echo "== schemathesis: $name (seed $SEED, at most $MAX_EXAMPLES cases per operation and phase)"
  local status=0
  timeout "$RUN_TIMEOUT_S" "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" \
    run "http://$ADDR/openapi.json" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --workers 1 \
    --request-timeout 10 \
    --header "Authorization: Bearer $token" \
    --report junit --report-junit-path "$REPORTS/$name.xml" \
    --no-color \
    "$@" || status=$?
  if [[ $status -eq 124 ]]; then
    echo "schemathesis ($name) did not finish within ${RUN_TIMEOUT_S} s"
  fi
  if [[ $status -eq 0 ]]; then
    PASSED=$((PASSED + 1))
  else
    FAILED=$((FAILED + 1))
  fi
}

mkdir -p "$REPORTS"
# SSE never ends; the admin-only operations are the admin run's.
run_schemathesis dispatcher "$DISPATCHER_TOKEN" \
  --exclude-path /v1/events --exclude-path-regex '^/v1/admin/' --exclude-method PUT
run_schemathesis admin "$ADMIN_TOKEN" \
  --include-path-regex '^/v1/admin/' --include-method PUT

stop_server
echo "schemathesis: $PASSED passed, $FAILED failed"
RESULT_PRINTED=1
[[ $FAILED -eq 0 ]]
