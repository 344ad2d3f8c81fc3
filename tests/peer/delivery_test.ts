import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEFAULT_DELIVERY_CONFIG,
  DEFAULT_RECEIVER_CONFIG,
  type DeliveryConfig,
  FRAG_SIZE,
  type Fragment,
  MAX_MESSAGE,
  MAX_MESSAGE_FRAGS,
  MIN_WINDOW,
  type Received,
  Receiver,
  RX_BUFFER_BYTES,
  RX_WINDOW,
  Sender,
  type TxEvent,
} from "../../lib/peer/delivery.ts";
import type { Ack } from "../../lib/peer/delivery.ts";
import { MemNet } from "../_helpers/memnet.ts";

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
      if (rx.onData(f, got, now) && !link.loss(i++)) tx.onAck(f.seq, f.frag, ev, now);
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

/** Takes every DATA_ACK due at the receiver's latest time. */
function drainAcks(rx: Receiver, now?: number): Ack[] {
  const out: Ack[] = [];
  for (let a = rx.pollAck(now); a; a = rx.pollAck(now)) out.push(a);
  return out;
}

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
    drainAcks(rx);
    assert.equal(rx.nextDeadline(), 1000 + t, c.name);
    c.expire(rx, 1000 + t - 1);
    assert.ok(rx.buffered >= 2 * FRAG_SIZE, `${c.name}: not yet`);
    c.expire(rx, 1000 + t);
    drainAcks(rx);
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

// ---- the sender on a simulated path: delay, a bottleneck queue, loss ----

/** A deterministic pseudo-random sequence in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
}

interface Path {
  /** One-way propagation delay, ms. */
  delayMs: number;
  /** Bottleneck rate towards the receiver in fragments per ms (Infinity: none). */
  rate: number;
  /** Fragments the bottleneck queues at most; more are dropped (congestion). */
  queue: number;
  /** Random loss of DATA and of ACKs (datagram index -> lost). */
  lossData: () => boolean;
  lossAck: () => boolean;
  /** The receiver sends a DATA_ACK of each fragment alone, at once, as earlier versions did. */
  single?: boolean;
}

const PATH: Path = {
  delayMs: 10,
  rate: Infinity,
  queue: Infinity,
  lossData: () => false,
  lossAck: () => false,
};

/**
 * Runs a Sender and a Receiver over `path` in virtual time, driven only by datagram arrivals
 * and the two machines' own deadlines, as a host would (never polling). The receiver
 * acknowledges as it decides (`pollAck`: batched and delayed), or with `rxCfg.ackEvery` 1
 * and no delay every fragment at once, as earlier versions did. Checks on the way that a
 * deadline always lies ahead after a tick and that the sender never stalls: with messages
 * pending and nothing on the way, it must have a deadline.
 */
function run(
  msgs: Uint8Array[],
  path: Partial<Path> = {},
  cfg: Partial<DeliveryConfig> = {},
  rxCfg: Partial<typeof DEFAULT_RECEIVER_CONFIG> = {},
) {
  const p = { ...PATH, ...path };
  const tx = new Sender({ ...cfg_, ...cfg });
  // Single ACKs: the receiver's own are all due at once, and thrown away.
  const rx = new Receiver(p.single ? { ...rxCfg, ackEvery: 1 } : rxCfg);
  const ev: TxEvent[] = [];
  const got: Received[] = [];
  type Ev = { at: number; kind: "data"; f: Fragment } | { at: number; kind: "ack"; ack: Ack };
  const events: Ev[] = [];
  const schedule = (e: Ev) => {
    let i = events.length;
    while (i > 0 && events[i - 1]!.at > e.at) i--;
    events.splice(i, 0, e);
  };
  let busyUntil = 0;
  const congestionDrops = { n: 0 };
  const windows: number[] = [];
  let maxInFlight = 0;
  let now = 0;
  let acks = 0;
  msgs.forEach((m, i) => tx.send(i + 1, m, false, 0));
  const send = () => {
    for (const f of tx.tick(now, ev)) {
      maxInFlight = Math.max(maxInFlight, tx.fragmentsInFlight);
      // The bottleneck: one fragment every 1/rate ms, at most `queue` waiting.
      const start = Math.max(now, busyUntil);
      if ((start - now) * p.rate >= p.queue) {
        congestionDrops.n++;
        continue;
      }
      busyUntil = start + 1 / p.rate;
      if (p.lossData()) continue;
      schedule({ at: (p.rate === Infinity ? now : busyUntil) + p.delayMs, kind: "data", f });
    }
    const d = tx.nextDeadline();
    assert.ok(d === null || d > now, `deadline ${d} not after ${now}`);
    return d;
  };
  const sendAcks = () => {
    for (let a = rx.pollAck(now); a; a = rx.pollAck(now)) {
      acks++;
      if (!p.lossAck()) schedule({ at: now + p.delayMs, kind: "ack", ack: a });
    }
    const d = rx.nextDeadline();
    assert.ok(d === null || d > now, `receiver deadline ${d} not after ${now}`);
  };
  let deadline = send();
  for (let steps = 0; tx.pending > 0; steps++) {
    assert.ok(steps < 2_000_000, "runs away");
    const next = events[0];
    const rxAt = p.single ? Infinity : rx.nextDeadline() ?? Infinity;
    if (!next && deadline === null && rxAt === Infinity) {
      assert.fail(`stalled at ${now} with ${tx.pending} pending`);
    }
    if (rxAt < (next?.at ?? Infinity) && rxAt < (deadline ?? Infinity)) {
      now = rxAt;
      rx.tick(now);
      sendAcks();
      continue;
    }
    if (next && (deadline === null || next.at <= deadline)) {
      events.shift();
      now = next.at;
      if (next.kind === "data") {
        const took = rx.onData(next.f, got, now);
        if (p.single) {
          drainAcks(rx, now);
          if (took && !p.lossAck()) {
            acks++;
            schedule({
              at: now + p.delayMs,
              kind: "ack",
              ack: { seq: next.f.seq, frag: next.f.frag },
            });
          }
        } else sendAcks();
        continue;
      }
      tx.onAcks(next.ack, ev, now);
      windows.push(tx.window);
    } else {
      now = deadline!;
    }
    deadline = send();
  }
  return { tx, rx, ev, got, windows, maxInFlight, congestionDrops: congestionDrops.n, now, acks };
}
/** Every fragment acknowledged on its own and at once, as before batched DATA_ACKs. */
const EACH = { ackEvery: 1, ackDelayMs: 0 };
const cfg_ = { ...DEFAULT_DELIVERY_CONFIG, giveUpMs: 600_000 };

