// Contract row: Mistral through the official SDK (@mistralai/mistralai). The SDK's HTTPClient
// calls its fetcher with one `Request` object (no init), which ctx.fetch accepts as is.
import { Mistral } from '@mistralai/mistralai';
import { HTTPClient } from '@mistralai/mistralai/lib/http.js';

export default {
  provider: 'mistral',
  model: 'mistral-small-latest',
  hosts: (fake) => [{ baseUrl: `${fake.url}/mistral/v1`, provider: 'mistral' }],
  client: (fake, fetch, apiKey = 'k-test') =>
    new Mistral({
      apiKey,
      serverURL: `${fake.url}/mistral`,
      retryConfig: { strategy: 'none' },
      ...(fetch ? { httpClient: new HTTPClient({ fetcher: fetch }) } : {}),
    }),
  ask: (client, text) => client.chat.complete({ model: 'mistral-small-latest', messages: [{ role: 'user', content: text }] }),
  answerText: (result) => result.choices[0].message.content,
  // SDKError / HTTPValidationError (both MistralError) carry the HTTP status as statusCode.
  errorStatus: (error) => error?.statusCode,
  faultRoutes: ['mistral.files.create', 'mistral.batches.create', 'mistral.batches.retrieve', 'mistral.files.content'],
};
