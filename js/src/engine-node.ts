// How Node picks its engine: `BATCHLING_BACKEND=native|wasm` forces one; by default the native
// addon, falling back to wasm when it cannot load (no build for this platform).
import { createRequire } from "node:module";
import { loadWasmBackend } from "./backend-wasm.js";
import { setEngineLoader, type EngineModule } from "./engine.js";

function loadNativeModule(): EngineModule {
  // import.meta.url in ESM, a shim in CJS (tsup). The addon sits in bindings-node/ next to dist/.
  const require = createRequire(import.meta.url);
  const m = require("../bindings-node/index.cjs") as Omit<EngineModule, "name">;
  return {
    name: "native",
    NativeBatcher: m.NativeBatcher,
    NativeInterceptor: m.NativeInterceptor,
    jobProvider: m.jobProvider,
    jobBuildRequest: m.jobBuildRequest,
    jobExtractResult: m.jobExtractResult,
  };
}

export function loadNodeEngine(): EngineModule {
  const forced = process.env.BATCHLING_BACKEND || undefined; // empty means unset
  if (forced !== undefined && forced !== "native" && forced !== "wasm") {
    throw new Error(`BATCHLING_BACKEND must be "native" or "wasm", got "${forced}"`);
  }
  if (forced === "wasm") return loadWasmBackend();
  try {
    return loadNativeModule();
  } catch (nativeError) {
    if (forced === "native") throw nativeError;
    try {
      return loadWasmBackend();
    } catch (wasmError) {
      throw new AggregateError([nativeError, wasmError], "batchling: neither the native addon nor the wasm engine could be loaded");
    }
  }
}

setEngineLoader(loadNodeEngine);
