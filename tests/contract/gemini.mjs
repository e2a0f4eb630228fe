// Contract row: Gemini generateContent. @google/genai takes no custom fetch: the driver runs every
// call inside ctx.run(), which intercepts the global fetch the SDK uses.
import { GoogleGenAI } from "@google/genai";

export default {
  provider: "gemini",
  model: "gemini-2.5-flash",
  hosts: () => [],
  client: (fake, _fetch, apiKey = "gk-test") => new GoogleGenAI({ apiKey, httpOptions: { baseUrl: fake.url } }),
  ask: (client, text) =>
    client.models.generateContent({ model: "gemini-2.5-flash", contents: text, config: { temperature: 0.2, systemInstruction: "be brief" } }),
  answerText: (result) => result.text,
  errorStatus: (error) => error?.status,
  faultRoutes: ["gemini.batches.create", "gemini.batches.retrieve"],
  // The SDK attaches the HTTP response headers; a batch answer's differ (no date, no CORS).
  comparable: ({ sdkHttpResponse: _headers, ...result }) => result,
};
