import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEFAULT_DELIVERY_CONFIG,
  FRAG_SIZE,
  type Fragment,
  MAX_MESSAGE,
  type Received,
  Receiver,
  Sender,
  type TxEvent,
} from "../../lib/peer/delivery.ts";

const cfg = DEFAULT_DELIVERY_CONFIG;
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * seed) & 0xff);

/** Runs sender -> receiver over a lossy, reordering, duplicating link with a fake clock. */
function transfer(
  msgs: Uint8Array[],
  link: { loss: (i: number) => boolean; shuffle: boolean; dup: boolean },
) {
  // Patient sender: with 30% loss each way a 30 s give-up can (rightly) fire; here we test
  // ordering and exactly-once, so let it retry for longer.
  const tx = new Sender({ ...cfg, giveUpMs: 600_000 });
  const rx = new Receiver();
  const ev: TxEvent[] = [];
  const got: Received[] = [];
  msgs.forEach((m, i) => tx.send(i + 1, m, false, 0));
  let i = 0;
  for (let now = 0; now < 700_000 && tx.pending > 0; now += 50) {
    let frags: Fragment[] = tx.tick(now, ev);
    if (link.shuffle) frags = frags.reverse();
    if (link.dup) frags = frags.flatMap((f) => [f, f]);
    for (const f of frags) {
      if (link.loss(i++)) continue;
      if (rx.onData(f, got) && !link.loss(i++)) tx.onAck(f.seq, f.frag, ev);
    }
  }
  return { ev, got };
}

Deno.test("delivery: 16 KiB arrives whole in fragments of at most FRAG_SIZE", () => {
  const tx = new Sender(cfg);
  tx.send(1, bytes(MAX_MESSAGE), true, 0);
  const frags = tx.tick(0, []);
  assert.equal(frags.length, MAX_MESSAGE / FRAG_SIZE);
  assert.ok(frags.every((f) => f.chunk.length <= FRAG_SIZE));
  const { got, ev } = transfer([bytes(MAX_MESSAGE, 3)], {
    loss: () => false,
    shuffle: true,
    dup: false,
  });
  assert.deepEqual(got[0]!.bytes, bytes(MAX_MESSAGE, 3));
  assert.deepEqual(ev, [{ type: "delivered", msgNo: 1 }]);
});

Deno.test("delivery: exactly once and in order over loss, reordering and duplication", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 0, max: 2 ** 31 }),
      fc.boolean(),
      (sizes, seed, dup) => {
        let s = seed;
        const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
        const msgs = sizes.map((n, i) => bytes(n, i + 2));
        const { got, ev } = transfer(msgs, { loss: () => rnd() < 0.3, shuffle: true, dup });
        assert.deepEqual(got.map((g) => g.msgNo), msgs.map((_, i) => i + 1));
        got.forEach((g, i) => assert.deepEqual(g.bytes, msgs[i]));
        assert.equal(ev.filter((e) => e.type === "delivered").length, msgs.length);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("delivery: retransmits with backoff, gives up and reports undelivered", () => {
  const tx = new Sender(cfg);
  tx.send(9, bytes(10), false, 0);
  const ev: TxEvent[] = [];
  const sendTimes: number[] = [];
  for (let now = 0; now <= cfg.giveUpMs + 1000; now += 10) {
    if (tx.tick(now, ev).length > 0) sendTimes.push(now);
  }
  assert.deepEqual(ev, [{ type: "undelivered", msgNo: 9 }]);
  const gaps = sendTimes.slice(1).map((t, i) => t - sendTimes[i]!);
  assert.ok(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]!), `backoff grows: ${gaps}`);
  assert.ok(Math.max(...gaps) <= cfg.maxRtoMs);
});

Deno.test("delivery: a receiver skips what the sender gave up on (floor)", () => {
  const rx = new Receiver();
  const got: Received[] = [];
  const f = (seq: number, floor: number): Fragment => ({
    seq,
    floor,
    msgNo: seq + 1,
    frag: 0,
    frags: 1,
    direct: false,
    chunk: new Uint8Array([seq]),
  });
  assert.ok(rx.onData(f(1, 0), got));
  assert.equal(got.length, 0, "waits for seq 0");
  rx.onData(f(2, 1), got);
  assert.deepEqual(got.map((g) => g.msgNo), [2, 3]);
  assert.ok(rx.onData(f(1, 1), got), "a duplicate is acked again");
  assert.equal(got.length, 2, "but not delivered twice");
});

Deno.test("delivery: abandon reports every queued message", () => {
  const tx = new Sender(cfg);
  tx.send(1, bytes(1), false, 0);
  tx.send(2, bytes(1), false, 0);
  const ev: TxEvent[] = [];
  tx.abandon(ev);
  assert.deepEqual(ev.map((e) => e.type), ["undelivered", "undelivered"]);
  assert.equal(tx.pending, 0);
});