const msgsOf = (n: number, size: number) => Array.from({ length: n }, (_, i) => bytes(size, i));
const assertAllInOrder = (r: ReturnType<typeof run>, msgs: Uint8Array[]) => {
  assert.deepEqual(r.got.map((g) => g.msgNo), msgs.map((_, i) => i + 1), "exactly once, in order");
  r.got.forEach((g, i) => assert.deepEqual(g.bytes, msgs[i]));
  assert.equal(r.ev.filter((e) => e.type === "delivered").length, msgs.length);
  assert.equal(r.ev.filter((e) => e.type === "undelivered").length, 0);
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

Deno.test("delivery: without loss the window grows from one message's worth, no resends", () => {
  const msgs = msgsOf(200, MAX_MESSAGE);
  const r = run(msgs);
  assertAllInOrder(r, msgs);
  assert.equal(r.tx.stats.retransmitted, 0);
  assert.equal(r.tx.stats.sent, 200 * MAX_MESSAGE_FRAGS);
  assert.equal(
    r.windows[0],
    cfg.initialWindow + DEFAULT_RECEIVER_CONFIG.ackEvery,
    "slow start: one more per fragment acknowledged",
  );
  assert.equal(r.tx.window, cfg.maxWindow, "no loss: it grows to the cap");
  assert.ok(r.maxInFlight <= cfg.maxWindow);
});

Deno.test("delivery: the RTO follows the measured RTT (RFC 6298), within its bounds", () => {
  const cases = [
    { delayMs: 0.1, rto: cfg.minRtoMs, name: "loopback: the minimum" },
    { delayMs: 150, rto: 301, name: "300 ms RTT: SRTT + max(G, 4 RTTVAR) as RTTVAR decays" },
  ];
  for (const c of cases) {
    const tx = new Sender(cfg);
    assert.equal(tx.rto, cfg.initialRtoMs, `${c.name}: before any sample`);
    assert.equal(tx.srttMs, null);
    let now = 0;
    const ev: TxEvent[] = [];
    for (let i = 0; i < 200; i++) {
      tx.send(i, bytes(10), false, now);
      for (const f of tx.tick(now, ev)) tx.onAck(f.seq, f.frag, ev, now + 2 * c.delayMs);
      now += 2 * c.delayMs;
    }
    assert.ok(Math.abs(tx.srttMs! - 2 * c.delayMs) < 1e-6, `${c.name}: srtt ${tx.srttMs}`);
    assert.ok(Math.abs(tx.rto - c.rto) < 1, `${c.name}: rto ${tx.rto}`);
  }
  // The first sample alone: SRTT = R, RTTVAR = R/2, so RTO = 3R.
  const tx = new Sender(cfg);
  tx.send(1, bytes(1), false, 0);
  const [f] = tx.tick(0, []);
  tx.onAck(f!.seq, f!.frag, [], 1000);
  assert.equal(tx.rto, 3000);
});

Deno.test("delivery: Karn's rule: an ACK after a resend gives no RTT sample", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  tx.send(1, bytes(10), false, 0);
  assert.equal(tx.tick(0, ev).length, 1);
  assert.equal(tx.nextDeadline(), cfg.initialRtoMs);
  const resent = tx.tick(cfg.initialRtoMs, ev);
  assert.equal(resent.length, 1, "the timeout resends it");
  assert.equal(tx.rto, 2 * cfg.initialRtoMs, "and doubles the RTO");
  // This ACK may answer the first copy (sent at 0) or the second (at 400): no sample.
  tx.onAck(resent[0]!.seq, resent[0]!.frag, ev, 450);
  assert.deepEqual(ev, [{ type: "delivered", msgNo: 1 }]);
  assert.equal(tx.srttMs, null, "no RTT sample");
  assert.equal(tx.rto, cfg.initialRtoMs, "new data acknowledged: the backoff is dropped");
});

