// Summarize a few texts with the official OpenAI SDK; run it through the batchling CLI so the
// calls become one OpenAI batch job (half the price of sync calls):
//
//   npx batchling examples/summarize.mjs:main --dry-run            # no key, no network
//   npx batchling examples/summarize.mjs:main --count=2 --dry-run  # keyword argument: 2 texts
//   OPENAI_API_KEY=sk-... npx batchling examples/summarize.mjs:main  # real batch (can take a while)
//
// The script itself knows nothing about batching: inside the CLI the global fetch the SDK uses
// is intercepted, calls are queued and grouped into a batch, and each call gets its answer back.
// With --dry-run nothing is sent: every call gets a synthetic answer and the CLI prints what
// would have been submitted and its estimated cost.
import OpenAI from "openai";

const TEXTS = [
  "The octopus has three hearts and blue blood. Two hearts pump blood through the gills, one through " +
    "the rest of the body, and that one stops beating while the octopus swims, which is why it prefers crawling.",
  "Honey found in ancient Egyptian tombs was still edible after thousands of years: its low water content " +
    "and acidity keep bacteria from growing, and bees add an enzyme that produces hydrogen peroxide.",
  "Venus turns so slowly that a day there (243 Earth days) is longer than its year (225 Earth days), and it " +
    "spins backwards, so the Sun rises in the west.",
  "Bananas are berries and strawberries are not: botanically a berry grows from a single ovary with seeds " +
    "inside, while a strawberry's seeds sit outside on a swollen receptacle.",
  "The Eiffel Tower grows by up to 15 centimetres in summer, because the iron expands in the heat; it was " +
    "meant to stand for only twenty years after the 1889 World's Fair.",
];

/**
 * Summarize the first `count` texts (all by default) in one sentence each, concurrently.
 * Called by the CLI as main(...positional, keywords): `--count=3` arrives as { count: "3" }.
 */
export async function main(...args) {
  const last = args.at(-1);
  const options = last !== null && typeof last === "object" ? last : {};
  const count = options.count === undefined ? TEXTS.length : Number(options.count);
  if (!Number.isInteger(count) || count < 1 || count > TEXTS.length) {
    throw new Error(`--count must be an integer from 1 to ${TEXTS.length}, got ${options.count}`);
  }
  const model = typeof options.model === "string" ? options.model : "gpt-4o-mini";

  const openai = new OpenAI({ apiKey: process.env.OPENAI_API_KEY ?? "sk-dry-run-no-key-needed" });
  const summaries = await Promise.all(
    TEXTS.slice(0, count).map(async (text) => {
      const completion = await openai.chat.completions.create({
        model,
        messages: [
          { role: "system", content: "Summarize the user's text in one short sentence." },
          { role: "user", content: text },
        ],
        max_completion_tokens: 60,
      });
      return completion.choices[0]?.message.content ?? "";
    }),
  );
  return summaries.map((summary, i) => ({ text: TEXTS[i].slice(0, 40) + "…", summary }));
}
