# install_tree BUILD_DIR DESTDIR PREFIX: lays codeinterp out under DESTDIR (a staging root, or empty for the real
# one) the way the binary looks for its parts: PREFIX/bin/{codeinterp,codeinterp-worker} (the worker beside the
# binary), PREFIX/share/codeinterp/sandbox-profiles (see SandboxProfile.searchDirectories), the systemd unit in
# DESTDIR/lib/systemd/system. Sourced by scripts/install and scripts/package.
install_tree() {
  local build="$1" dest="$2" prefix="$3"
  install -Dm755 "$build/codeinterp" "$dest$prefix/bin/codeinterp"
  install -Dm755 "$build/codeinterp-worker" "$dest$prefix/bin/codeinterp-worker"
  install -d "$dest$prefix/share/codeinterp/sandbox-profiles"
  install -m644 "$ROOT"/sandbox-profiles/*.json "$ROOT/sandbox-profiles/README.md" "$dest$prefix/share/codeinterp/sandbox-profiles/"
  install -d "$dest/lib/systemd/system"
  sed "s|@BINDIR@|$prefix/bin|g" "$ROOT/packaging/codeinterp.service" >"$dest/lib/systemd/system/codeinterp.service"
  chmod 644 "$dest/lib/systemd/system/codeinterp.service"
}

# write_config PATH: a config for the service with a fresh API key, unless one is there (mode 0600).
write_config() {
  local path="$1"
  [ -e "$path" ] && return 0
  install -d -m 755 "$(dirname "$path")"
  local key="ci-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  (umask 077; printf '{\n  "host": "127.0.0.1",\n  "port": 8080,\n  "api_keys": ["%s"]\n}\n' "$key" >"$path")
}
