// Small pieces the hosts share: the user's options as JSON for the core, host time and timer delays.

/** Host time for the engine: monotonic milliseconds. */
export const now = (): number => performance.now();

/** setTimeout fires at once for delays over 2^31 - 1 ms; wait at most that long, then re-arm. */
export const timerDelay = (deadline: number): number => Math.min(2 ** 31 - 1, Math.max(0, Math.ceil(deadline - now())));

const FUNCTION = { $type: "function" };
const UNDEFINED = { $type: "undefined" };
const HOST_OBJECT = { $type: "object" };

/**
 * The user's options as JSON for the core's option checks (core/src/host/options.rs for
 * `RequestBatcher` and `batchify()`, core/src/host/batch_options.rs for `Batch`), which hold
 * every option rule. Values JSON cannot carry become markers the core reads: functions, keys
 * whose value is `undefined` (still keys: a misspelt one is reported), NaN / Infinity, BigInts
 * and Symbols (with `String(value)` for the message). Objects under a key in `hostObjects` (kept
 * by the host as they are, e.g. a cache's `storage`) become an opaque object. Objects nested
 * `depth` levels down travel as their shape only (`{}` / `[]`), so a job's messages, a schema
 * object or an API key are not copied for a check that does not read them.
 */
export function optionsJson(
  options: unknown,
  { hostObjects = [], depth = Infinity }: { hostObjects?: readonly string[]; depth?: number } = {},
): string {
  // How deep each object being written sits (the options themselves at 0).
  const levels = new WeakMap<object, number>();
  return JSON.stringify(options, function (this: object, key: string, value: unknown) {
    switch (typeof value) {
      case "function":
        return FUNCTION;
      case "undefined":
        return UNDEFINED;
      case "number":
        return Number.isFinite(value) ? value : { $type: "number", text: String(value) };
      case "bigint":
        return { $type: "bigint", text: String(value) };
      case "symbol":
        return { $type: "symbol", text: String(value) };
      case "object": {
        if (value === null) return value;
        if (key === "") {
          levels.set(value, 0);
          return value;
        }
        if (hostObjects.includes(key)) return HOST_OBJECT;
        const level = (levels.get(this) ?? 0) + 1;
        if (level >= depth) return Array.isArray(value) ? [] : {};
        levels.set(value, level);
        return value;
      }
      default:
        return value;
    }
  });
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
