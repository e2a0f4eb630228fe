#!/usr/bin/env bash
# Install the programs the test suite drives, from Debian's packages only, skipping what is
# already there (idempotent; run by `npm test` before anything else):
#   - chromium: tests/browser.test.mjs runs the browser entry in headless Chromium
#     (driven by playwright-core; no browser is ever downloaded).
#   - redis-server: tests/fleet-redis.test.mjs starts its own on a free port (with append-only
#     persistence, in a temporary directory) as the fleet's shared store.
#   - python3 with venv: tests/serve.e2e.test.mjs drives `batchling serve` with the official
#     Python SDKs, installed from PyPI into .venv-test/ (tests/serve/requirements.txt).
# The wasm toolchain has its own script (scripts/install-wasm-toolchain.sh, run by
# `npm run build:wasm`). Needs root (or sudo) for apt-get when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[test-deps] $*"; }

install_apt() {
  local missing=("$@")
  command -v apt-get >/dev/null || {
    echo "[test-deps] missing ${missing[*]} and no apt-get here: install them with your package manager" >&2
    exit 1
  }
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
      echo "[test-deps] missing ${missing[*]}: run as root, or install them: apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 1
    }
    SUDO="sudo"
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log="$(mktemp)"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; echo "[test-deps] apt-get install ${missing[*]} failed (above)" >&2; exit 1; }
  rm -f "$log"
  say "installed: ${missing[*]}"
}

# The Python SDKs, in .venv-test/ (made once; reinstalled when the requirements change).
install_python_sdks() {
  local venv=.venv-test req=tests/serve/requirements.txt
  local python=python3
  python3 -c "import venv, ensurepip" >/dev/null 2>&1 || python=/usr/bin/python3
  if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; then
    say "present: Python SDKs in $venv"
    return
  fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
    || { echo "[test-deps] pip install -r $req failed (above)" >&2; exit 1; }
  cp "$req" "$venv/requirements.txt"
  say "installed: Python SDKs in $venv ($(grep -v '^#' "$req" | tr '\n' ' '))"
}

APT_PACKAGES=(chromium redis-server)
# A python3 that can make a virtual environment (pyenv's and most distributions' can); else
# Debian's python3 and python3-venv.
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  APT_PACKAGES+=(python3 python3-venv)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "present: ${APT_PACKAGES[*]}"
else
  install_apt "${missing[@]}"
fi
install_python_sdks

