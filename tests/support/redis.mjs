// Test helpers shared by test files (not tests themselves): a redis-server of the test's own on a
// free port of 127.0.0.1, with append-only persistence in a directory the test gives, stopped by
// its PID.
import { spawn } from "node:child_process";
import { createServer } from "node:net";

/** A port nothing listens on right now. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A redis-server of its own; `stop()` ends it by its PID (SIGTERM: it flushes its AOF). */
export async function startRedis(port, dir, { appendonly = "yes" } = {}) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--appendonly", appendonly, "--dir", dir, "--save", ""], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 10_000);
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}):\n${out}`));
    });
    proc.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start redis-server (${error.message}): \`npm run setup:test\` installs it`));
    });
  });
  return {
    pid: proc.pid,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGTERM");
      await exited;
    },
  };
}
