import { defineConfig } from "tsup";

export default defineConfig({
  // cli: the `batchling` bin (dist/cli.js, ESM; tsup keeps its shebang and makes it executable).
  // cli-args: its pure argument parser, built on its own so tests/cli.test.mjs can import it.
  // One config for both entries: the ESM builds share a chunk, so a script run by the CLI that
  // imports "batchling" gets the very module instance the CLI uses (one fetch hook, one scope).
  entry: { index: "js/src/index.ts", cli: "js/src/cli.ts", "cli-args": "js/src/cli-args.ts" },
  format: ["esm", "cjs"],
  dts: true,
  outDir: "dist",
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
  shims: true,
});