Deno.test("delivery: a lost fragment is resent on its own, without stalling later messages", () => {
  const msgs = msgsOf(20, 4000);
  let i = 0;
  const r = run(msgs, { lossData: () => i++ === 5 }); // one fragment of the second message
  assertAllInOrder(r, msgs);
  assert.equal(r.tx.stats.retransmitted, 1, "only the lost fragment went twice");
  assert.equal(r.tx.stats.fastRetransmits, 1, "found lost by later ACKs, not a timeout");
  assert.equal(r.tx.stats.timeouts, 0);
  assert.equal(r.tx.stats.windowCuts, 1);
});

Deno.test("delivery: a lost last fragment is resent when its timer fires", () => {
  const msgs = msgsOf(3, 2048);
  let i = 0;
  const r = run(msgs, { lossData: () => i++ === 5 }); // the very last one: nothing after it
  assertAllInOrder(r, msgs);
  assert.equal(r.tx.stats.timeouts, 1);
  assert.equal(r.tx.stats.retransmitted, 1);
});

const bottlenecks = [
  // 1 fragment per ms, 20 ms RTT: 20 fragments in flight fill the path, 30 more the queue.
  { name: "1 fragment/ms, 30 queued", rate: 1, queue: 30, msgs: 300, capacity: 50 },
  // A slow link with a deep queue: 200 ms of queueing on a 20 ms path. The RTT grows tenfold
  // while the window fills it; a timer that did not wait for ACKs would fire spuriously.
  { name: "0.05 fragments/ms, 10 queued", rate: 0.05, queue: 10, msgs: 40, capacity: 11 },
];
for (const c of bottlenecks) {
  Deno.test(`delivery: a bottleneck (${c.name}): the window backs off and holds near capacity`, () => {
    const msgs = msgsOf(c.msgs, MAX_MESSAGE);
    const r = run(msgs, { rate: c.rate, queue: c.queue });
    assertAllInOrder(r, msgs);
    assert.ok(r.congestionDrops > 0, "slow start overshot the queue");
    assert.ok(r.tx.stats.windowCuts >= 2, "and the window was cut");
    assert.equal(r.tx.stats.timeouts, 0, "losses were found by ACKs, no timer fired");
    // It settles around capacity, far below the cap, keeps the path busy and loses little.
    const late = r.windows.slice(r.windows.length / 2);
    assert.ok(Math.max(...late) <= 1.2 * c.capacity, `window later: up to ${Math.max(...late)}`);
    assert.ok(mean(late) >= 0.4 * c.capacity, `and it keeps the path busy: ${mean(late)}`);
    assert.ok(
      r.tx.stats.retransmitted < 0.05 * r.tx.stats.sent,
      `resends ${r.tx.stats.retransmitted} of ${r.tx.stats.sent}`,
    );
  });
}

Deno.test("delivery: 20% random loss both ways: exactly once, in order, bounded resends, a smaller window", () => {
  for (const seed of [1, 2, 3]) {
    const msgs = msgsOf(60, 5000);
    const dataLoss = lcg(seed), ackLoss = lcg(seed + 100);
    const lossy = run(msgs, { lossData: () => dataLoss() < 0.2, lossAck: () => ackLoss() < 0.2 });
    assertAllInOrder(lossy, msgs);
    const clean = run(msgs);
    const frags = clean.tx.stats.sent;
    // A fragment gets through with its ACK with p = 0.8 × 0.8: 1/0.64 sends each on average
    // (0.56 resends), and a lost ACK costs a spurious resend. Bounded well below 2 each.
    const resends = lossy.tx.stats.retransmitted;
    assert.ok(resends <= 1.2 * frags, `seed ${seed}: ${resends} resends for ${frags} fragments`);
    assert.ok(resends >= 0.3 * frags, `seed ${seed}: losses were repaired (${resends})`);
    assert.ok(
      mean(lossy.windows) < mean(clean.windows) / 4,
      `seed ${seed}: window under loss ${mean(lossy.windows)}, without ${mean(clean.windows)}`,
    );
    assert.deepEqual([...lossy.rx.drops.keys()], [], "the receiver never had to refuse data");
  }
});

