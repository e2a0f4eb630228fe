#!/usr/bin/env bash
# Install the programs the test suite drives, from Debian's packages only, skipping what is
# already there (idempotent; run by `npm test` before anything else):
#   - chromium: tests/browser.test.mjs runs the browser entry in headless Chromium
#     (driven by playwright-core; no browser is ever downloaded).
# The wasm toolchain has its own script (scripts/install-wasm-toolchain.sh, run by
# `npm run build:wasm`). Needs root (or sudo) for apt-get when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[test-deps] $*"; }

APT_PACKAGES=(chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "present: ${APT_PACKAGES[*]}"
  exit 0
fi

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
