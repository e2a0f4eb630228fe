// Contract row: Together AI through its official SDK (together-ai), against the fake's
// /together/v1 module (presigned upload, `{job}` create wrapper; see fake-provider/together.mjs).
import Together from 'together-ai';

export default {
  provider: 'together',
  model: 'meta-llama/Llama-3.3-70B-Instruct-Turbo',
  hosts: (fake) => [{ baseUrl: `${fake.url}/together/v1`, provider: 'together' }],
  client: (fake, fetch, apiKey = 'k-test') =>
    new Together({ apiKey, baseURL: `${fake.url}/together/v1`, fetch, maxRetries: 0 }),
  ask: (client, text) =>
    client.chat.completions.create({
      model: 'meta-llama/Llama-3.3-70B-Instruct-Turbo',
      messages: [{ role: 'user', content: text }],
      max_tokens: 32,
    }),
  answerText: (result) => result.choices[0].message.content,
  errorStatus: (error) => error?.status,
  faultRoutes: [
    'together.files.create',
    'together.files.upload',
    'together.batches.create',
    'together.batches.retrieve',
    'together.files.content',
  ],
};
