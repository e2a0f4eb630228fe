// Contract row: Doubleword, an OpenAI-compatible batch host reached with the openai SDK and a
// baseURL (built in for https://api.doubleword.ai/v1; the fake serves it under /doubleword/v1).
import OpenAI from "openai";

export default {
  provider: "doubleword",
  model: "Qwen/Qwen3-30B-A3B-Instruct-2507-FP8",
  hosts: (fake) => [{ baseUrl: `${fake.url}/doubleword/v1`, provider: "doubleword" }],
  client: (fake, fetch, apiKey = "dw-test") => new OpenAI({ apiKey, baseURL: `${fake.url}/doubleword/v1`, fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.chat.completions.create({ model: "Qwen/Qwen3-30B-A3B-Instruct-2507-FP8", max_tokens: 64, messages: [{ role: "user", content: text }] }),
  answerText: (result) => result.choices[0].message.content,
  errorStatus: (error) => error?.status,
  faultRoutes: ["doubleword.files.create", "doubleword.batches.create", "doubleword.batches.retrieve", "doubleword.files.content"],
};
