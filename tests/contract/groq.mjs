// Contract row: Groq through groq-sdk, which calls {baseURL}/openai/v1/chat/completions. The
// fake serves Groq under /groq, so the declared host is /groq/openai/v1 (built in for
// https://api.groq.com/openai/v1).
import Groq from "groq-sdk";

export default {
  provider: "groq",
  model: "llama-3.1-8b-instant",
  hosts: (fake) => [{ baseUrl: `${fake.url}/groq/openai/v1`, provider: "groq" }],
  client: (fake, fetch, apiKey = "gsk-test") => new Groq({ apiKey, baseURL: `${fake.url}/groq`, fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.chat.completions.create({ model: "llama-3.1-8b-instant", temperature: 0.2, messages: [{ role: "system", content: "be brief" }, { role: "user", content: text }] }),
  answerText: (result) => result.choices[0].message.content,
  errorStatus: (error) => error?.status,
  faultRoutes: ["groq.files.create", "groq.batches.create", "groq.batches.retrieve", "groq.files.content"],
};
