// `batchling serve`: runs the batching HTTP server (serve.ts) until SIGINT or SIGTERM.
import { CliUsageError, parseServeArgs, redisFlagError, SERVE_HELP_TEXT, type ServeArgs } from "./cli-args.js";
import { BatchlingError } from "./errors.js";
import { serve } from "./serve.js";

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => stream.write(text, () => resolve()));
}

/** Runs until a signal; resolves with the exit status. */
export async function runServeCommand(argv: readonly string[]): Promise<number> {
  let args: ServeArgs;
  try {
    args = parseServeArgs(argv, process.env);
  } catch (error) {
    if (error instanceof CliUsageError) {
      await write(process.stderr, `batchling: ${error.problem}\nRun \`batchling serve --help\` for details.\n`);
      return 2;
    }
    throw error;
  }
  if (args.help) {
    await write(process.stdout, SERVE_HELP_TEXT + "\n");
    return 0;
  }
  let handle;
  try {
    handle = await serve({
      port: args.port,
      listen: args.listen,
      token: args.token,
      batchify: {
        ...args.batchify,
        // Without a terminal to draw on, each retry and warning is one line on stderr.
        onEvent: (event) => {
          if (event.kind === "warning") process.stderr.write(`batchling serve: warning: ${event.message}\n`);
          if (event.kind === "retry") {
            process.stderr.write(`batchling serve: ${event.step}: ${event.reason} (${event.host}), retry ${event.attempt}/${event.maxAttempts} in ${event.delayMs} ms\n`);
          }
        },
      },
    });
  } catch (error) {
    const flagError = redisFlagError(error);
    if (flagError) {
      await write(process.stderr, `batchling serve: ${flagError.problem}\nRun \`batchling serve --help\` for details.\n`);
      return 2;
    }
    if (error instanceof BatchlingError) {
      await write(process.stderr, `batchling serve: ${error.message} (${error.code})\n`);
      return 2;
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      await write(process.stderr, `batchling serve: cannot listen on ${args.listen}:${args.port}: ${(error as Error).message}\n`);
      return 1;
    }
    throw error;
  }
  const routes = handle.routes.map((r) => `  ${handle.url}${r.prefix} -> ${r.upstream}`).join("\n");
  await write(process.stderr, `batchling serve: listening on ${handle.url}${args.batchify.dryRun ? " (dry run)" : ""}\n${routes}\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  await write(
    process.stderr,
    `batchling serve: ${signal}: stopping; requests already in provider batches stay in the journal, and clients' retries are answered from it after a restart\n`,
  );
  await handle.close();
  return 0;
}
