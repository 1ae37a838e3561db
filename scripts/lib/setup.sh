# Shared by scripts/serve, scripts/test and scripts/bench: install what is missing, then build.
# Sourced, not executed. Works on a fresh Debian/Ubuntu machine with Swift installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DEBIAN_PACKAGES=(
  libseccomp-dev python3-dev pkg-config python3-venv
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
