// What a user gets from `npm install batchling`: the tarball of `npm pack`, installed into a
// fresh project with install scripts off and no Rust toolchain on PATH, works as published:
// ESM import, CJS require, the CLI (help and a dry run), TypeScript types (nodenext and bundler
// resolution, skipLibCheck off), the native addon where one is shipped, the wasm engine where it
// is missing or cannot load. Also reports the tarball's size and checks it ships nothing a user
// does not need (sources, maps, tests).
//
// Needs the built package (`npm run build` and `npm run build:wasm`, which `npm test` runs first);
// without them these tests fail, never skip. Every child runs with a clean environment (its own
// PATH, HOME and npm cache, no BATCHLING_BACKEND), so the wasm leg of `npm test` runs it alike.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");
const NODE_TYPES = join(ROOT, "node_modules", "@types");
const FALLBACK_CODE = "BATCHLING_NATIVE_FALLBACK";
/** A ceiling, so the package stays lean: today about 1 MB packed (the native addon is most of it). */
const MAX_PACKED_BYTES = 2_500_000;

for (const built of ["dist/index.js", "dist-web/browser.js", "wasm/node/batchling_wasm.js", "wasm/web/batchling_wasm_bg.wasm", "bindings-node/index.cjs"]) {
  if (!existsSync(join(ROOT, built))) throw new Error(`${built} is not built: run \`npm run build && npm run build:wasm\` first`);
}

/** The first executable called `name` on the parent's PATH, symlinks resolved. */
function which(name) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return realpathSync(candidate);
  }
  throw new Error(`${name} is not on PATH`);
}

function run(command, args, { cwd, env, timeoutMs = 60_000 }) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A script for node: batches a few items and prints which engine did it. */
const ESM_PROBE = `
import { RequestBatcher, backend } from "batchling";
const calls = [];
const batcher = new RequestBatcher({ maxBatchSize: 3, maxDelayMs: 5, maxQueueSize: 10, batchHandler: (xs) => { calls.push(xs.length); return xs.map((x) => x * 2); } });
const results = await Promise.all([1, 2, 3, 4].map((x) => batcher.add(x)));
const { queueSize, maxQueueSize, isQueueEmpty } = batcher.getStatus();
await batcher.close();
console.log(JSON.stringify({ engine: backend().name, results, calls, queueSize, maxQueueSize, isQueueEmpty }));
`;
const CJS_PROBE = `
const { RequestBatcher, backend } = require("batchling");
const batcher = new RequestBatcher({ maxBatchSize: 2, maxDelayMs: 5, batchHandler: (xs) => xs.map((x) => x + "!") });
Promise.all(["a", "b", "c"].map((x) => batcher.add(x))).then(async (results) => {
  await batcher.close();
  console.log(JSON.stringify({ engine: backend().name, results }));
});
`;
/** Both entries in one process (the dual-package case): still one engine warning at most. */
const DUAL_PROBE = `
import { createRequire } from "node:module";
import { RequestBatcher, backend } from "batchling";
const cjs = createRequire(import.meta.url)("batchling");
const esmBatcher = new RequestBatcher({ maxBatchSize: 2, maxDelayMs: 5, batchHandler: (xs) => xs });
const cjsBatcher = new cjs.RequestBatcher({ maxBatchSize: 2, maxDelayMs: 5, batchHandler: (xs) => xs });
const results = await Promise.all([esmBatcher.add(1), cjsBatcher.add(2)]);
await Promise.all([esmBatcher.close(), cjsBatcher.close()]);
console.log(JSON.stringify({ engine: backend().name, cjsEngine: cjs.backend().name, results }));
`;

