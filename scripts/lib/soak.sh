#!/usr/bin/env bash
# Inside the soak's namespace (see scripts/soak, scripts/lib/namespace-tests.sh): a fresh server, the soak, a stop.
# EXECUTIONS, CONCURRENCY; SOAK_SUMMARY names a file for the summary table.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ip link set lo up 2>/dev/null || true
# One API key sending as fast as 50 clients can: the per-key rate limit would only slow the run down. The
# execution queue keeps its limit, so clients still meet 429s and retry after Retry-After.
# A session interpreter per client: with fewer, the longest idle is stopped to make room (as documented), and its
# next cell finds its variables gone, which the soak would count against the sandbox.
CODEINTERP_SESSION_SLOTS="${CONCURRENCY:-50}" start_server "$ROOT/.build/debug/codeinterp" --rate-limit 0
trap stop_server EXIT
log "soak: ${EXECUTIONS:-10000} executions at concurrency ${CONCURRENCY:-50} against $CODEINTERP_URL"
if ! /usr/bin/python3 "$ROOT/scripts/soak-cases/soak.py" "$CODEINTERP_URL" "$CODEINTERP_API_KEY" \
    --data-dir "$(dirname "$SERVER_LOG")" --server-pid "$SERVER_PID" \
    --executions "${EXECUTIONS:-10000}" --concurrency "${CONCURRENCY:-50}" ${SOAK_SUMMARY:+--summary "$SOAK_SUMMARY"}; then
  log "soak failed; server log:"; tail -30 "$SERVER_LOG" >&2
  exit 1
fi
