// npm run bench:download-memory: peak RSS of a batchify() run whose provider output file is
// about 100 MB.
//
// CALLS (500 by default) `openai.chat.completions.create` calls (official openai SDK,
// maxRetries: 0) through batchify({ batchSize: CALLS, cache: false }) against the fake provider,
// running in another process (its copy of the file is not counted). Each prompt carries the
// fake's `LONG:<n>` trigger (ANSWER_CHARS, 200,000 by default), so the batch's output file is
// CALLS × ~200 KB. Each caller checks its answer (length and head) and drops it, so what is
// measured is the download and its hand-over to the callers, not answers kept by the caller.
// Every run is a fresh process; reported: its peak RSS (maxRSS), its RSS just before the
// batch completes (the baseline: the SDK, the engine and the calls in flight), and the
// difference, median of ROUNDS.
//
// Env: BENCH_CALLS (500), BENCH_ANSWER_CHARS (200000), BENCH_ROUNDS (3), BENCH_DIST (the dist/
// to measure, default ../dist), BENCH_BASELINE_DIST (another build's dist/, e.g. one that reads
// the file whole, measured side by side).
import { fork } from "node:child_process";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SELF = fileURLToPath(import.meta.url);
const distUrl = (dir) => (dir ? pathToFileURL(join(dir, "index.js")).href : "../dist/index.js");

// ---- child: one run ------------------------------------------------------------------------

async function child(dist, calls, answerChars, url) {
  const { default: OpenAI } = await import("openai");
  const { batchify } = await import(dist);
  let baselineRss = 0;
  let submitted = 0;
  const ctx = batchify({
    batchSize: calls,
    batchWindowMs: 60_000,
    pollIntervalMs: 200,
    cache: false,
    onEvent: (event) => {
      if (event.kind === "batchSubmitted" && (submitted += event.requests) === calls) {
        baselineRss = process.memoryUsage().rss;
        process.send({ release: true }); // the batch completes at its next poll
      }
    },
  });
  const client = new OpenAI({ apiKey: "sk-bench", baseURL: `${url}/v1`, maxRetries: 0, fetch: ctx.fetch });
  let received = 0;
  const done = Array.from({ length: calls }, (_, i) =>
    client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `q${i} LONG:${answerChars}` }] })
      .then((answer) => {
        const content = answer.choices[0].message.content;
        if (!content.startsWith(`echo: q${i} LONG:`) || content.length < answerChars) throw new Error(`call ${i}: unexpected answer`);
        received += content.length;
      }),
  );
  await Promise.all(done);
  await ctx.close();
  return { peakRss: process.resourceUsage().maxRSS * 1024, baselineRss, received };
}

// ---- the fake provider, in its own process --------------------------------------------------

async function fakeProcess() {
  const { startFakeProvider } = await import("../tests/fake-provider/server.mjs");
  const fake = await startFakeProvider({ pollsUntilDone: 1e9, shuffleResults: false });
  process.on("message", (message) => {
    if (message === "hold") fake.config.pollsUntilDone = 1e9;
    if (message === "release") fake.config.pollsUntilDone = 0;
    if (message === "close") fake.close().then(() => process.exit(0));
  });
  process.send({ url: fake.url });
}

function startFake() {
  const proc = fork(SELF, ["fake"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    proc.once("error", reject);
    proc.once("message", ({ url }) => resolve({ url, proc }));
  });
}

function runChild(dist, calls, answerChars, fake) {
  fake.proc.send("hold");
  const proc = fork(SELF, ["child", dist, String(calls), String(answerChars), fake.url], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    proc.on("message", (message) => {
      if (message.release) fake.proc.send("release");
      if (message.result) resolve(message.result);
      if (message.error) reject(new Error(message.error));
    });
    proc.once("exit", (code) => code !== 0 && reject(new Error(`run exited with ${code}`)));
  });
}

// ---- parent ---------------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const MiB = (bytes) => (bytes / 2 ** 20).toFixed(0);

async function parent() {
  const calls = Number(process.env.BENCH_CALLS ?? 500);
  const answerChars = Number(process.env.BENCH_ANSWER_CHARS ?? 200_000);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const builds = [["this build", distUrl(process.env.BENCH_DIST)]];
  if (process.env.BENCH_BASELINE_DIST) builds.push(["baseline", distUrl(process.env.BENCH_BASELINE_DIST)]);
  const fake = await startFake();
  console.log(
    `${calls} openai SDK calls in one batchify() batch, answers of ${answerChars} characters (output file ~${MiB(calls * (answerChars + 600))} MiB), ` +
      `cache off, fake provider in another process; median of ${rounds} rounds, each a fresh process; node ${process.version}, ${availableParallelism()} CPUs`,
  );
  try {
    const runs = new Map(builds.map(([name]) => [name, []]));
    for (let round = 0; round < rounds; round++) {
      for (const [name, dist] of builds) runs.get(name).push(await runChild(dist, calls, answerChars, fake));
    }
    console.log("| build | peak RSS (MiB) | RSS before the results (MiB) | peak − before (MiB) |");
    console.log("|---|---:|---:|---:|");
    for (const [name, rs] of runs) {
      const peak = median(rs.map((r) => r.peakRss));
      const before = median(rs.map((r) => r.baselineRss));
      const growth = median(rs.map((r) => r.peakRss - r.baselineRss));
      console.log(`| ${name} | ${MiB(peak)} | ${MiB(before)} | ${MiB(growth)} |`);
    }
  } finally {
    fake.proc.send("close");
  }
}

const [role, ...args] = process.argv.slice(2);
if (role === "child") {
  const [dist, calls, answerChars, url] = args;
  child(dist, Number(calls), Number(answerChars), url).then(
    (result) => process.send({ result }, () => process.exit(0)),
    (error) => process.send({ error: String(error?.stack ?? error) }, () => process.exit(1)),
  );
} else if (role === "fake") {
  await fakeProcess();
} else {
  await parent();
}
