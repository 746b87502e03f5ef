#!/usr/bin/env bash
# CI: the Python client example (docs/examples/python/) against the real server.
#
#   .ci/python-example.sh [BIN]     BIN: the lastmile binary (default target/debug/lastmile)
#
# Makes a throwaway venv, installs the pinned requirements from PyPI, generates
# the gRPC stubs from proto/ with grpcio-tools, starts `BIN serve --in-memory`
# on free loopback ports, runs the example against it, stops the server and
# exits with the example's status. Its last line is
# `python example: 1 passed, 0 failed` (or `0 passed, 1 failed`).
# Needs python3 (3.9+, with venv) and PyPI; every step has a time limit.
set -euo pipefail

SERVER_START_TIMEOUT_S=60   # for the "lastmile listening on ADDR" line
PIP_TIMEOUT_S=600           # the whole pip install
EXAMPLE_TIMEOUT_S=120       # the example (each of its calls has a 10 s deadline)
SERVER_STOP_TIMEOUT_S=10    # after SIGTERM, before SIGKILL

# The binary: an argument is relative to the caller's directory; the default
# is relative to the repository.
if [[ $# -ge 1 ]]; then
  BIN="$(realpath -m -- "$1")"
fi
cd "$(dirname "$0")/.."
BIN="${BIN:-$PWD/${CARGO_TARGET_DIR:-target}/debug/lastmile}"
PYTHON="${PYTHON:-python3}"

# shellcheck source=.ci/server.sh
source .ci/server.sh
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lastmile-python-example.XXXXXX")"

# A step before the example failed: it counts as the example failing.
early_failure_line() { echo "python example: 0 passed, 1 failed"; }
trap_finish_step

echo "== python example: venv and requirements"
[[ -x "$BIN" ]] || { echo "no executable lastmile binary at $BIN (build it, or pass its path)"; exit 1; }
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
timeout "$PIP_TIMEOUT_S" "$VPY" -m pip install --quiet --disable-pip-version-check \
  -r docs/examples/python/requirements.txt

echo "== python example: stubs from proto/"
mkdir -p "$WORK/stubs"
"$VPY" -m grpc_tools.protoc -I proto \
  --python_out="$WORK/stubs" --grpc_python_out="$WORK/stubs" proto/lastmile/v1/*.proto

echo "== python example: server ($BIN)"
"$BIN" serve --in-memory --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!

wait_for_ready_line 1 "lastmile listening on"
echo "server listening on $ADDR"

echo "== python example: run"
set +e
timeout "$EXAMPLE_TIMEOUT_S" "$VPY" docs/examples/python/lastmile_example.py "$ADDR" "$WORK/stubs"
example_status=$?
set -e
if [[ $example_status -eq 124 ]]; then
  echo "the example did not finish within ${EXAMPLE_TIMEOUT_S} s"
fi

stop_server
if [[ $example_status -eq 0 ]]; then
  echo "python example: 1 passed, 0 failed"
else
  echo "python example: 0 passed, 1 failed"
fi
RESULT_PRINTED=1
exit "$example_status"
