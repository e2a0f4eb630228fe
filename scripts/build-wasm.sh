#!/usr/bin/env bash
# Build the WebAssembly engine: bindings-wasm/ -> wasm/node/ (CommonJS, for Node: what
# js/src/backend-wasm.ts loads) and wasm/web/ (ES module + init(), for browsers).
#
# Uses Debian's rustc-web toolchain with build-std (rustup's toolchain has no wasm32 target here)
# and wasm-bindgen-cli at the crate's pinned version; scripts/install-wasm-toolchain.sh installs
# both when missing. Optional: wasm-opt -Oz when a wasm-opt from the npm `binaryen` package is
# found ($WASM_OPT, or node_modules/.bin/wasm-opt); Debian's binaryen is too old for current
# wasm-bindgen output and is never used.
#
# Usage: scripts/build-wasm.sh [--debug] [--test]
#   --debug  unoptimized build (faster to compile, much larger and slower)
#   --test   also run the crate's wasm-bindgen tests in Node (wasm-bindgen-test-runner)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PROFILE=wasm
TEST=0
for arg in "$@"; do
  case "$arg" in
    --debug) PROFILE=debug ;;
    --test) TEST=1 ;;
    *) echo "usage: $0 [--debug] [--test]" >&2; exit 2 ;;
  esac
done

bash scripts/install-wasm-toolchain.sh
export PATH="$HOME/.cargo/bin:$PATH"

start=$(date +%s)
echo "[build-wasm] cargo build ($PROFILE, wasm32-unknown-unknown, target/wasm)"
# Run from the crate so its .cargo/config.toml (build-std, wasm-ld-22) applies. All three
# variables matter: without RUSTC Debian's cargo runs rustup's rustc, without RUSTDOC doctests
# mismatch, and RUSTC_BOOTSTRAP unlocks build-std on this stable compiler.
wasm_cargo() {
  local flags=(--target wasm32-unknown-unknown --target-dir "$ROOT/target/wasm")
  [ "$PROFILE" = wasm ] && flags+=(--profile wasm)
  (cd bindings-wasm && RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    /usr/bin/cargo "$@" "${flags[@]}")
}
wasm_cargo build --quiet
echo "[build-wasm] cargo build took $(( $(date +%s) - start )) s"
if [ "$TEST" = 1 ]; then
  echo "[build-wasm] cargo test (wasm-bindgen-test-runner, Node)"
  # The runner (from wasm-bindgen-cli) is set in bindings-wasm/.cargo/config.toml.
  wasm_cargo test
fi

RAW="target/wasm/wasm32-unknown-unknown/$PROFILE/batchling_wasm.wasm"
rm -rf wasm/node wasm/web
# Release: drop the name section (about 90 KB; a panic still prints its message, see
# install_panic_hook in bindings-wasm/src/lib.rs). Not `strip = true` in cargo: that also drops
# the target_features section wasm-bindgen reads.
bindgen_flags=()
[ "$PROFILE" = wasm ] && bindgen_flags+=(--remove-name-section --remove-producers-section)
wasm-bindgen --target nodejs "${bindgen_flags[@]}" --out-dir wasm/node "$RAW"
wasm-bindgen --target web "${bindgen_flags[@]}" --out-dir wasm/web "$RAW"
# The package is "type": "module"; the nodejs target's glue is CommonJS.
echo '{ "type": "commonjs" }' > wasm/node/package.json

WASM_OPT="${WASM_OPT:-}"
if [ -z "$WASM_OPT" ] && [ -x node_modules/.bin/wasm-opt ]; then WASM_OPT=node_modules/.bin/wasm-opt; fi
if [ -n "$WASM_OPT" ]; then
  echo "[build-wasm] $WASM_OPT -Oz ($("$WASM_OPT" --version))"
  for f in wasm/node/batchling_wasm_bg.wasm wasm/web/batchling_wasm_bg.wasm; do
    # The features rustc enables by default for wasm32-unknown-unknown.
    "$WASM_OPT" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-reference-types --enable-sign-ext --enable-mutable-globals --enable-multivalue \
      -o "$f.opt" "$f"
    mv "$f.opt" "$f"
  done
else
  echo "[build-wasm] no wasm-opt from npm binaryen (set WASM_OPT=...): skipping -Oz"
fi

# The two targets' .wasm files are byte for byte the same: ship one. The Node glue reads the web
# copy (package.json `exports` "./wasm" points there too).
cmp -s wasm/node/batchling_wasm_bg.wasm wasm/web/batchling_wasm_bg.wasm ||
  { echo "[build-wasm] the nodejs and web .wasm differ; cannot share one" >&2; exit 1; }
rm wasm/node/batchling_wasm_bg.wasm
sed -i 's|`${__dirname}/batchling_wasm_bg.wasm`|`${__dirname}/../web/batchling_wasm_bg.wasm`|' wasm/node/batchling_wasm.js
grep -q '/../web/batchling_wasm_bg.wasm`' wasm/node/batchling_wasm.js ||
  { echo "[build-wasm] the Node glue no longer reads its .wasm the expected way" >&2; exit 1; }

size() { printf '%8d B raw, %7d B gzip  %s\n' "$(wc -c <"$1")" "$(gzip -9c "$1" | wc -c)" "$1"; }
size "$RAW"
size wasm/web/batchling_wasm_bg.wasm
echo "[build-wasm] done in $(( $(date +%s) - start )) s"
