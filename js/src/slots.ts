// Per-item host state, by host id: the host numbers its adds itself (0, 1, 2, …) and the engine
// names items by that number (core/src/wire.rs, `HostIds`). Ids live in blocks of BLOCK
// consecutive ids, so an add writes straight into the block that is filling, a batch of
// consecutive ids is a slice of one or two blocks, and a block is dropped as soon as all its
// items have settled. One object per item would double a busy producer's garbage; one flat table
// of 100k+ entries would land in V8's old space, where every store of a fresh promise callback
// costs a write barrier. A block fills while it is young, like a per-batch array would.

export const BLOCK = 1024;

export type Settle = (value: unknown) => void;

export class Block {
  /** Host id of position 0. */
  readonly base: number;
  /** The item, replaced by its result once its batch returned (until the item settles). */
  readonly items: unknown[] = new Array(BLOCK);
  /** Settlement functions; undefined once the item has settled (or was never accepted). */
  readonly resolve: (Settle | undefined)[] = new Array(BLOCK);
  readonly reject: (Settle | undefined)[] = new Array(BLOCK);
  /** Ids of this block handed out so far. */
  filled = 0;
  /** Items handed out and not yet settled. */
  live = 0;

  constructor(base: number) {
    this.base = base;
  }
}

export class ItemStore {
  readonly #blocks = new Map<number, Block>();
  #filling: Block = this.#open(0);
  /** The next host id to hand out. */
  nextId = 0;

  #open(base: number): Block {
    const block = new Block(base);
    this.#blocks.set(base / BLOCK, block);
    return block;
  }

  /** Store a new item; the caller then stores its settlement functions with `settleWith`. */
  push(item: unknown): void {
    let block = this.#filling;
    if (block.filled === BLOCK) {
      if (block.live === 0) this.#blocks.delete(block.base / BLOCK);
      block = this.#filling = this.#open(this.nextId);
    }
    block.items[block.filled] = item;
    block.live++;
    this.nextId++;
  }

  /** A promise executor: stores the pushed item's settlement functions (no closure per item). */
  readonly executor = (resolve: Settle, reject: Settle): void => {
    const block = this.#filling;
    const at = block.filled++;
    block.resolve[at] = resolve;
    block.reject[at] = reject;
  };

  /** The block holding `id`, if any of its items is still live (or it is filling). */
  block(id: number): Block | undefined {
    return this.#blocks.get(Math.floor(id / BLOCK));
  }

  /** `count` items of `block` have settled; drop the block once all of them have. */
  settled(block: Block, count: number): void {
    block.live -= count;
    if (block.live === 0 && block.filled === BLOCK) this.#blocks.delete(block.base / BLOCK);
  }

  /** Items settled or not, for scans (`flush`). */
  blocks(): IterableIterator<Block> {
    return this.#blocks.values();
  }
}
