// The core answers JSON calls with `{ ok: true, … }` or a refusal as data:
// `{ ok: false, code, error }`, or for an option `{ ok: false, code: "ERR_BATCHLING_INVALID_OPTION",
// option, message }`. These turn a refusal into the package's typed errors.
import { BatchlingError, InvalidOptionError } from "./errors.js";

/** A refusal, as the core writes it. */
export interface CoreRefusal {
  ok: false;
  code: string;
  /** The refused option (option refusals). */
  option?: string;
  message?: string;
  error?: string;
}

/** The error a refusal stands for: `InvalidOptionError` for an option, else `BatchlingError`. */
export function refusalError(refusal: CoreRefusal): BatchlingError {
  if (refusal.option !== undefined && refusal.code === "ERR_BATCHLING_INVALID_OPTION") {
    return new InvalidOptionError(refusal.option, refusal.message ?? "");
  }
  return new BatchlingError(refusal.code, refusal.error ?? refusal.message ?? "");
}

/** The core's answer without its `ok`, or throws the error its refusal stands for. */
export function coreAnswer<T>(json: string): T {
  const answer = JSON.parse(json) as ({ ok: true } & T) | CoreRefusal;
  if (!answer.ok) throw refusalError(answer);
  return answer;
}

/**
 * A JS value as JSON for the core's option checks, which read keys and plain values: `undefined`
 * values are left out (as `JSON.stringify` does), non-finite numbers, which JSON cannot hold,
 * travel as their `String()` so a refusal shows them as the caller wrote them, and objects nested
 * `depth` levels down travel as their shape only (`{}` / `[]`), so a job's messages, a schema
 * object or an API key are not copied for a check that does not read them.
 */
export function optionJson(value: unknown, depth: number): string {
  const shape = (v: unknown, level: number): unknown => {
    if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
    if (v === null || typeof v !== "object") return v;
    if (level >= depth) return Array.isArray(v) ? [] : {};
    if (Array.isArray(v)) return v.map((item) => shape(item, level + 1));
    return Object.fromEntries(Object.entries(v).map(([key, item]) => [key, shape(item, level + 1)]));
  };
  return JSON.stringify(shape(value, 0) ?? null);
}
