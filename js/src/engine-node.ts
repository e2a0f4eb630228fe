// How Node picks its engine: `BATCHLING_BACKEND=native|wasm` forces one; by default the native
// addon, falling back to wasm: silently where the package ships no addon for this platform, with
// one warning where an addon is there but cannot load (another platform's build, too old a glibc).
import { createRequire } from "node:module";
import { loadWasmBackend } from "./backend-wasm.js";
import { engineModuleOf, setEngineLoader, type EngineModule } from "./engine.js";

function loadNativeModule(): EngineModule {
  // import.meta.url in ESM, a shim in CJS (tsup). The addon sits in bindings-node/ next to dist/.
  const require = createRequire(import.meta.url);
  return engineModuleOf("native", require("../bindings-node/index.cjs") as Omit<EngineModule, "name">);

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
    let wasm: EngineModule;
    try {
      wasm = loadWasmBackend();
    } catch (wasmError) {
      throw new AggregateError([nativeError, wasmError], "batchling: neither the native addon nor the wasm engine could be loaded");
    }
    const failure = loadFailure(nativeError);
    if (failure !== undefined) warnOnce(failure);
    return wasm;
  }
}

/**
 * Why an addon that is there failed to load, or `undefined` when none was found. The napi
 * loader tries this platform's file and package and chains each attempt's message as the
 * error's `cause`; an attempt that did not end in "Cannot find module" found a file it could
 * not load (dlopen's "invalid ELF header", "GLIBC_2.xx not found", "did not self-register").
 */
function loadFailure(error: unknown): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "MODULE_NOT_FOUND" || e.message.startsWith("Cannot find module")) continue;
    if (e.message.startsWith("Cannot find native binding")) continue; // the loader's summary
    return e.message;
  }
  return undefined;
}

/** Once per process, even when both the ESM and the CommonJS entries are loaded. */
const WARNED = Symbol.for("batchling.nativeFallbackWarned");

function warnOnce(failure: string): void {
  const global = globalThis as { [WARNED]?: boolean };
  if (global[WARNED]) return;
  global[WARNED] = true;
  process.emitWarning(
    `batchling: the native addon could not be loaded (${failure}); using the WebAssembly engine instead (same API, slower). Set BATCHLING_BACKEND=wasm to choose it without this warning.`,
    { code: "BATCHLING_NATIVE_FALLBACK" },
  );
}

setEngineLoader(loadNodeEngine);