Deno.test("delivery: the sender stays within what the receiver buffers (messages and bytes)", () => {
  const cases = [
    { name: "many small messages", msgs: msgsOf(3 * RX_WINDOW, 10) },
    { name: "many full messages", msgs: msgsOf(3 * RX_BUFFER_BYTES / MAX_MESSAGE, MAX_MESSAGE) },
  ];
  for (const c of cases) {
    // The first fragment is lost: everything after it waits at the receiver for its resend.
    let i = 0;
    const r = run(c.msgs, { delayMs: 50, lossData: () => i++ === 0 }, { initialWindow: 512 });
    assertAllInOrder(r, c.msgs);
    assert.deepEqual([...r.rx.drops.keys()], [], `${c.name}: nothing refused`);
    assert.equal(r.tx.stats.retransmitted, 1, c.name);
  }
});

Deno.test("delivery: a dead path: timeouts back off to the cap, then the message is given up", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  for (let m = 1; m <= 3; m++) tx.send(m, bytes(3000), false, 0);
  const sends: number[] = [];
  let now = 0;
  for (let d: number | null = 0; d !== null; d = tx.nextDeadline()) {
    assert.ok(d >= now);
    now = d;
    const out = tx.tick(now, ev);
    assert.ok(out.length <= Math.max(cfg.initialWindow, MIN_WINDOW), "a timeout resends a few");
    if (out.length) sends.push(now);
    assert.ok(sends.length < 100, "runs away");
  }
  assert.deepEqual(ev.map((e) => e.type), ["undelivered", "undelivered", "undelivered"]);
  assert.equal(tx.pending, 0);
  const gaps = sends.slice(1).map((t, i) => t - sends[i]!);
  assert.ok(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]! - 1e-9), `backoff: ${gaps}`);
  assert.ok(Math.max(...gaps) <= cfg.maxRtoMs + 1e-9);
  assert.equal(tx.window, MIN_WINDOW, "the window was reset");
});

Deno.test("delivery: an idle sender restarts from the initial window", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  let now = 0;
  for (let i = 0; i < 50; i++) {
    tx.send(i, bytes(MAX_MESSAGE), false, now);
    for (const f of tx.tick(now, ev)) tx.onAck(f.seq, f.frag, ev, now + 1);
    now += 1;
    for (const f of tx.tick(now, ev)) tx.onAck(f.seq, f.frag, ev, now + 1);
  }
  assert.ok(tx.window > cfg.initialWindow, `grew to ${tx.window}`);
  for (let i = 0; i < 20; i++) tx.send(100 + i, bytes(MAX_MESSAGE), false, now + 60_000);
  assert.equal(tx.tick(now + 60_000, ev).length, cfg.initialWindow, "no full-window burst");
});

Deno.test("delivery: new fragments leave in bursts of a quarter window, resends at once", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  for (let m = 0; m < 4; m++) tx.send(m, bytes(MAX_MESSAGE), false, 0);
  const first = tx.tick(0, ev);
  assert.equal(first.length, cfg.initialWindow);
  // Each ACK grows the window by one (slow start) and frees one slot: 2 of room per ACK.
  tx.onAck(first[0]!.seq, first[0]!.frag, ev, 10);
  assert.equal(tx.tick(10, ev).length, 0, "2 of room: below the burst (17/4 = 4)");
  assert.equal(tx.nextDeadline(), 10 + tx.rto, "and nothing is due but the timer");
  tx.onAck(first[1]!.seq, first[1]!.frag, ev, 11);
  assert.equal(tx.tick(11, ev).length, 4, "4 of room: the window is filled");
  // Fragments 2-5 are lost once 6-9 are acknowledged; the window is halved (to 9, with 10
  // still in flight). A resend goes as soon as there is room for one: it is not held back.
  for (let i = 6; i < 10; i++) tx.onAck(first[i]!.seq, first[i]!.frag, ev, 12);
  assert.equal(tx.stats.fastRetransmits, 4);
  assert.equal(tx.window, 9);
  assert.deepEqual(tx.tick(12, ev), [], "no room yet");
  tx.onAck(first[10]!.seq, first[10]!.frag, ev, 13);
  tx.onAck(first[11]!.seq, first[11]!.frag, ev, 13);
  assert.deepEqual(tx.tick(13, ev).map((f) => f.frag), [2], "room for one: the oldest loss");
});

Deno.test("delivery: a chat that never fills its window does not grow it without bound", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  for (let i = 0; i < 1000; i++) {
    tx.send(i, bytes(100), false, i * 10);
    for (const f of tx.tick(i * 10, ev)) tx.onAck(f.seq, f.frag, ev, i * 10 + 5);
  }
  assert.equal(tx.window, cfg.initialWindow);
});

Deno.test("delivery: a message acknowledged behind one the sender gave up on is still delivered", () => {
  const rx = new Receiver();
  const got: Received[] = [];
  // seq 0 never completes; seq 1 arrives whole (and was acknowledged) but must wait for it.
  assert.ok(rx.onData(frag(0, 0, 2, 5), got, 0));
  assert.ok(rx.onData(frag(1, 0, 1, 5), got, 0));
  assert.equal(got.length, 0);
  // Long after: the incomplete seq 0 times out, the complete seq 1 must not.
  const late = 2 * DEFAULT_RECEIVER_CONFIG.partialTimeoutMs;
  rx.tick(late);
  assert.equal(rx.drops.get("expired"), 1);
  drainAcks(rx);
  assert.equal(rx.nextDeadline(), null, "nothing left to time out");
  // The sender gave up on seq 0; its next DATA says so with floor 2.
  assert.ok(rx.onData({ ...frag(2, 0, 1, 5), floor: 2 }, got, late));
  assert.deepEqual(got.map((g) => g.msgNo), [2, 3], "seq 1 and 2 in order, seq 0 skipped");
  assert.equal(rx.buffered, 0);
});

