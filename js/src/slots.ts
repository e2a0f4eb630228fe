// Per-item host state, by engine slot index, in pages of 256 slots.
// One object per item would double a busy producer's garbage; flat arrays of 100k+ entries land
// in V8's old space, where every store of a fresh promise callback costs a write barrier and a
// remembered-set entry. Small pages stay young while they fill, like a per-batch array would.

const PAGE_BITS = 8;
const PAGE_SIZE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SIZE - 1;
const FIELDS = 5;

export const ITEM = 0;
export const RESOLVE = 1;
export const REJECT = 2;
export const RESULT = 3;
export const SEQ = 4;

interface Page {
  /** Engine id per slot; -1 when free. A plain number array: V8 keeps doubles unboxed in it,
   * and unlike a typed array it needs no off-heap buffer for the GC to track. */
  ids: number[];
  refs: unknown[];
}

export class SlotTable {
  readonly #pages: Page[] = [];

  /** Number of slots the table spans (for scans). */
  get span(): number {
    return this.#pages.length * PAGE_SIZE;
  }

  #page(slot: number): Page {
    const index = slot >>> PAGE_BITS;
    let page = this.#pages[index];
    if (page === undefined) {
      while (this.#pages.length <= index) {
        this.#pages.push({ ids: new Array<number>(PAGE_SIZE).fill(-1), refs: new Array(PAGE_SIZE * FIELDS) });
      }
      page = this.#pages[index]!;
    }
    return page;
  }

  id(slot: number): number {
    const page = this.#pages[slot >>> PAGE_BITS];
    return page === undefined ? -1 : page.ids[slot & PAGE_MASK]!;
  }

  get(slot: number, field: number): unknown {
    return this.#page(slot).refs[(slot & PAGE_MASK) * FIELDS + field];
  }

  set(slot: number, field: number, value: unknown): void {
    this.#page(slot).refs[(slot & PAGE_MASK) * FIELDS + field] = value;
  }

  occupy(slot: number, id: number, item: unknown, resolve: unknown, reject: unknown, seq: number): void {
    const page = this.#page(slot);
    const base = (slot & PAGE_MASK) * FIELDS;
    page.ids[slot & PAGE_MASK] = id;
    page.refs[base + ITEM] = item;
    page.refs[base + RESOLVE] = resolve;
    page.refs[base + REJECT] = reject;
    page.refs[base + SEQ] = seq;
  }

  free(slot: number): void {
    const page = this.#page(slot);
    const base = (slot & PAGE_MASK) * FIELDS;
    page.ids[slot & PAGE_MASK] = -1;
    page.refs[base + ITEM] = undefined;
    page.refs[base + RESOLVE] = undefined;
    page.refs[base + REJECT] = undefined;
    page.refs[base + RESULT] = undefined;
  }
}
