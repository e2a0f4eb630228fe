// The core answers its checks with an envelope, errors as data rather than text:
// `{ ok: true, … }` or `{ ok: false, code, message, option? }` (core/src/host/options.rs). This
// turns a refusal into the typed error users catch.
import { BatchlingError, InvalidOptionError } from "./errors.js";
import type { OptionError } from "./generated/core.js";

/** A refusal of the core: a stable `ERR_BATCHLING_*` code, and for an option, which one. */
export type CoreRefusal = { ok: false; code: string; message: string; option?: OptionError["option"] };

export type CoreEnvelope<T> = ({ ok: true } & T) | CoreRefusal;

/** The typed error of a refusal: `InvalidOptionError` when it names an option. */
export function coreError(refusal: CoreRefusal): BatchlingError {
  if (refusal.code === "ERR_BATCHLING_INVALID_OPTION" && refusal.option !== undefined) {
    return new InvalidOptionError(refusal.option, refusal.message);
  }
  return new BatchlingError(refusal.code, refusal.message);
}

/** The answer of an envelope; a refusal is thrown as its typed error. */
export function unwrapEnvelope<T>(json: string): T {
  const envelope = JSON.parse(json) as CoreEnvelope<T>;
  if (!envelope.ok) throw coreError(envelope);
  return envelope;
}

/** The engine options of a core options check (`checkBatcherOptions`, `checkInterceptorOptions`). */
export function checkedOptions<T>(json: string): T {
  return unwrapEnvelope<{ options: T }>(json).options;
}
