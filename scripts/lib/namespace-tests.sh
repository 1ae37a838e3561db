#!/usr/bin/env bash
# Runs inside `unshare --pid --fork --mount-proc --net` (see scripts/test): the Swift tests, then the end-to-end
# tests against a real server on this namespace's loopback. Arguments go to `swift test`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ip link set lo up

log "Swift tests"
swift test --skip-build "$@"

# The sandbox again as an unprivileged user: the zygote then builds everything in a user namespace, with one
# host uid for every execution. Tenants must stay as far apart as they do under root. One test at a time: under one
# uid, every execution shares one process allowance, and the fork bomb of one suite would starve another's forks.
if [ $# -eq 0 ] && [ -n "${UNPRIVILEGED_USER:-}" ] \
   && ! runuser -u "$UNPRIVILEGED_USER" -- test -x "$ROOT/.build/debug/codeinterpPackageTests.xctest" -a -r "$ROOT/sandbox-profiles/default.json"; then
  log "SKIPPED: the sandbox tests as $UNPRIVILEGED_USER (this checkout, $ROOT, is not readable by other users)"
elif [ $# -eq 0 ] && [ -n "${UNPRIVILEGED_USER:-}" ]; then
  log "sandbox tests as the unprivileged user $UNPRIVILEGED_USER (user namespaces)"
  runuser -u "$UNPRIVILEGED_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 \
    CODEINTERP_TEST_UNPRIVILEGED=1 \
    "$ROOT/.build/debug/codeinterpPackageTests.xctest" --testing-library swift-testing --no-parallel \
    --filter 'SandboxTests\.(TenantIsolationTests|AttackTests|LimitTests|SessionTests|ExecutionTests|AdversarialCorpusTests)'
fi

log "end-to-end tests: the openai and mcp packages, the examples and the page in headless Chromium against codeinterp serve"
start_server "$ROOT/.build/debug/codeinterp"
trap stop_server EXIT
if ! "$ROOT/.venv/bin/python" -m unittest discover -s "$ROOT/Tests/e2e" -v; then
  log "server log:"; tail -50 "$SERVER_LOG" >&2
  exit 1
fi
stop_server
# Arguments narrow the Swift tests: then the fuzzer and the soak are skipped too.
[ $# -eq 0 ] || exit 0

# The API fuzzed from its own document: no 5xx, and every response (status, content type, body, headers) as
# documented. Schema-valid requests may still be refused for what a schema cannot say (a cursor that names no
# item, an MCP request before initialize), so positive_data_acceptance is left out. No rate limit: the fuzzer
# sends thousands of requests with one key.
log "API fuzzing: schemathesis against /openapi.json"
start_server "$ROOT/.build/debug/codeinterp" --rate-limit 0
if ! "$ROOT/.venv/bin/schemathesis" run "$CODEINTERP_URL/openapi.json" -H "Authorization: Bearer $CODEINTERP_API_KEY" \
    --checks all --exclude-checks positive_data_acceptance --max-examples 20 --generation-deterministic \
    --request-timeout 120 --continue-on-failure --no-color; then
  log "server log:"; tail -50 "$SERVER_LOG" >&2
  exit 1
fi
stop_server

# A short soak (the full one is scripts/soak): nothing benign fails, nothing hostile gets out, nothing leaks.
log "soak (short)"
EXECUTIONS="${SOAK_EXECUTIONS:-300}" CONCURRENCY=50 "$ROOT/scripts/lib/soak.sh"
