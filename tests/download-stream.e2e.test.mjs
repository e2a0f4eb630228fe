// End to end: a results file of tens of MB (long answers) is read as a stream, handed to the
// engine in chunks of whole lines, and every caller still gets its exact answer.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { longReply } from "./fake-provider/common.mjs";
import { batchify } from "../dist/index.js";

const fake = useFakeProvider();

const openaiWith = (fetch) => new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 });
const chat = (content) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }] });

describe("large results files", () => {
  test("300 answers of 50-200 KB each (a ~40 MB output file) reach their callers exactly, in many chunks", async () => {
    const events = [];
    const ctx = batchify({ ...FAST, batchSize: 300, batchWindowMs: 10_000, onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    // Sizes vary per request; "é" and "✓" make multi-byte characters straddle the body's reads.
    const requests = Array.from({ length: 300 }, (_, i) => {
      const chars = 50_000 + ((i * 7919) % 150_000);
      return { text: `q${i} é✓ LONG:${chars}`, chars };
    });
    const answers = await Promise.all(requests.map((r) => client.chat.completions.create(chat(r.text))));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [300]);
    for (const [i, r] of requests.entries()) {
      const content = answers[i].choices[0].message.content;
      assert.equal(content.length, longReply(r.text, r.chars).length, `request ${i}: length`);
      assert.ok(content === longReply(r.text, r.chars), `request ${i}: exact answer`);
    }
    // The engine read the file a part at a time: one results event per chunk (plus the rest).
    const parts = events.filter((e) => e.kind === "resultsReceived");
    const totalChars = requests.reduce((n, r) => n + r.chars, 0);
    assert.ok(totalChars > 30_000_000, `the answers total ${totalChars} characters`);
    assert.ok(parts.length >= 20, `the file came in ${parts.length} parts`);
    assert.equal(parts.reduce((n, e) => n + e.results, 0), 300);
    assert.ok(parts.every((e) => e.results < 300), "no part held every result");
    assert.equal(events.filter((e) => e.kind === "warning").length, 0);
  });

  test("lines longer than a chunk (answers of 1.5M characters) are handed over whole", async () => {
    const events = [];
    const ctx = batchify({ ...FAST, batchSize: 6, batchWindowMs: 10_000, onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    const requests = [1_500_000, 10, 2_100_000, 20, 1_200_000, 30].map((chars, i) => ({ text: `big${i} ✓ LONG:${chars}`, chars }));
    const answers = await Promise.all(requests.map((r) => client.chat.completions.create(chat(r.text))));
    await ctx.close();
    for (const [i, r] of requests.entries()) {
      assert.ok(answers[i].choices[0].message.content === longReply(r.text, r.chars), `request ${i}`);
    }
    const parts = events.filter((e) => e.kind === "resultsReceived");
    assert.ok(parts.length >= 3, `the file came in ${parts.length} parts`);
    assert.equal(parts.reduce((n, e) => n + e.results, 0), 6);
    assert.equal(events.filter((e) => e.kind === "warning").length, 0);
  });

  test("short answers in a small file still come through (one part: the final response)", async () => {
    const events = [];
    const ctx = batchify({ ...FAST, batchSize: 5, batchWindowMs: 10_000, onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    const prompts = ["a", "b", "FAIL:400 c", "d", "e"];
    const settled = await Promise.allSettled(prompts.map((p) => client.chat.completions.create(chat(p))));
    await ctx.close();
    for (const [i, p] of prompts.entries()) {
      if (p.startsWith("FAIL:")) {
        assert.equal(settled[i].status, "rejected");
        assert.equal(settled[i].reason.status, 400);
      } else {
        assert.equal(settled[i].value.choices[0].message.content, `echo: ${p}`);
      }
    }
    const parts = events.filter((e) => e.kind === "resultsReceived");
    assert.equal(parts.reduce((n, e) => n + e.results, 0), 5);
  });

  test("a failed download (500) is answered whole and retried; every caller gets its answer once", async () => {
    const ctx = batchify({ ...FAST, batchSize: 20, batchWindowMs: 10_000 });
    const client = openaiWith(ctx.fetch);
    fake.faults.add({ route: "openai.files.content", status: 500, count: 1 });
    const requests = Array.from({ length: 20 }, (_, i) => ({ text: `r${i} LONG:${100_000 + i}`, chars: 100_000 + i }));
    const answers = await Promise.all(requests.map((r) => client.chat.completions.create(chat(r.text))));
    await ctx.close();
    assert.ok(fake.counters.faultsTriggered >= 1);
    for (const [i, r] of requests.entries()) {
      assert.ok(answers[i].choices[0].message.content === longReply(r.text, r.chars), `request ${i}`);
    }
  });
});