Deno.test("delivery: two agents over 20% loss each way: exactly once, in order, resends bounded", () => {
  const net = new MemNet();
  net.add("alice");
  net.add("bob");
  net.advance(3000);
  const msgs = Array.from({ length: 40 }, (_, i) => `${i} `.padEnd(3000, "abcdefgh"[i % 8]));
  const alice = net.hosts.get("alice")!;
  const rnd = lcg(7);
  let fromAlice = 0;
  net.filter = (p) => {
    if (p.from.host === alice.host && p.from.port === alice.port) fromAlice++;
    return rnd() >= 0.2;
  };
  for (const m of msgs) net.msg("alice", "bob", m);
  for (let i = 0; i < 120 && net.texts("bob").length < msgs.length; i++) net.advance(1000);
  assert.deepEqual(net.texts("bob"), msgs);
  const events = net.events.get("alice")!;
  assert.equal(events.filter((e) => e.type === "delivered").length, msgs.length);
  assert.equal(events.filter((e) => e.type === "undelivered").length, 0);
  // 120 fragments; each needs 1/0.64 sends on average. Allow for pings and keepalives too.
  assert.ok(fromAlice < 120 * 2.5, `alice sent ${fromAlice} datagrams for 120 fragments`);
  assert.equal(net.agent("alice").pending, 0);
});

Deno.test("delivery: a DATA whose floor is past its own seq or far ahead changes nothing", () => {
  const rx = new Receiver();
  const ready: Received[] = [];
  const frag = (seq: number, floor: number) => ({
    seq,
    floor,
    msgNo: seq + 1,
    frag: 0,
    frags: 1,
    direct: false,
    chunk: new TextEncoder().encode(`m${seq}`),
  });
  // Would otherwise move the next expected message to ~2^31: everything after is "duplicate".
  assert.equal(rx.onData(frag(0, 2 ** 31), ready, 0), false);
  assert.equal(rx.onData(frag(5, 5 + 10_000), ready, 0), false);
  assert.equal(rx.onData(frag(0, 0), ready, 0), true);
  assert.deepEqual(ready.map((r) => new TextDecoder().decode(r.bytes)), ["m0"]);
});

// ---- batched, delayed DATA_ACKs ----

const ACK_EVERY = DEFAULT_RECEIVER_CONFIG.ackEvery;
const ACK_DELAY = DEFAULT_RECEIVER_CONFIG.ackDelayMs;
/** Incomplete messages kept for ever: nextDeadline then reports only the ACK delay. */
const NO_EXPIRY = { partialTimeoutMs: Infinity };

Deno.test("delivery: DATA_ACK coalescing: when the receiver acknowledges", () => {
  const cases: {
    name: string;
    /** [seq, frag, frags] arriving at time 100, each followed by pollAck(100). */
    arrive: [number, number, number][];
    /** After which arrivals (index) an ACK goes out at once. */
    immediate: number[];
  }[] = [
    {
      name: "in order: every ackEvery-th fragment",
      arrive: Array.from({ length: 2 * ACK_EVERY + 1 }, (_, i) => [0, i, 16]),
      immediate: [ACK_EVERY - 1, 2 * ACK_EVERY - 1],
    },
    {
      name: "in order across messages: the count runs on",
      arrive: [[0, 0, 2], [0, 1, 2], [1, 0, 1], [2, 0, 3], [2, 1, 3]],
      immediate: [ACK_EVERY - 1],
    },
    {
      name: "a gap (fragment 2 after 0): at once",
      arrive: [[0, 0, 16], [0, 2, 16]],
      immediate: [1],
    },
    {
      name: "a gap across messages: at once",
      arrive: [[0, 0, 1], [2, 0, 1]],
      immediate: [1],
    },
    {
      name: "the hole filled (reordering or a resend): at once",
      arrive: [[0, 0, 16], [0, 2, 16], [0, 1, 16]],
      immediate: [1, 2],
    },
    {
      name: "a duplicate: at once",
      arrive: [[0, 0, 16], [0, 0, 16]],
      immediate: [1],
    },
    {
      name: "a duplicate of a released message: at once",
      arrive: [[0, 0, 1], [1, 0, 16], [0, 0, 1]],
      immediate: [2],
    },
  ];
  for (const c of cases) {
    const rx = new Receiver(NO_EXPIRY);
    const acked: number[] = [];
    c.arrive.forEach(([seq, f, frags], i) => {
      assert.ok(rx.onData(frag(seq, f, frags, 10), [], 100), c.name);
      if (rx.pollAck(100)) acked.push(i);
    });
    assert.deepEqual(acked, c.immediate, c.name);
    // What is left waits for the delay, which nextDeadline reports.
    const owed = acked.at(-1) !== c.arrive.length - 1;
    assert.equal(rx.nextDeadline(), owed ? 100 + ACK_DELAY : null, c.name);
    if (!owed) continue;
    assert.equal(rx.pollAck(100 + ACK_DELAY - 0.5), null, `${c.name}: not before the delay`);
    assert.ok(rx.pollAck(100 + ACK_DELAY), `${c.name}: at the delay`);
    assert.equal(rx.nextDeadline(), null, `${c.name}: then nothing is owed`);
  }
});

