// Contract row: Anthropic messages, recognised by path shape plus the anthropic-version header.
import Anthropic from "@anthropic-ai/sdk";

export default {
  provider: "anthropic",
  model: "claude-haiku-4-5",
  hosts: () => [],
  client: (fake, fetch, apiKey = "ak-test") => new Anthropic({ apiKey, baseURL: fake.url, fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, system: "be brief", messages: [{ role: "user", content: text }] }),
  answerText: (result) => result.content[0].text,
  errorStatus: (error) => error?.status,
  faultRoutes: ["anthropic.batches.create", "anthropic.batches.retrieve", "anthropic.batches.results"],
};
