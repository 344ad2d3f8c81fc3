/**
 * The adversarial soak, short (tests/robust/_soak.ts has the scenario; bench/soak_bench.ts runs
 * it for minutes): under a malicious member's floods and name churn, every chat message arrives
 * exactly once and in order, bob's memory stays bounded and does not climb steadily, and the
 * server keeps answering STUN. The bounds are generous: timings are printed, not asserted tight.
 */
import assert from "node:assert/strict";
import { report, runSoak } from "./_soak.ts";

/** Bob's resident memory may never exceed this (an idle peer uses well under a third of it). */
const MAX_RSS_MIB = 400;
/** Growth allowed between the first and last quarter of the run (heap warm-up, GC timing). */
const MAX_GROWTH_MIB = 64;
/** A STUN answer later than this means the server stopped keeping up. */
const MAX_STUN_MS = 2000;

Deno.test({
  name: "soak: a malicious member's floods and name churn do not disturb alice and bob",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const f = await runSoak({ seconds: 25, floodPerSec: 400 });
    console.log(report(f));
    assert.deepEqual(
      f.trouble.filter((t) => t.endsWith("exited")),
      [],
      "every process ran to the end",
    );
    for (
      const [way, x] of [["alice -> bob", f.aliceToBob], ["bob -> alice", f.bobToAlice]] as const
    ) {
      assert.ok(x.sent >= 100, `${way}: a real chat (${x.sent} messages)`);
      assert.equal(x.once, x.sent, `${way}: every message exactly once: ${JSON.stringify(x)}`);
      assert.equal(x.outOfOrder, 0, `${way}: in order`);
    }
    // The attack reached bob: his drop counters show it.
    const flooded = Object.values(f.flood).reduce((a, b) => a + b, 0);
    assert.ok(flooded > 2000, `mallory sent ${flooded}`);
    const dropped = Object.values(f.bobDrops).reduce((a, b) => a + b, 0);
    assert.ok(dropped > 500, `bob dropped ${dropped}: ${JSON.stringify(f.bobDrops)}`);
    assert.ok(f.churn.registered >= 5, `churn registered ${f.churn.registered} times`);
    if (Deno.build.os === "linux") {
      assert.ok(f.bob.rssMaxMiB < MAX_RSS_MIB, `bob's RSS peaked at ${f.bob.rssMaxMiB} MiB`);
      assert.ok(f.bob.rssGrowthMiB < MAX_GROWTH_MIB, `bob's RSS grew ${f.bob.rssGrowthMiB} MiB`);
    }
    assert.ok(
      f.stunMs.answered >= f.stunMs.sent - 1,
      `STUN answered ${f.stunMs.answered}/${f.stunMs.sent}`,
    );
    assert.ok(f.stunMs.max < MAX_STUN_MS, `slowest STUN answer ${f.stunMs.max} ms`);
  },
});
