import assert from "node:assert/strict";
import fc from "fast-check";
import { MAX_COUNTER, ReplayWindow } from "../../lib/crypto/replay.ts";

Deno.test("replay: in-order counters accepted once", () => {
  const w = new ReplayWindow();
  assert.equal(w.highest, -1n);
  for (let n = 0n; n < 100n; n++) {
    assert.ok(w.check(n));
    assert.ok(w.accept(n));
    assert.equal(w.check(n), false);
    assert.equal(w.accept(n), false);
  }
  assert.equal(w.highest, 99n);
});

Deno.test("replay: window edges for 2048 bits (2016 counters back)", () => {
  const w = new ReplayWindow(2048);
  assert.equal(w.windowSize, 2016n);
  assert.ok(w.accept(5000n));
  assert.ok(w.check(5000n - 2016n), "oldest counter still in the window");
  assert.equal(w.check(5000n - 2017n), false, "one older is outside");
  assert.ok(w.accept(5000n - 2016n));
  assert.equal(w.accept(5000n - 2016n), false);
  assert.ok(w.accept(4999n));
});

Deno.test("replay: a big jump forgets old state but not new", () => {
  const w = new ReplayWindow(64);
  for (let n = 0n; n < 40n; n++) w.accept(n);
  assert.ok(w.accept(1_000_000n));
  assert.equal(w.check(39n), false, "far behind now");
  assert.ok(w.accept(1_000_000n - 32n), "fresh slot inside the new window");
  assert.ok(w.accept(999_999n));
  assert.equal(w.accept(999_999n), false);
});

Deno.test("replay: bounds and bad sizes", () => {
  const w = new ReplayWindow();
  assert.equal(w.check(-1n), false);
  assert.equal(w.accept(MAX_COUNTER + 1n), false, "2^64-1 is the reserved Noise nonce");
  assert.ok(w.accept(MAX_COUNTER));
  assert.equal(w.accept(MAX_COUNTER), false);
  assert.ok(w.accept(MAX_COUNTER - 1n));
  for (const bits of [0, 32, 100, 1.5]) {
    assert.throws(() => new ReplayWindow(bits), /Cannot create replay window/);
  }
});

Deno.test("replay: matches a set-based model (property)", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(64, 128, 2048),
      fc.array(fc.oneof(fc.bigInt({ min: 0n, max: 300n }), fc.bigInt({ min: 0n, max: 5000n })), {
        maxLength: 400,
      }),
      (bits, counters) => {
        const w = new ReplayWindow(bits);
        const seen = new Set<bigint>();
        let top = -1n;
        for (const c of counters) {
          // Model: new, and no more than windowSize behind the highest accepted counter.
          const expected = !seen.has(c) && c + w.windowSize >= top;
          assert.equal(w.check(c), expected, `check ${c}`);
          assert.equal(w.accept(c), expected, `accept ${c}`);
          if (expected) {
            seen.add(c);
            if (c > top) top = c;
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});