Deno.test("delivery: DATA_ACK coalescing: a lone fragment waits ackDelayMs from its arrival", () => {
  const rx = new Receiver(NO_EXPIRY);
  assert.equal(rx.pollAck(0), null, "nothing owed");
  assert.ok(rx.onData(frag(0, 0, 3, 10), [], 1000));
  assert.equal(rx.pollAck(1000), null);
  assert.equal(rx.nextDeadline(), 1000 + ACK_DELAY);
  // A second in-order fragment does not push the deadline back.
  assert.ok(rx.onData(frag(0, 1, 3, 10), [], 1003));
  assert.equal(rx.pollAck(1003), null);
  assert.equal(rx.nextDeadline(), 1000 + ACK_DELAY);
  const a = rx.pollAck(1000 + ACK_DELAY);
  assert.deepEqual(a, { seq: 0, frag: 1, batch: { below: 0, blocks: [{ seq: 0, mask: 0b11 }] } });
  assert.equal(rx.nextDeadline(), null);
  assert.equal(rx.acksSent, 1);
});

Deno.test("delivery: DATA_ACK contents: below, blocks of what is held, the last ACK's repeated", () => {
  const rx = new Receiver(NO_EXPIRY);
  const got: Received[] = [];
  // Message 0 whole (released), message 1 fragments 0 and 1, then fragment 3 (a gap).
  rx.onData(frag(0, 0, 1, 10), got, 0);
  rx.onData(frag(1, 0, 4, 10), got, 0);
  rx.onData(frag(1, 1, 4, 10), got, 0);
  assert.equal(rx.pollAck(0), null, "3 in order: not yet");
  rx.onData(frag(1, 3, 4, 10), got, 0);
  assert.deepEqual(rx.pollAck(0), {
    seq: 1,
    frag: 3,
    batch: { below: 1, blocks: [{ seq: 1, mask: 0b1011 }] },
  }, "message 0 is below; message 1's block has all held fragments");
  // Message 2 begins (in order after 1/3, the highest so far): the next ACK, after the
  // delay, names it, and message 1 again (the last ACK named it and it is still
  // incomplete), so one lost ACK costs no resend.
  rx.onData(frag(2, 0, 2, 10), got, 1);
  assert.equal(rx.pollAck(1), null);
  assert.deepEqual(rx.pollAck(1 + ACK_DELAY), {
    seq: 2,
    frag: 0,
    batch: { below: 1, blocks: [{ seq: 1, mask: 0b1011 }, { seq: 2, mask: 0b1 }] },
  });
  // The resend of 1/2 fills the hole (at once), completes message 1 and releases it: below
  // moves past it.
  rx.onData(frag(1, 2, 4, 10), got, 10);
  assert.deepEqual(got.map((g) => g.msgNo), [1, 2]);
  assert.deepEqual(rx.pollAck(10), {
    seq: 1,
    frag: 2,
    batch: { below: 2, blocks: [{ seq: 2, mask: 0b1 }] },
  });
});

Deno.test("delivery: more messages owed than MAX_ACK_BLOCKS take several DATA_ACKs", () => {
  const rx = new Receiver({ ...NO_EXPIRY, ackEvery: 1000 });
  // 40 messages, each missing fragment 0: every arrival is owed, none released.
  for (let seq = 0; seq < 40; seq++) rx.onData(frag(seq, 1, 2, 10), [], 0);
  const acks = drainAcks(rx, 0);
  assert.equal(acks.length, 2);
  const named = acks.flatMap((a) => a.batch!.blocks.map((b) => b.seq));
  assert.deepEqual([...new Set(named)].sort((a, b) => a - b), [...Array(40).keys()]);
  assert.ok(acks.every((a) => a.batch!.blocks.length <= 32));
  assert.equal(rx.nextDeadline(), null);
});

/** A sender with `n` one-fragment messages sent at time `at`. */
function sentOnes(n: number, at = 0): { tx: Sender; frags: Fragment[] } {
  const tx = new Sender(cfg);
  for (let i = 0; i < n; i++) tx.send(i + 1, bytes(10), false, 0);
  return { tx, frags: tx.tick(at, []) };
}

