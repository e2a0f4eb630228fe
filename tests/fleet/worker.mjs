// One worker process of a fleet (tests/fleet.e2e.test.mjs): the official openai SDK inside
// batchify({ cache: { redis } }), asking the fake provider the prompts it is given. Each answer
// (or typed error) is one JSON line on stdout as it arrives, so a worker killed mid-run has said
// what it got; `{"done":true}` once closed.
//
//   node tests/fleet/worker.mjs '<json config>'
//   config: { fakeUrl, apiKey, prompts, batchify: { cache: { redis }, batchSize, … } }
import OpenAI from "openai";
import { batchify } from "../../dist/index.js";

const config = JSON.parse(process.argv[2]);
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const ctx = batchify(config.batchify);
const openai = new OpenAI({ apiKey: config.apiKey, baseURL: `${config.fakeUrl}/v1`, fetch: ctx.fetch, maxRetries: 0 });
say({ started: process.pid });
await Promise.all(
  config.prompts.map(async (prompt) => {
    try {
      const completion = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] });
      say({ prompt, content: completion.choices[0].message.content });
    } catch (error) {
      const cause = error?.cause ?? error;
      say({ prompt, error: cause?.code ?? error?.code ?? "unknown", message: String(cause?.message ?? error) });
    }
  }),
);
await ctx.close();
say({ done: true });
