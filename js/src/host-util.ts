// Small pieces both hosts share: option checks, host time and timer delays.
import { InvalidOptionError } from "./errors.js";

/** Host time for the engine: monotonic milliseconds. */
export const now = (): number => performance.now();

/** setTimeout fires at once for delays over 2^31 - 1 ms; wait at most that long, then re-arm. */
export const timerDelay = (deadline: number): number => Math.min(2 ** 31 - 1, Math.max(0, Math.ceil(deadline - now())));

/** A whole number >= `min` (and a safe integer, so the engine gets it exactly). */
export function checkCount(name: string, value: unknown, min: number, required = false): void {
  if (value === undefined && !required) return;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    const what = value === undefined ? "is required" : `got ${String(value)}`;
    throw new InvalidOptionError(name, `must be an integer >= ${min}, ${what}`);
  }
}

/** Refuse misspelt options instead of silently ignoring them. `prefix` names nested objects. */
export function checkKnownKeys(options: object, known: readonly string[], prefix = ""): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(`${prefix}${key}`, `unknown option; known options: ${known.join(", ")}`);
    }
  }
}

/** The engine reports ranges the JS checks cannot see as "invalid option `name`: …". */
export function engineOptionError(error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  const match = /invalid option `([^`]+)`: (.*)/.exec(message);
  return match ? new InvalidOptionError(match[1]!, match[2]!) : error;
}

/**
 * The one timer a host keeps for its engine: `set(deadline)` after every engine call, with the
 * engine's next deadline (host time, ms) or null. Re-arms only when the deadline changes.
 */
export class DeadlineTimer {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #at = Infinity;
  readonly #onFire: () => void;

  constructor(onFire: () => void) {
    this.#onFire = onFire;
  }

  set(deadline: number | null): void {
    if (deadline === null) {
      this.clear();
      return;
    }
    if (this.#timer !== undefined && this.#at === deadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#at = deadline;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#at = Infinity;
      this.#onFire();
    }, timerDelay(deadline));
  }

  clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }
}
