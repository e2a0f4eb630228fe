// The WebAssembly engine: the same classes and functions as the native addon (bindings-wasm/
// mirrors bindings-node/ method for method), built by scripts/build-wasm.sh into wasm/node/
// (CommonJS glue that loads its .wasm synchronously). Portable: no platform binary needed.
import { createRequire } from "node:module";
import { engineModuleOf, type EngineModule } from "./engine.js";

export type WasmBackend = EngineModule & { name: "wasm" };

let wasm: WasmBackend | undefined;

/** Load (once) the wasm engine; throws if wasm/node/ has not been built. */
export function loadWasmBackend(): WasmBackend {
  if (wasm === undefined) {
    // import.meta.url in ESM, a shim in CJS (tsup). wasm/ sits next to dist/, like bindings-node/.
    const require = createRequire(import.meta.url);
    wasm = engineModuleOf("wasm", require("../wasm/node/batchling_wasm.js") as Omit<EngineModule, "name">) as WasmBackend;
  }
  return wasm;
}
