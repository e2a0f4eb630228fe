import { defineConfig } from "tsup";

// No source maps: the output is plain, unminified JavaScript, and the package ships neither the
// maps nor the sources they point at (package.json `files` lists what a user gets).

export default defineConfig([
  {
    // cli: the `batchling` bin (dist/cli.js, ESM; tsup keeps its shebang and makes it executable).
    // cli-args: its pure argument parser, built on its own so tests/cli.test.mjs can import it.
    // One config for these entries: the ESM builds share a chunk, so a script run by the CLI that
    // imports "batchling" gets the very module instance the CLI uses (one fetch hook, one scope).
    // fleet-redis: the fleet protocol's Redis store (batchify's `cache: { redis }`), also built on
    // its own for tests/fleet-redis.test.mjs (its own entry is not in the package's files).
    // Its declarations are left out, so the shipped ones keep their chunks (package.json `files`).
    entry: { index: "js/src/index.ts", cli: "js/src/cli.ts", "cli-args": "js/src/cli-args.ts", "fleet-redis": "js/src/fleet-redis.ts" },
    format: ["esm", "cjs"],
    dts: { entry: { index: "js/src/index.ts", cli: "js/src/cli.ts", "cli-args": "js/src/cli-args.ts" } },
    outDir: "dist",
    target: "node20",
    platform: "node",
    sourcemap: false,
    clean: true,
    shims: true,
    // ioredis (for the Redis journal) is an optional peer dependency, imported only when asked
    // for: never bundled.
    external: ["ioredis"],
    // prom-client (for `batchling serve`'s /metrics) is bundled, so the package installs with no
    // dependencies; it is CommonJS and requires Node built-ins, which an ES module can only do
    // through a `require` made here.
    banner: ({ format }) =>
      format === "esm" ? { js: 'import { createRequire as __batchlingCreateRequire } from "node:module";\nconst require = __batchlingCreateRequire(import.meta.url);' } : {},
  },
  {
    // Browsers and edge runtimes (package.json `exports` conditions browser / worker / workerd):
    // the wasm engine, no Node built-ins. Its own directory, so the two builds never race on
    // cleaning. The wasm-bindgen glue stays external: it finds its .wasm next to itself.
    entry: { browser: "js/src/browser.ts" },
    format: ["esm"],
    dts: true,
    outDir: "dist-web",
    target: "es2022",
    platform: "browser",
    sourcemap: false,
    clean: true,
    external: [/wasm\/web\/batchling_wasm\.js$/],
  },
]);
