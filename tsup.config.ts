import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "js/src/index.ts" },
  format: ["esm", "cjs"],
  dts: true,
  outDir: "dist",
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
  shims: true,
});
