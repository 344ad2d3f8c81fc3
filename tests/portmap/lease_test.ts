import assert from "node:assert/strict";
import { DEFAULT_LEASE_CONFIG as CFG, LeaseClock } from "../../lib/portmap/lease.ts";

Deno.test("lease: renews at half the granted lease", () => {
  const c = new LeaseClock();
  assert.equal(c.nextDeadline(), null);
  c.granted(1000, 3600);
  assert.equal(c.nextDeadline(), 1000 + 1_800_000);
  assert.equal(c.due(1000 + 1_799_999), null);
  assert.equal(c.due(1000 + 1_800_000), "renew");
  c.granted(1_801_000, 7200);
  assert.equal(c.nextDeadline(), 1_801_000 + 3_600_000);
});

Deno.test("lease: tiny leases are not renewed more often than minRenewMs", () => {
  const c = new LeaseClock();
  c.granted(0, 4);
  assert.equal(c.nextDeadline(), CFG.minRenewMs);
});

Deno.test("lease: permanent mappings are refreshed now and then", () => {
  const c = new LeaseClock();
  c.granted(0, 0);
  assert.equal(c.nextDeadline(), CFG.permanentRefreshMs);
  assert.equal(c.failed(CFG.permanentRefreshMs), true, "a permanent mapping never expires");
});

Deno.test("lease: failed renewals retry until the lease runs out, then it is lost", () => {
  const c = new LeaseClock();
  c.granted(0, 600); // expires at 600 000
  assert.equal(c.failed(300_000), true);
  assert.equal(c.nextDeadline(), 300_000 + CFG.retryMs);
  assert.equal(c.failed(590_000), true);
  assert.equal(c.nextDeadline(), 595_000, "half the time left when that is sooner");
  assert.equal(c.expired(599_999), false);
  assert.equal(c.expired(600_000), true);
  assert.equal(c.failed(600_000), false);
  assert.equal(c.due(600_000), null);
  assert.equal(c.nextDeadline(), 600_000 + CFG.rediscoverMs);
  assert.equal(c.due(600_000 + CFG.rediscoverMs), "rediscover");
});

Deno.test("lease: no mapping at start means rediscover later; clear stops everything", () => {
  const c = new LeaseClock({ ...CFG, rediscoverMs: 50 });
  c.lost(10);
  assert.equal(c.due(60), "rediscover");
  c.clear();
  assert.equal(c.nextDeadline(), null);
  assert.equal(c.due(1e12), null);
});
