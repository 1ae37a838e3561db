#!/usr/bin/env bash
# Runs inside `unshare --pid --fork --mount-proc --net` (see scripts/test): the Swift tests, then the end-to-end
# tests against a real server on this namespace's loopback. Arguments go to `swift test`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ip link set lo up

log "Swift tests"
swift test --skip-build "$@"

log "end-to-end tests: the openai and mcp packages and the examples against codeinterp serve"
start_server "$ROOT/.build/debug/codeinterp"
trap stop_server EXIT
if ! "$ROOT/.venv/bin/python" -m unittest discover -s "$ROOT/Tests/e2e" -v; then
  log "server log:"; tail -50 "$SERVER_LOG" >&2
  exit 1
fi
