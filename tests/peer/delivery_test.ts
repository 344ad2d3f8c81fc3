import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEFAULT_DELIVERY_CONFIG,
  DEFAULT_RECEIVER_CONFIG,
  FRAG_SIZE,
  type Fragment,
  MAX_MESSAGE,
  MAX_MESSAGE_FRAGS,
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
  maxBufferedBytes = DEFAULT_RECEIVER_CONFIG.maxBufferedBytes,
) {
  // Patient sender: with 30% loss each way a 30 s give-up can (rightly) fire; here we test
  // ordering and exactly-once, so let it retry for longer (and the receiver wait as long).
  const tx = new Sender({ ...cfg, giveUpMs: 600_000 });
  const rx = new Receiver({ partialTimeoutMs: 700_000, maxBufferedBytes });
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
      if (rx.onData(f, got, now) && !link.loss(i++)) tx.onAck(f.seq, f.frag, ev);
    }
  }
  return { ev, got, rx };
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

// ---- receive limits: what one peer can make us hold ----

/** One fragment from a (possibly hostile) peer. */
const frag = (seq: number, f: number, frags: number, size: number, msgNo = seq + 1): Fragment => ({
  seq,
  floor: 0,
  msgNo,
  frag: f,
  frags,
  direct: false,
  chunk: new Uint8Array(size).fill(seq & 0xff),
});

const limitCases: { name: string; f: Fragment; ack: boolean }[] = [
  { name: "a full-size chunk", f: frag(0, 0, 2, FRAG_SIZE), ack: true },
  { name: "a chunk one byte over FRAG_SIZE", f: frag(0, 0, 2, FRAG_SIZE + 1), ack: false },
  { name: "a 1435-byte chunk (a full datagram)", f: frag(0, 0, 2, 1435), ack: false },
  { name: "a 16-fragment message", f: frag(0, 15, MAX_MESSAGE_FRAGS, 1), ack: true },
  { name: "a 17-fragment message", f: frag(0, 0, MAX_MESSAGE_FRAGS + 1, 1), ack: false },
  { name: "a 32-fragment message", f: frag(0, 31, 32, 1), ack: false },
  { name: "frag not below frags", f: frag(0, 2, 2, 1), ack: false },
  { name: "zero frags", f: frag(0, 0, 0, 1), ack: false },
];
for (const c of limitCases) {
  Deno.test(`delivery: receive limits: ${c.name} is ${c.ack ? "taken" : "dropped unacked"}`, () => {
    const rx = new Receiver();
    assert.equal(rx.onData(c.f, [], 0), c.ack);
    assert.equal(rx.buffered, c.ack ? c.f.chunk.length : 0);
    if (!c.ack) assert.equal(rx.drops.get("oversize"), 1);
  });
}

Deno.test("delivery: the documented limits agree: 16 KiB is 16 fragments of 1 KiB", () => {
  assert.equal(FRAG_SIZE, 1024);
  assert.equal(MAX_MESSAGE, 16 * 1024);
  assert.equal(MAX_MESSAGE_FRAGS, 16);
  assert.throws(() => new Sender(cfg).send(1, bytes(MAX_MESSAGE + 1), false, 0), RangeError);
});

Deno.test("delivery: a peer flooding incomplete messages pins a bounded amount of memory", () => {
  const rx = new Receiver();
  const cap = DEFAULT_RECEIVER_CONFIG.maxBufferedBytes;
  // The attack: every message in the receive window, all fragments but the last, as big as
  // a datagram allows. Unbounded this holds 256 × 31 × 1435 bytes (~10.9 MiB) per peer.
  let acked = 0;
  for (let seq = 0; seq < 256; seq++) {
    for (let f = 0; f < 31; f++) if (rx.onData(frag(seq, f, 32, 1435), [], 0)) acked++;
  }
  for (let seq = 0; seq < 256; seq++) {
    for (let f = 0; f < MAX_MESSAGE_FRAGS - 1; f++) {
      if (rx.onData(frag(seq, f, MAX_MESSAGE_FRAGS, FRAG_SIZE), [], 0)) acked++;
    }
  }
  assert.ok(rx.buffered <= cap + MAX_MESSAGE, `holds ${rx.buffered} bytes`);
  assert.equal(acked * FRAG_SIZE, rx.buffered, "only what is held was acknowledged");
  assert.ok((rx.drops.get("buffer_full") ?? 0) > 0);
});

