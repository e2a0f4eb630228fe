// Test helpers shared by test files (not tests themselves): the fake provider for one test file.
import { before, after, beforeEach } from "node:test";
import { startFakeProvider } from "../fake-provider/server.mjs";

/** batchify options for tests: short windows and polls, quick retries, no cache file. */
export const FAST = { batchWindowMs: 30, pollIntervalMs: 10, retry: { attempts: 6, backoffMs: 5, maxBackoffMs: 40 }, cache: false };

/**
 * Starts a fake provider before the file's tests, resets it before each test and closes it
 * after them. Returns a stand-in that reads through to the running fake (`fake.url`,
 * `fake.counters`, …), usable once the tests run.
 */
export function useFakeProvider(options) {
  let server;
  before(async () => {
    server = await startFakeProvider(options);
  });
  after(() => server.close());
  beforeEach(() => server.reset());
  return new Proxy({}, { get: (_, key) => server[key] });
}
