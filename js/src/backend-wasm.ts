// The WebAssembly engine: the same classes and functions as the native addon (bindings-wasm/
// mirrors bindings-node/ method for method), built by scripts/build-wasm.sh into wasm/node/
// (CommonJS glue that loads its .wasm synchronously). Portable: no platform binary needed.
import { createRequire } from "node:module";
import { jobsBackendOf, type Backend, type InterceptorBackend, type JobsBackend } from "./engine.js";

export interface WasmBackend extends JobsBackend {
  name: "wasm";
  NativeBatcher: Backend["NativeBatcher"];
  checkBatcherOptions: Backend["checkBatcherOptions"];
  NativeInterceptor: InterceptorBackend["NativeInterceptor"];
  checkInterceptorOptions: InterceptorBackend["checkInterceptorOptions"];
}

let wasm: WasmBackend | undefined;

/** Load (once) the wasm engine; throws if wasm/node/ has not been built. */
export function loadWasmBackend(): WasmBackend {
  if (wasm === undefined) {
    // import.meta.url in ESM, a shim in CJS (tsup). wasm/ sits next to dist/, like bindings-node/.
    const require = createRequire(import.meta.url);
    const m = require("../wasm/node/batchling_wasm.js") as Omit<WasmBackend, "name">;
    wasm = {
      name: "wasm",
      NativeBatcher: m.NativeBatcher,
      checkBatcherOptions: m.checkBatcherOptions,
      NativeInterceptor: m.NativeInterceptor,
      checkInterceptorOptions: m.checkInterceptorOptions,
      ...jobsBackendOf(m),
    };
  }
  return wasm;
}