Deno.test("delivery: a full buffer still takes the next expected message, then frees up", () => {
  const rx = new Receiver({ maxBufferedBytes: 4 * FRAG_SIZE });
  const got: Received[] = [];
  // seq 1..4 complete but stuck behind seq 0, which has not arrived.
  for (let seq = 1; seq <= 4; seq++) assert.ok(rx.onData(frag(seq, 0, 1, FRAG_SIZE), got, 0));
  assert.equal(rx.onData(frag(5, 0, 1, FRAG_SIZE), got, 0), false, "seq 5: no room, no ACK");
  assert.ok(rx.onData(frag(0, 0, 2, FRAG_SIZE), got, 0), "seq 0 is taken even so");
  assert.ok(rx.onData(frag(0, 1, 2, 10), got, 0));
  assert.deepEqual(got.map((g) => g.msgNo), [1, 2, 3, 4, 5]);
  assert.equal(rx.buffered, 0);
  assert.ok(rx.onData(frag(5, 0, 1, FRAG_SIZE), got, 0), "the retransmission of seq 5 fits");
  assert.deepEqual(got.map((g) => g.msgNo), [1, 2, 3, 4, 5, 6]);
});

Deno.test("delivery: a tiny receive buffer slows delivery but loses nothing", () => {
  const msgs = [5000, 3000, 0, 4096, 1, 2500].map((n, i) => bytes(n, i + 3));
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const { got, ev, rx } = transfer(
    msgs,
    { loss: () => rnd() < 0.2, shuffle: true, dup: true },
    2 * FRAG_SIZE,
  );
  assert.deepEqual(got.map((g) => g.msgNo), msgs.map((_, i) => i + 1));
  got.forEach((g, i) => assert.deepEqual(g.bytes, msgs[i]));
  assert.equal(ev.filter((e) => e.type === "delivered").length, msgs.length);
  assert.ok((rx.drops.get("buffer_full") ?? 0) > 0, "the limit was reached");
});

Deno.test("delivery: an incomplete message times out and its memory is freed", () => {
  const t = DEFAULT_RECEIVER_CONFIG.partialTimeoutMs;
  assert.ok(t > cfg.giveUpMs, "a sender gives up before its message times out here");
  const cases: { name: string; expire: (rx: Receiver, at: number) => void }[] = [
    { name: "tick", expire: (rx, at) => rx.tick(at) },
    {
      name: "lazily, on the next fragment",
      expire: (rx, at) => rx.onData(frag(9, 0, 2, 1), [], at),
    },
  ];
  for (const c of cases) {
    const rx = new Receiver();
    const got: Received[] = [];
    assert.equal(rx.nextDeadline(), null);
    assert.ok(rx.onData(frag(0, 0, 2, FRAG_SIZE), got, 1000));
    assert.ok(rx.onData(frag(1, 0, 2, FRAG_SIZE), got, 5000));
    assert.equal(rx.nextDeadline(), 1000 + t, c.name);
    c.expire(rx, 1000 + t - 1);
    assert.ok(rx.buffered >= 2 * FRAG_SIZE, `${c.name}: not yet`);
    c.expire(rx, 1000 + t);
    assert.equal(rx.nextDeadline(), 5000 + t, c.name);
    assert.equal(rx.drops.get("expired"), 1, c.name);
    c.expire(rx, 5000 + t);
    assert.equal(rx.drops.get("expired"), 2, c.name);
    assert.ok(rx.buffered <= 1, `${c.name}: freed, holds ${rx.buffered}`);
    // The forgotten first half is gone: its second half alone completes nothing.
    assert.ok(rx.onData(frag(0, 1, 2, 5), got, 5000 + t));
    assert.equal(got.length, 0, c.name);
  }
});

Deno.test("delivery: without a time the receiver still works (nothing times out)", () => {
  const rx = new Receiver();
  const got: Received[] = [];
  assert.ok(rx.onData(frag(0, 0, 2, 4), got));
  assert.ok(rx.onData(frag(0, 1, 2, 4), got));
  assert.equal(got.length, 1);
});
