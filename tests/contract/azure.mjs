// Contract row: Azure OpenAI through the openai package's AzureOpenAI client (classic deployment
// URLs: POST {endpoint}/openai/deployments/{model}/chat/completions?api-version=…, `api-key`
// header). Built in for https://*.openai.azure.com/openai; the fake serves it under /azure/openai.
import { AzureOpenAI } from "openai";

export default {
  provider: "azure",
  model: "gpt-4o-mini-batch", // the deployment name
  hosts: (fake) => [{ baseUrl: `${fake.url}/azure/openai`, provider: "azure" }],
  client: (fake, fetch, apiKey = "az-test") =>
    new AzureOpenAI({ endpoint: `${fake.url}/azure`, apiKey, apiVersion: "2024-10-21", fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.chat.completions.create({ model: "gpt-4o-mini-batch", temperature: 0.2, messages: [{ role: "system", content: "be brief" }, { role: "user", content: text }] }),
  answerText: (result) => result.choices[0].message.content,
  errorStatus: (error) => error?.status,
  faultRoutes: ["azure.files.create", "azure.batches.create", "azure.batches.retrieve", "azure.files.content"],
};
