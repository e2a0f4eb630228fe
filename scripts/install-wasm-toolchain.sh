#!/usr/bin/env bash
# Install what building bindings-wasm/ needs, from the package registries only, skipping what is
# already there (see shared toolchain notes, WebAssembly section):
#   - Debian's rustc-web compiler + cargo + std source (wasm32 std is built with build-std),
#   - wasm-ld (lld) whose major version matches that compiler's LLVM,
#   - wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate pinned in
#     bindings-wasm/Cargo.toml, into ~/.cargo/bin.
# Idempotent; safe to run on every build. Needs root (or sudo) for apt-get on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[wasm-toolchain] $*"; }

# The wasm-bindgen version the crate pins (`wasm-bindgen = "=X.Y.Z"`): the CLI must match it.
WASM_BINDGEN_VERSION="$(sed -n 's/^wasm-bindgen *= *{* *\(version *= *\)*"=\([0-9.]*\)".*/\2/p' bindings-wasm/Cargo.toml | head -n1)"
[ -n "$WASM_BINDGEN_VERSION" ] || { echo "cannot read the pinned wasm-bindgen version from bindings-wasm/Cargo.toml" >&2; exit 1; }

# 1. Debian's rustc-web toolchain and lld.
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-22)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log="$(mktemp)"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
else
  say "apt packages present (${APT_PACKAGES[*]})"
fi

# lld's major version must match the LLVM that Debian's rustc was built with.
llvm_major="$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
if [ "$llvm_major" != "22" ]; then
  echo "warning: /usr/bin/rustc uses LLVM $llvm_major but the linker is wasm-ld-22;" \
       "install lld-$llvm_major and update bindings-wasm/.cargo/config.toml" >&2
fi

# 2. wasm-bindgen-cli, exactly the crate's version.
export PATH="$HOME/.cargo/bin:$PATH"
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" = "$WASM_BINDGEN_VERSION" ]; then
  say "wasm-bindgen-cli $have present"
else
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)${have:+, replacing $have}"
  # No --locked: the published lockfile names a yanked crate. rustup's stable cargo builds it.
  cargo install --quiet --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
say "ready: $(/usr/bin/rustc -V), $(wasm-ld-22 --version | head -n1), wasm-bindgen $(wasm-bindgen --version | awk '{print $2}')"
