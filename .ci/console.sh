#!/usr/bin/env bash
# CI: the dispatcher console's browser tests (tests/console/*.test.mjs) in
# Debian's headless Chromium, driven by playwright-core (pinned by
# tests/console/package-lock.json), against real `lastmile serve` processes.
# Nothing downloads a browser of its own: chromium and the CJK font come
# from Debian, playwright-core from the npm registry through the lockfile.
# Needs root (apt-get), Node.js 20 or newer with npm, and the Rust toolchain.
# Screenshots of every step and the servers' output: tests/console/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== chromium and fonts (Debian)"
apt-get update
apt-get install -y chromium fonts-wqy-zenhei
chromium --version 2>/dev/null | head -1 || true

echo "== node packages (npm ci, tests/console/package-lock.json)"
if ! command -v node >/dev/null 2>&1; then
  echo "Node.js 20 or newer is needed for the console tests" >&2
  exit 1
fi
node --version
(cd tests/console && npm ci --no-audit --no-fund)

echo "== lastmile (debug build)"
# `cargo test --workspace` (before this in .ci/run) leaves the binary; build
# it only if it is missing (a separate `-p lastmile` build would resolve
# features anew and rebuild much of the tree).
[[ -x target/debug/lastmile ]] || cargo build -p lastmile --locked

echo "== console browser tests (node --test tests/console/)"
export LASTMILE_BIN="${LASTMILE_BIN:-$PWD/target/debug/lastmile}"
node --test --test-concurrency=1 tests/console/
