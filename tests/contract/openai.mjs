// Contract row: OpenAI chat completions, recognised by path shape on any host.
import OpenAI from "openai";

export default {
  provider: "openai",
  model: "gpt-4o-mini",
  hosts: () => [],
  client: (fake, fetch, apiKey = "sk-test") => new OpenAI({ apiKey, baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.chat.completions.create({ model: "gpt-4o-mini", temperature: 0.2, messages: [{ role: "system", content: "be brief" }, { role: "user", content: text }] }),
  answerText: (result) => result.choices[0].message.content,
  errorStatus: (error) => error?.status,
  faultRoutes: ["openai.files.create", "openai.batches.create", "openai.batches.retrieve", "openai.files.content"],
};
