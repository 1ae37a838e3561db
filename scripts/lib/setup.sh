# Shared by scripts/serve, scripts/test and scripts/bench: install what is missing, then build.
# Sourced, not executed. Works on a fresh Debian/Ubuntu machine with Swift installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DEBIAN_PACKAGES=(
  libseccomp-dev python3-dev pkg-config python3-venv python3-pip python3-setuptools
  python3-numpy python3-pandas python3-matplotlib python3-scipy python3-seaborn python3-sklearn
  python3-openpyxl python3-reportlab python3-sympy python3-pil
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

# Installs the Debian packages that are not installed yet (plus any extra names given).
ensure_packages() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v swift >/dev/null || { log "swift is not on PATH (Swift 6.1 or newer is needed)"; return 1; }
}

# Builds with warnings as errors; $1 = debug|release.
build() {
  local config="${1:-debug}"
  log "building ($config)"
  swift build -c "$config" -Xswiftc -warnings-as-errors
}

# A virtualenv (.venv) with the real clients the end-to-end tests and benchmarks use (Tests/e2e/requirements.txt),
# reinstalled when that file changes.
ensure_venv() {
  local req="$ROOT/Tests/e2e/requirements.txt" stamp="$ROOT/.venv/.requirements"
  [ -x "$ROOT/.venv/bin/python" ] || { log "creating .venv"; /usr/bin/python3 -m venv "$ROOT/.venv"; }
  if ! cmp -s "$req" "$stamp"; then
    log "installing $(grep -v '^#' "$req" | tr '\n' ' ')into .venv"
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
}

# Starts `codeinterp serve` in the background on a free port with a fresh data directory and a generated key.
# Sets SERVER_PID, CODEINTERP_URL, CODEINTERP_API_KEY; waits until /healthz says healthy. $1 = binary, rest = flags.
start_server() {
  local bin="$1"; shift
  local port data
  port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  data="$(mktemp -d)"
  export CODEINTERP_API_KEY="test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export CODEINTERP_URL="http://127.0.0.1:$port"
  "$bin" serve --host 127.0.0.1 --port "$port" --data-dir "$data" --api-key "$CODEINTERP_API_KEY" "$@" \
    >"$data/server.log" 2>&1 &
  SERVER_PID=$!
  SERVER_LOG="$data/server.log"
  # Healthy once the worker has preloaded the scientific stack, however long a cold first start takes; the bound
  # only keeps a deadlock from hanging the run.
  local deadline=$((SECONDS + 600))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS "$CODEINTERP_URL/healthz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; log "the server exited during start-up"; return 1; }
    sleep 0.1
  done
  cat "$SERVER_LOG" >&2
  log "the server never answered /healthz"
  return 1
}

stop_server() {
  [ -n "${SERVER_PID:-}" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
