// node examples/request-batcher.mjs
// Batch single-row inserts into bulk inserts, grouped by tenant, with a per-item error.
import { RequestBatcher } from "batchling";

const db = {
  calls: 0,
  async bulkInsert(rows) {
    this.calls++;
    await new Promise((resolve) => setTimeout(resolve, 5)); // one round trip per batch
    return rows.map((row, i) => (row.name ? { id: `${row.tenant}-${this.calls}-${i}`, ...row } : new Error("name is required")));
  },
};

const users = new RequestBatcher({
  maxBatchSize: 100,
  maxDelayMs: 20,
  batchHandler: (rows) => db.bulkInsert(rows),
  keyGenerator: (row) => row.tenant, // one tenant per bulk insert
});

const rows = Array.from({ length: 250 }, (_, i) => ({ tenant: i % 2 ? "acme" : "globex", name: i === 7 ? "" : `user${i}` }));
const settled = await Promise.allSettled(rows.map((row) => users.add(row)));
await users.close();

const ok = settled.filter((s) => s.status === "fulfilled").length;
const failed = settled.filter((s) => s.status === "rejected").map((s) => s.reason.message);
console.log(`${ok} rows inserted in ${db.calls} bulk inserts; failed: ${JSON.stringify(failed)}`);
console.log("status:", users.getStatus());
