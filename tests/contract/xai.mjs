// Contract row: xAI (Grok) chat completions. xAI has no official npm SDK for its API: users call
// its OpenAI-compatible chat endpoint with the openai SDK. Its URLs look like OpenAI's, so the
// fake's /xai/v1 base is declared as an xAI host (api.x.ai/v1 is built in).
import OpenAI from "openai";

export default {
  provider: "xai",
  model: "grok-4",
  hosts: (fake) => [{ baseUrl: `${fake.url}/xai/v1`, provider: "xai" }],
  client: (fake, fetch, apiKey = "xai-test") => new OpenAI({ apiKey, baseURL: `${fake.url}/xai/v1`, fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.chat.completions.create({ model: "grok-4", temperature: 0.2, messages: [{ role: "system", content: "be brief" }, { role: "user", content: text }] }),
  answerText: (result) => result.choices[0].message.content,
  errorStatus: (error) => error?.status,
  faultRoutes: ["xai.batches.create", "xai.batches.addRequests", "xai.batches.retrieve", "xai.batches.results"],
};
