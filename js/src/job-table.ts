// A Batch's jobs in a few bytes each: inline jobs as given, a `.jsonl` source's as where their
// lines are (offsets and lengths in typed arrays, ~12 bytes a job), and an index from job id to
// position that keeps only a 32-bit hash per job (~8 bytes), confirming a hash match by the id
// itself (read again from its line). A million jobs take ~25 MB instead of the ~150 MB of one
// object and one Map entry per job.
import { openSync, readSync } from "node:fs";
import type { JobInput, SourceFile } from "./batch-types.js";

/** A source file's lines, from position `start` on. */
interface FileSegment {
  start: number;
  file: SourceFile;
  offsets: Float64Array;
  lengths: Uint32Array;
  count: number;
}

/** Inline jobs (their ids set), from position `start` on. */
interface InlineSegment {
  start: number;
  jobs: JobInput[];
}

type Segment = FileSegment | InlineSegment;

/** A job of a source file: where its line is (read again when the job is built). */
export class LineRef {
  constructor(
    readonly file: SourceFile,
    readonly offset: number,
    readonly length: number,
  ) {}
}

export class JobTable {
  readonly #segments: Segment[] = [];
  #size = 0;
  /** Open addressing over positions: `#slots[i]` is a position + 1 (0: free), `#hashes[i]` its id's hash. */
  #slots = new Int32Array(1024);
  #hashes = new Uint32Array(1024);

  get size(): number {
    return this.#size;
  }

  /** An inline job, its id set (checked unique by the caller with `has`). */
  addInline(job: JobInput): void {
    let last = this.#segments.at(-1);
    if (last === undefined || !("jobs" in last)) {
      last = { start: this.#size, jobs: [] };
      this.#segments.push(last);
    }
    last.jobs.push(job);
    this.#indexNew(job.id!);
  }

  /** Starts a source file's lines; `addLine` appends to it, `rollBack` drops it. */
  beginFile(file: SourceFile): void {
    this.#segments.push({ start: this.#size, file, offsets: new Float64Array(1024), lengths: new Uint32Array(1024), count: 0 });
  }

  /** A line of the file begun last, whose job has id `id` (checked unique with `has`). */
  addLine(id: string, offset: number, length: number): void {
    const segment = this.#segments.at(-1) as FileSegment;
    if (segment.count === segment.offsets.length) {
      const offsets = new Float64Array(segment.count * 2);
      offsets.set(segment.offsets);
      const lengths = new Uint32Array(segment.count * 2);
      lengths.set(segment.lengths);
      segment.offsets = offsets;
      segment.lengths = lengths;
    }
    segment.offsets[segment.count] = offset;
    segment.lengths[segment.count] = length;
    segment.count++;
    this.#indexNew(id);
  }

  /** Drops the jobs from position `size` on (a source with bad jobs adds none). */
  rollBack(size: number): void {
    while (this.#segments.length > 0 && this.#segments.at(-1)!.start >= size) this.#segments.pop();
    const last = this.#segments.at(-1);
    if (last !== undefined) {
      if ("jobs" in last) last.jobs.length = size - last.start;
      else last.count = size - last.start;
    }
    this.#size = size;
    const hashes: [number, number][] = [];
    for (let i = 0; i < this.#slots.length; i++) {
      const position = this.#slots[i]! - 1;
      if (position >= 0 && position < size) hashes.push([this.#hashes[i]!, position]);
    }
    this.#slots.fill(0);
    for (const [hash, position] of hashes) this.#place(hash, position);
  }

  /** The job at `position`: an inline job, or where its line is. */
  job(position: number): JobInput | LineRef {
    const segment = this.#segmentOf(position);
    if ("jobs" in segment) return segment.jobs[position - segment.start]!;
    const i = position - segment.start;
    return new LineRef(segment.file, segment.offsets[i]!, segment.lengths[i]!);
  }

  /** The job at `position`, its line read and parsed when it is a source file's, its id set. */
  read(position: number): JobInput {
    const job = this.job(position);
    if (!(job instanceof LineRef)) return job;
    const file = job.file;
    file.fd ??= openSync(file.source.path, "r");
    const bytes = Buffer.allocUnsafe(job.length);
    readSync(file.fd, bytes, 0, job.length, job.offset);
    const parsed = JSON.parse(bytes.toString("utf8")) as JobInput;
    // A source job without an id is named by its position, as when it was added.
    return { ...parsed, id: parsed.id ?? `job-${position + 1}` };
  }

  id(position: number): string {
    return this.read(position).id!;
  }

  /** The ids of the inline jobs (the state header lists those). */
  inlineIds(): string[] {
    return this.#segments.flatMap((segment) => ("jobs" in segment ? segment.jobs.map((job) => job.id!) : []));
  }

  has(id: string): boolean {
    return this.indexOf(id) !== undefined;
  }

  /** The position of the job with id `id`. */
  indexOf(id: unknown): number | undefined {
    if (typeof id !== "string") return undefined;
    const hash = hashOf(id);
    const mask = this.#slots.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const position = this.#slots[i]! - 1;
      if (position < 0) return undefined;
      if (this.#hashes[i] === hash && this.id(position) === id) return position;
    }
  }

  #indexNew(id: string): void {
    const position = this.#size++;
    if (this.#size * 2 > this.#slots.length) this.#grow();
    this.#place(hashOf(id), position);
  }

  #place(hash: number, position: number): void {
    const mask = this.#slots.length - 1;
    let i = hash & mask;
    while (this.#slots[i] !== 0) i = (i + 1) & mask;
    this.#slots[i] = position + 1;
    this.#hashes[i] = hash;
  }

  #grow(): void {
    const slots = this.#slots;
    const hashes = this.#hashes;
    this.#slots = new Int32Array(slots.length * 2);
    this.#hashes = new Uint32Array(slots.length * 2);
    for (let i = 0; i < slots.length; i++) if (slots[i] !== 0) this.#place(hashes[i]!, slots[i]! - 1);
  }

  #segmentOf(position: number): Segment {
    if (position < 0 || position >= this.#size) throw new RangeError(`no job at position ${position}`);
    const segments = this.#segments;
    let lo = 0;
    let hi = segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segments[mid]!.start <= position) lo = mid;
      else hi = mid - 1;
    }
    return segments[lo]!;
  }
}

/** FNV-1a over the id's UTF-16 code units. */
function hashOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