Deno.test("delivery: a batched ACK: one RTT sample, from the newest fragment it acknowledges", () => {
  // Fragments sent at 0 and 10; one ACK for both at 30: RTT 20 (the newest), not 30.
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  tx.send(1, bytes(10), false, 0);
  tx.tick(0, ev);
  tx.send(2, bytes(10), false, 10);
  tx.tick(10, ev);
  tx.onAcks(
    { seq: 0, frag: 0, batch: { below: 0, blocks: [{ seq: 0, mask: 1 }, { seq: 1, mask: 1 }] } },
    ev,
    30,
  );
  assert.equal(tx.srttMs, 20);
  assert.deepEqual(ev.map((e) => e.msgNo), [1, 2]);
  assert.equal(tx.pending, 0);
});

Deno.test("delivery: a batched ACK whose newest fragment was resent gives no sample (Karn)", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  tx.send(1, bytes(10), false, 0);
  tx.send(2, bytes(10), false, 0);
  assert.equal(tx.tick(0, ev).length, 2);
  const resent = tx.tick(cfg.initialRtoMs, ev); // the timer: both resent
  assert.equal(resent.length, 2);
  tx.onAcks({ seq: 1, frag: 0, batch: { below: 2, blocks: [] } }, ev, cfg.initialRtoMs + 5);
  assert.equal(tx.srttMs, null, "no RTT sample");
  assert.deepEqual(ev.map((e) => e.type), ["delivered", "delivered"]);
});

Deno.test("delivery: `below` acknowledges whole messages, never ones not yet sent", () => {
  const tx = new Sender({ ...cfg, initialWindow: 4 });
  const ev: TxEvent[] = [];
  for (let i = 0; i < 10; i++) tx.send(i + 1, bytes(10), false, 0);
  assert.equal(tx.tick(0, ev).length, 4);
  // A (broken or hostile) peer claims all 10: only the 4 sent count.
  tx.onAcks({ seq: 0, frag: 0, batch: { below: 10, blocks: [] } }, ev, 10);
  assert.deepEqual(ev.map((e) => e.msgNo), [1, 2, 3, 4]);
  assert.equal(tx.pending, 6);
  const next = tx.tick(10, ev);
  assert.ok(next.length > 0 && next[0]!.seq === 4, "the rest still go out");
  tx.onAcks({ seq: 4, frag: 0, batch: { below: 10, blocks: [] } }, ev, 20);
  assert.equal(ev.length, 4 + next.length);
});

Deno.test("delivery: loss detection with blocks: 3 later fragments acknowledged in one ACK", () => {
  const { tx, frags } = sentOnes(6);
  assert.equal(frags.length, 6);
  const ev: TxEvent[] = [];
  // Message 1 is missing; 2, 3, 4 arrive and are acknowledged together (0 earlier).
  tx.onAck(0, 0, ev, 5);
  tx.onAcks(
    { seq: 4, frag: 0, batch: { below: 1, blocks: [2, 3, 4].map((seq) => ({ seq, mask: 1 })) } },
    ev,
    6,
  );
  assert.equal(tx.stats.fastRetransmits, 1, "message 1 is lost: REORDER_THRESHOLD later acked");
  const resent = tx.tick(6, ev);
  assert.deepEqual(resent.map((f) => f.seq), [1], "and resent at once");
  assert.equal(tx.stats.timeouts, 0);
});

const ackCases = [
  { name: "batched (the default)", rxCfg: {}, single: false },
  { name: "every fragment at once (ackEvery 1, no delay)", rxCfg: EACH, single: false },
  { name: "single-fragment, as earlier versions sent", rxCfg: {}, single: true },
];
for (const c of ackCases) {
  Deno.test(`delivery: DATA_ACKs ${c.name}: lossless and 20% lossy transfers, ACKs per fragment`, () => {
    const msgs = msgsOf(100, MAX_MESSAGE);
    const clean = run(msgs, { single: c.single }, {}, c.rxCfg);
    assertAllInOrder(clean, msgs);
    const perFrag = clean.acks / clean.tx.stats.sent;
    const each = c.rxCfg === EACH || c.single;
    if (each) assert.equal(perFrag, 1);
    else {
      assert.ok(perFrag <= 1 / ACK_EVERY + 0.01, `${perFrag} ACKs per fragment`);
      assert.equal(clean.tx.stats.retransmitted, 0);
    }
    for (const seed of [1, 2]) {
      const d = lcg(seed), a = lcg(seed + 50);
      const lossy = run(
        msgsOf(40, 5000),
        { lossData: () => d() < 0.2, lossAck: () => a() < 0.2, single: c.single },
        {},
        c.rxCfg,
      );
      assertAllInOrder(lossy, msgsOf(40, 5000));
      assert.deepEqual([...lossy.rx.drops.keys()], []);
    }
  });
}