describe("npm install of the packed tarball, without a Rust toolchain", () => {
  let tmp;
  let env;
  let npmCli;
  let npxCli;
  let pack;
  let app;
  let trap;
  let trapHits = 0;
  let trapUrl;

  const node = (args, options) => run(process.execPath, args, { env, ...options });
  const npm = (args, options) => node([npmCli, ...args], options);
  const npx = (args, options) => node([npxCli, ...args], options);
  /** A copy of the installed consumer project, to break its native addon without touching `app`. */
  const copyApp = (name) => {
    const copy = join(tmp, name);
    cpSync(app, copy, { recursive: true, verbatimSymlinks: true });
    return copy;
  };
  const addonsIn = (project) => {
    const dir = join(project, "node_modules", "batchling", "bindings-node");
    return readdirSync(dir).filter((f) => f.endsWith(".node")).map((f) => join(dir, f));
  };
  const warnings = (stderr) => stderr.split(FALLBACK_CODE).length - 1;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "batchling-install-"));
    npmCli = which("npm");
    npxCli = join(dirname(npmCli), "npx-cli.js");
    assert.ok(existsSync(npxCli), `npx-cli.js next to ${npmCli}`);
    // PATH: only node, npm, npx and sh, linked into one directory. The system directories are
    // left out on purpose: they may hold a cargo or rustc (Debian's), which a user may not have.
    const bin = join(tmp, "bin");
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, "node"));
    symlinkSync(npmCli, join(bin, "npm"));
    symlinkSync(npxCli, join(bin, "npx"));
    symlinkSync(which("sh"), join(bin, "sh"));
    mkdirSync(join(tmp, "home"));
    env = {
      PATH: bin,
      HOME: join(tmp, "home"),
      TMPDIR: tmpdir(),
      LANG: "C.UTF-8",
      npm_config_cache: join(tmp, "npm-cache"),
      npm_config_update_notifier: "false",
      npm_config_fund: "false",
      npm_config_audit: "false",
    };

    // Any request that escapes the CLI's dry run lands here.
    trap = createServer((req, res) => {
      trapHits++;
      res.writeHead(500).end();
    });
    await new Promise((resolve) => trap.listen(0, "127.0.0.1", resolve));
    trapUrl = `http://127.0.0.1:${trap.address().port}/v1`;

    // Pack as `npm publish` would, minus the lifecycle scripts (`prepare` would rebuild with cargo).
    const packed = await npm(["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], { cwd: ROOT });
    assert.equal(packed.code, 0, packed.stderr);
    pack = JSON.parse(packed.stdout)[0];

    app = join(tmp, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true }, null, 2));
    // --offline: the tarball has no dependencies, so nothing may come from a registry.
    const installed = await npm(["install", "--ignore-scripts", "--offline", join(tmp, pack.filename)], { cwd: app });
    assert.equal(installed.code, 0, installed.stderr);
    writeFileSync(join(app, "probe.mjs"), ESM_PROBE);
    writeFileSync(join(app, "probe.cjs"), CJS_PROBE);
    writeFileSync(join(app, "dual.mjs"), DUAL_PROBE);
  });

  after(() => {
    trap?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("the children's PATH has node, npm and npx but no cargo, rustc or rustup", async () => {
    for (const tool of ["cargo", "rustc", "rustup"]) {
      const found = await run("sh", ["-c", `command -v ${tool}`], { env });
      assert.notEqual(found.code, 0, `${tool} is on the install's PATH: ${found.stdout}`);
    }
    for (const tool of ["node", "npm", "npx"]) {
      const found = await run("sh", ["-c", `command -v ${tool}`], { env });
      assert.equal(found.code, 0, `${tool} is missing from the install's PATH`);
    }
  });

  test("the tarball: its size, and only what a user needs", (t) => {
    t.diagnostic(`tarball ${pack.filename}: ${(pack.size / 1024).toFixed(0)} kB packed, ${(pack.unpackedSize / 1024).toFixed(0)} kB unpacked, ${pack.files.length} files`);
    for (const f of [...pack.files].sort((a, b) => b.size - a.size)) t.diagnostic(`  ${(f.size / 1024).toFixed(1).padStart(8)} kB  ${f.path}`);
    assert.ok(pack.size <= MAX_PACKED_BYTES, `packed ${pack.size} bytes, over the ${MAX_PACKED_BYTES} budget`);
    const paths = pack.files.map((f) => f.path);
    const unwanted = paths.filter(
      (p) => /\.map$|\.rs$|\.toml$|(^|\/)(src|tests?|bench|examples|scripts|core|target)\//.test(p) || (/\.[cm]?ts$/.test(p) && !/\.d\.c?ts$/.test(p)),
    );
    assert.deepEqual(unwanted, [], "sources, maps or tests in the tarball");
    const manifest = JSON.parse(readFileSync(join(app, "node_modules", "batchling", "package.json"), "utf8"));
    assert.equal(manifest.dependencies, undefined, "no runtime dependencies: the install needs no registry");
    // Every file package.json points a user at is in the tarball.
    const targets = new Set([manifest.main, manifest.module, manifest.types, ...Object.values(manifest.bin)]);
    const walk = (value) => (typeof value === "string" ? targets.add(value) : Object.values(value).forEach(walk));
    walk(manifest.exports);
    for (const target of targets) assert.ok(paths.includes(target.replace(/^\.\//, "")), `${target} is not in the tarball`);
    // The engines: the wasm build for Node and for browsers, the napi loader and its addon(s).
    for (const p of ["wasm/node/batchling_wasm.js", "wasm/web/batchling_wasm.js", "wasm/web/batchling_wasm_bg.wasm", "bindings-node/index.cjs"]) {
      assert.ok(paths.includes(p), `${p} is not in the tarball`);
    }
    const addons = paths.filter((p) => /^bindings-node\/batchling\.[\w-]+\.node$/.test(p));
    assert.ok(addons.length >= 1, "no native addon in the tarball");
    t.diagnostic(`native addons: ${addons.join(", ")}`);
    // Imports inside the shipped JavaScript resolve to shipped files.
    for (const p of paths.filter((p) => /^dist(-web)?\/.*\.c?js$/.test(p))) {
      const source = readFileSync(join(app, "node_modules", "batchling", p), "utf8");
      for (const [, spec] of source.matchAll(/(?:from |import\(|require\()\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const resolved = join(dirname(p), spec).replaceAll("\\", "/");
        assert.ok(paths.includes(resolved), `${p} imports ${spec}, which is not in the tarball`);
      }
    }
  });

  test("ESM import runs a batch on the native addon", async () => {
    const r = await node(["probe.mjs"], { cwd: app });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { engine: "native", results: [2, 4, 6, 8], calls: [3, 1], queueSize: 0, maxQueueSize: 10, isQueueEmpty: true });
    assert.equal(r.stderr, "");
    const wasmUrl = await node(["--input-type=module", "-e", "console.log(import.meta.resolve('batchling/wasm'))"], { cwd: app });
    assert.equal(wasmUrl.code, 0, wasmUrl.stderr);
    assert.ok(existsSync(fileURLToPath(wasmUrl.stdout.trim())), "the batchling/wasm export resolves to a shipped file");
  });

  test("CJS require runs a batch on the native addon", async () => {
    const r = await node(["probe.cjs"], { cwd: app });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { engine: "native", results: ["a!", "b!", "c!"] });
    assert.equal(r.stderr, "");
  });

  test("npx batchling --help", async () => {
    const r = await npx(["--offline", "--no-install", "batchling", "--help"], { cwd: app });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /--dry-run/);
    assert.match(r.stdout, /batchling jobs status <stateFile>/);
  });

  test("npx batchling runs a small script in dry run: answered, reported, nothing sent", async () => {
    writeFileSync(
      join(app, "ask.mjs"),
      [
        "export async function main(question) {",
        `  const response = await fetch(process.env.LLM_URL + "/chat/completions", {`,
        '    method: "POST",',
        '    headers: { "content-type": "application/json", authorization: "Bearer sk-no-key-in-a-dry-run" },',
        '    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: question }] }),',
        "  });",
        "  const body = await response.json();",
        "  return { status: response.status, answer: body.choices[0].message.content };",
        "}",
      ].join("\n"),
    );
    const r = await npx(["--offline", "--no-install", "batchling", "ask.mjs:main", "What is 2 + 2?", "--dry-run", "--no-cache", "--host", `openai=${trapUrl}`], {
      cwd: app,
      env: { ...env, LLM_URL: trapUrl },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { status: 200, answer: "[batchling dry run: request not sent]" });
    assert.match(r.stderr, /dry run: nothing was sent/);
    assert.match(r.stderr, /^openai\s+\/v1\/chat\/completions\s+gpt-4o-mini\s+1\s+1\s/m);
    assert.equal(trapHits, 0, "nothing reached the network");
  });

  describe("TypeScript consumers type-check against the shipped .d.ts (skipLibCheck off)", () => {
    const CONSUMER = `
import { RequestBatcher, QueueFullError, type RequestBatcherStatus } from "batchling";
const batcher = new RequestBatcher<string, number>({ maxBatchSize: 10, maxDelayMs: 5, maxQueueSize: 100, batchHandler: async (xs) => xs.map((x) => x.length) });
const length: Promise<number> = batcher.add("four");
const status: RequestBatcherStatus = batcher.getStatus();
const size: number = status.queueSize;
const bound: number | null = status.maxQueueSize;
const flags: [boolean, boolean] = [status.isQueueFull, status.isQueueEmpty];
const refused: boolean = new Error() instanceof QueueFullError;
export { length, size, bound, flags, refused };
`;
    const tsconfig = (options, files) =>
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, skipLibCheck: false, types: ["node"], typeRoots: [NODE_TYPES], target: "es2022", ...options },
        files,
      });
    const tsc = (project) => node([TSC, "-p", project, "--pretty", "false"], { cwd: app });
    /** The four checks run at once (each tsc run spends seconds loading the node types). */
    const checks = {};

    before(() => {
      writeFileSync(join(app, "consumer.mts"), CONSUMER);
      writeFileSync(join(app, "consumer.ts"), CONSUMER);
      writeFileSync(
        join(app, "consumer.cts"),
        `import batchling = require("batchling");\nconst status: batchling.RequestBatcherStatus = new batchling.RequestBatcher<number, number>({ maxBatchSize: 1, maxDelayMs: 0, batchHandler: (xs) => xs }).getStatus();\nexport const size: number = status.queueSize;\n`,
      );
      writeFileSync(
        join(app, "wrong.mts"),
        `import { RequestBatcher } from "batchling";\nexport const size: string = new RequestBatcher<number, number>({ maxBatchSize: 1, maxDelayMs: 0, batchHandler: (xs) => xs }).getStatus().queueSize;\n`,
      );
      writeFileSync(join(app, "tsconfig.nodenext.json"), tsconfig({ module: "nodenext", moduleResolution: "nodenext" }, ["consumer.mts", "consumer.cts"]));
      writeFileSync(join(app, "tsconfig.bundler.json"), tsconfig({ module: "esnext", moduleResolution: "bundler" }, ["consumer.ts"]));
      writeFileSync(
        join(app, "tsconfig.browser.json"),
        tsconfig({ module: "esnext", moduleResolution: "bundler", customConditions: ["browser"], lib: ["es2022", "dom"], types: [] }, ["consumer.ts"]),
      );
      writeFileSync(join(app, "tsconfig.wrong.json"), tsconfig({ module: "nodenext", moduleResolution: "nodenext" }, ["wrong.mts"]));
      for (const name of ["nodenext", "bundler", "browser", "wrong"]) {
        checks[name] = tsc(`tsconfig.${name}.json`);
        checks[name].catch(() => {}); // awaited by its test
      }
    });

    for (const resolution of ["nodenext", "bundler", "browser"]) {
      test(`moduleResolution ${resolution === "browser" ? "bundler, browser condition" : resolution}`, async () => {
        const r = await checks[resolution];
        assert.equal(r.code, 0, r.stdout + r.stderr);
      });
    }

    test("a consumer that misuses a type fails (the check has teeth)", async () => {
      const r = await checks.wrong;
      assert.notEqual(r.code, 0);
      assert.match(r.stdout, /wrong\.mts\(2,14\): error TS2322: Type 'number' is not assignable to type 'string'/);
      assert.equal(r.stdout.trim().split("\n").length, 1, r.stdout);
    });
  });

  describe("the wasm engine where the native addon is missing or cannot load", () => {
    test("no addon (a platform the package ships none for): wasm, silently", async () => {
      const project = copyApp("app-no-addon");
      const addons = addonsIn(project);
      assert.ok(addons.length >= 1);
      for (const addon of addons) rmSync(addon);
      for (const [probe, expected] of [
        ["probe.mjs", { engine: "wasm", results: [2, 4, 6, 8], calls: [3, 1], queueSize: 0, maxQueueSize: 10, isQueueEmpty: true }],
        ["probe.cjs", { engine: "wasm", results: ["a!", "b!", "c!"] }],
      ]) {
        const r = await node([probe], { cwd: project });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout), expected);
        assert.equal(r.stderr, "", "no warning where no addon is shipped");
      }
    });

    // An addon that is there but does not load: a file that is not a shared object at all, and
    // this platform's addon with its ELF machine field set to aarch64 (another platform's build).
    const breakers = {
      "not a shared object": (addon) => writeFileSync(addon, "this is not a Node addon\n"),
      "another machine's build": (addon) => {
        const bytes = readFileSync(addon);
        assert.equal(bytes.toString("latin1", 1, 4), "ELF", "the addon is an ELF file");
        bytes.writeUInt16LE(0xb7, 18); // e_machine: EM_AARCH64
        writeFileSync(addon, bytes);
      },
    };
    for (const [name, breakAddon] of Object.entries(breakers)) {
      test(`an addon that cannot load (${name}): one warning, then wasm`, async (t) => {
        const project = copyApp(`app-${name.replaceAll(" ", "-").replace("'", "")}`);
        const addons = addonsIn(project);
        assert.ok(addons.length >= 1);
        if (name === "another machine's build" && readFileSync(addons[0]).toString("latin1", 1, 4) !== "ELF") {
          // Only ELF platforms (Linux) can be tricked this way; elsewhere the first case covers it.
          for (const addon of addons) breakers["not a shared object"](addon);
        } else {
          for (const addon of addons) breakAddon(addon);
        }
        for (const [probe, expected] of [
          ["probe.mjs", { engine: "wasm", results: [2, 4, 6, 8], calls: [3, 1], queueSize: 0, maxQueueSize: 10, isQueueEmpty: true }],
          ["probe.cjs", { engine: "wasm", results: ["a!", "b!", "c!"] }],
          ["dual.mjs", { engine: "wasm", cjsEngine: "wasm", results: [1, 2] }],
        ]) {
          const r = await node([probe], { cwd: project });
          assert.equal(r.code, 0, r.stderr);
          assert.deepEqual(JSON.parse(r.stdout), expected);
          assert.equal(warnings(r.stderr), 1, `exactly one warning (${probe}):\n${r.stderr}`);
          assert.match(r.stderr, /native addon could not be loaded \(.+\); using the WebAssembly engine/);
          assert.match(r.stderr, /BATCHLING_BACKEND=wasm/);
          t.diagnostic(`${probe}: ${r.stderr.trim().split("\n")[0]}`);
        }
        // Choosing wasm explicitly silences it.
        const quiet = await node(["probe.mjs"], { cwd: project, env: { ...env, BATCHLING_BACKEND: "wasm" } });
        assert.equal(quiet.code, 0, quiet.stderr);
        assert.equal(JSON.parse(quiet.stdout).engine, "wasm");
        assert.equal(quiet.stderr, "");
      });
    }
  });
});
