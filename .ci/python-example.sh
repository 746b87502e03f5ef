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

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lastmile-python-example.XXXXXX")"
SERVER_PID=""
RESULT_PRINTED=0

stop_server() {
  [[ -n "$SERVER_PID" ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq $((SERVER_STOP_TIMEOUT_S * 10))); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

finish() {
  local status=$?
  stop_server
  if [[ $status -ne 0 && -s "$WORK/server.err" ]]; then
    echo "-- server stderr (last 30 lines):"
    tail -n 30 "$WORK/server.err" || true
  fi
  rm -rf -- "$WORK"
  if [[ $RESULT_PRINTED -eq 0 ]]; then
    # A step before the example failed (pip, protoc, the server): count it as
    # the example failing, so the closing line is always there.
    echo "python example: 0 passed, 1 failed"
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

ADDR=""
deadline=$((SECONDS + SERVER_START_TIMEOUT_S))
while [[ -z "$ADDR" ]]; do
  # The first line of stdout, once recovery is done: `lastmile listening on ADDR`.
  if line="$(head -n 1 "$WORK/server.out")" && [[ "$line" =~ ^lastmile\ listening\ on\ ([^[:space:]]+)$ ]]; then
    ADDR="${BASH_REMATCH[1]}"
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server exited before it was listening"
    exit 1
  fi
  if [[ $SECONDS -ge $deadline ]]; then
    echo "the server printed no 'lastmile listening on ADDR' line within ${SERVER_START_TIMEOUT_S} s"
    exit 1
  fi
  sleep 0.1
done
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