Deno.test("delivery: batched ACKs make lost ACKs cost far fewer resends than single ones did", () => {
  // Each fragment is named in two ACKs while its message is incomplete, and `below` repeats
  // every whole message: a lost ACK rarely causes a resend.
  let batched = 0, single = 0, frags = 0;
  for (const seed of [1, 2, 3, 4]) {
    const msgs = msgsOf(60, MAX_MESSAGE);
    const a1 = lcg(seed), a2 = lcg(seed);
    const r = run(msgs, { lossAck: () => a1() < 0.2 });
    assertAllInOrder(r, msgs);
    batched += r.tx.stats.retransmitted;
    frags += r.tx.stats.sent - r.tx.stats.retransmitted;
    const old = run(msgs, { lossAck: () => a2() < 0.2, single: true });
    assertAllInOrder(old, msgs);
    single += old.tx.stats.retransmitted;
  }
  assert.ok(batched < 0.01 * frags, `batched: ${batched} resends for ${frags} fragments`);
  assert.ok(batched * 10 < single, `batched ${batched}, single ${single}`);
});

Deno.test("delivery: two agents: the receiver sends about one datagram per ackEvery fragments", () => {
  const net = new MemNet();
  net.add("alice");
  net.add("bob");
  net.advance(3000);
  const alice = net.hosts.get("alice")!, bob = net.hosts.get("bob")!;
  const from = (h: typeof alice) => net.wire.filter((p) => p.from.port === h.port).length;
  const a0 = from(alice), b0 = from(bob);
  const msgs = Array.from({ length: 20 }, (_, i) => `${i} `.padEnd(MAX_MESSAGE, "xyz"[i % 3]));
  for (const m of msgs) net.msg("alice", "bob", m);
  for (let i = 0; i < 20 && net.texts("bob").length < msgs.length; i++) net.advance(100);
  assert.deepEqual(net.texts("bob"), msgs);
  assert.equal(net.agent("alice").pending, 0);
  const sentA = from(alice) - a0, sentB = from(bob) - b0;
  const frags = msgs.length * MAX_MESSAGE_FRAGS;
  assert.ok(sentA >= frags, `alice sent ${sentA}`);
  // Keepalives and pings add a few datagrams each way in 2 s.
  assert.ok(sentB <= frags / ACK_EVERY + 20, `bob sent ${sentB} datagrams for ${frags} fragments`);
});

Deno.test("delivery: with several fragments per DATA, one DATA overtaken by the next is no loss", () => {
  // Fragments 0-3 then 4-7, the second four acknowledged first (at the same moment, so no time
  // threshold). One fragment per DATA: those are 4 later datagrams, so 0-3 count lost (1+3 and
  // more later ones acknowledged). Four per DATA: one later datagram, which is reordering.
  for (const [group, lost] of [[1, 4], [4, 0]] as const) {
    const tx = new Sender(cfg);
    const ev: TxEvent[] = [];
    tx.send(0, bytes(MAX_MESSAGE), false, 0);
    const frags = tx.tick(0, ev, group);
    assert.equal(frags.length, cfg.initialWindow);
    for (const f of frags.slice(4, 8)) tx.onAck(f.seq, f.frag, ev, 1);
    assert.equal(tx.stats.fastRetransmits, lost, `${group} per DATA`);
    assert.equal(tx.stats.windowCuts, lost > 0 ? 1 : 0, `${group} per DATA`);
  }
});

Deno.test("delivery: a new path starts the RTT estimate and the timeout's backoff over", () => {
  const tx = new Sender(cfg);
  const ev: TxEvent[] = [];
  for (let m = 0; m < 40; m++) tx.send(m, bytes(MAX_MESSAGE), false, 0);
  // A fast path: 2 ms RTT samples.
  let now = 0;
  for (let round = 0; round < 4; round++) {
    for (const f of tx.tick(now, ev)) tx.onAck(f.seq, f.frag, ev, now + 2);
    now += 2;
  }
  assert.equal(tx.srttMs !== null && tx.srttMs < 3, true);
  // The path dies: three timeouts back the RTO off (100 ms at least, doubled thrice).
  const old = tx.tick(now, ev);
  assert.ok(old.length > 0);
  for (let i = 0; i < 3; i++) {
    now = tx.nextDeadline()!;
    tx.tick(now, ev);
  }
  assert.equal(tx.stats.timeouts, 3);
  const backedOff = tx.rto;
  const window = tx.window;
  tx.newPath();
  assert.equal(tx.srttMs, null);
  assert.equal(tx.rto, cfg.initialRtoMs);
  assert.ok(tx.rto < backedOff, `${tx.rto} < ${backedOff}`);
  assert.equal(tx.window, window, "the window is kept");
  assert.ok(tx.nextDeadline()! <= now + cfg.initialRtoMs, "the timer runs with the new timeout");
  // ACKs of what went on the old path give no sample of the new one.
  for (const f of old) tx.onAck(f.seq, f.frag, ev, now + 300);
  assert.equal(tx.srttMs, null);
  // What goes on the new path does.
  const fresh = tx.tick(now + 300, ev);
  assert.ok(fresh.length > 0);
  tx.onAck(fresh[0]!.seq, fresh[0]!.frag, ev, now + 380);
  assert.equal(tx.srttMs, 80);
});
