# Sourced by .ci/python-example.sh and .ci/schemathesis.sh: the lastmile
# server a CI step starts in the background, waits for and stops, and the
# step's exit. The caller sets WORK (its scratch folder: the server's output
# goes to $WORK/server.out and $WORK/server.err), SERVER_START_TIMEOUT_S and
# SERVER_STOP_TIMEOUT_S, defines early_failure_line (see finish_step), calls
# trap_finish_step, starts the server with SERVER_PID=$!, and sets
# RESULT_PRINTED=1 once it has printed its closing line.

SERVER_PID=""
RESULT_PRINTED=0

# The step's EXIT trap: stops the server, shows its stderr after a failure,
# removes WORK, and when a step failed before its closing line (pip, protoc,
# the server) prints the caller's early_failure_line, so the closing line is
# always there.
finish_step() {
  local status=$?
  stop_server
  [[ $status -eq 0 ]] || show_server_stderr
  rm -rf -- "$WORK"
  [[ $RESULT_PRINTED -ne 0 ]] || early_failure_line
  exit "$status"
}

trap_finish_step() {
  trap finish_step EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# SIGTERM, then SIGKILL after SERVER_STOP_TIMEOUT_S; reaped. Idempotent.
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

# After a failed step: the end of the server's stderr, if it wrote any.
show_server_stderr() {
  if [[ -s "$WORK/server.err" ]]; then
    echo "-- server stderr (last 30 lines):"
    tail -n 30 "$WORK/server.err" || true
  fi
}

# wait_for_ready_line N TEXT: waits until line N of the server's stdout is
# `TEXT ADDR` (the ready lines: 1 `lastmile listening on`, 2 `lastmile http
# listening on`, printed once the server is ready) and sets ADDR; exits 1 if
# the server dies first or SERVER_START_TIMEOUT_S passes.
wait_for_ready_line() {
  local n="$1" text="$2" line deadline=$((SECONDS + SERVER_START_TIMEOUT_S))
  local ready="^$text ([^[:space:]]+)\$"
  ADDR=""
  while [[ -z "$ADDR" ]]; do
    if line="$(sed -n "${n}p" "$WORK/server.out")" && [[ "$line" =~ $ready ]]; then
      ADDR="${BASH_REMATCH[1]}"
      break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "the server exited before it was listening"
      exit 1
    fi
    if [[ $SECONDS -ge $deadline ]]; then
      echo "the server printed no '$text ADDR' line within ${SERVER_START_TIMEOUT_S} s"
      exit 1
    fi
    sleep 0.1
  done
}
