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
