/** The server's rate limiters, driven by a fake clock (ms). */
import assert from "node:assert/strict";
import { Bucket, LogLimiter, PerMinute } from "../../lib/server/limits.ts";

const MINUTE = 60_000;

/** Feeds `events` ([key, now]) to `take` and returns which were allowed. */
function run<K>(take: (key: K, now: number) => boolean, events: [K, number][]): boolean[] {
  return events.map(([k, now]) => take(k, now));
}

/** One event for `key` each second from `from` s to `to` s. */
function everySecond(key: string, from: number, to: number): [string, number][] {
  return Array.from({ length: to - from + 1 }, (_, i) => [key, (from + i) * 1000]);
}

// ---------------------------------------------------------------------------------------------
// PerMinute: `limit` events per key in a window of one minute from the key's first event.

const perMinute: { name: string; limit: number; events: [string, number][]; want: boolean[] }[] = [
  {
    name: "the limit is allowed, one more is not",
    limit: 3,
    events: [["a", 0], ["a", 1], ["a", 2], ["a", 3]],
    want: [true, true, true, false],
  },
  {
    name: "keys are counted apart",
    limit: 1,
    events: [["a", 0], ["b", 0], ["a", 1], ["b", 1]],
    want: [true, true, false, false],
  },
  {
    name: "still limited 59.999 s after the first event, free at 60 s",
    limit: 1,
    events: [["a", 1000], ["a", 1000 + MINUTE - 1], ["a", 1000 + MINUTE]],
    want: [true, false, true],
  },
  {
    name: "the window starts at the key's first event, not on the clock's minute",
    limit: 1,
    events: [["a", 30_000], ["a", MINUTE], ["a", 89_999], ["a", 90_000]],
    want: [true, false, false, true],
  },
  {
    name: "refused events do not push the window back",
    limit: 1,
    events: [
      ["a", 0],
      ...everySecond("a", 1, 59),
      ["a", MINUTE],
    ],
    want: [true, ...new Array(59).fill(false), true],
  },
  {
    name: "a new window has the whole limit again",
    limit: 2,
    events: [["a", 0], ["a", 0], ["a", 0], ["a", MINUTE], ["a", MINUTE], ["a", MINUTE]],
    want: [true, true, false, true, true, false],
  },
  {
    name: "limit 0 refuses everything",
    limit: 0,
    events: [["a", 0], ["a", 2 * MINUTE]],
    want: [false, false],
  },
];

for (const c of perMinute) {
  Deno.test(`PerMinute: ${c.name}`, () => {
    const p = new PerMinute(c.limit);
    assert.deepEqual(run((k, now) => p.take(k, now), c.events), c.want);
  });
}

Deno.test("PerMinute: when full of live keys, the oldest is forgotten and newcomers get in", () => {
  const p = new PerMinute(1, 3);
  assert.deepEqual(run((k, n) => p.take(k, n), [["a", 0], ["b", 1], ["c", 2]]), [true, true, true]);
  assert.equal(p.take("d", 3), true, "a newcomer is not refused");
  assert.equal(p.size, 3, "memory stays bounded");
  assert.equal(p.take("b", 4), false, "b is still remembered and limited");
  assert.equal(p.take("c", 4), false);
  assert.equal(p.take("a", 5), true, "a, the oldest, was forgotten");
});

Deno.test("PerMinute: when full, expired keys are dropped before any live one", () => {
  const p = new PerMinute(1, 3);
  run((k, n) => p.take(k, n), [["a", 0], ["b", 10], ["c", MINUTE + 10]]);
  assert.equal(p.take("d", MINUTE + 11), true);
  assert.equal(p.size, 2, "both expired keys went");
  assert.equal(p.take("c", MINUTE + 12), false, "the live key kept its count");
});

// ---------------------------------------------------------------------------------------------
// Bucket: starts full with `burst`, refills at `rate` per second, never above `burst`.

const bucket: {
  name: string;
  rate: number;
  burst: number;
  takes: [number, number][];
  want: boolean[];
}[] = [
  {
    name: "a full burst at once, then nothing",
    rate: 1000,
    burst: 5,
    takes: [[5, 0], [1, 0]],
    want: [true, false],
  },
  {
    name: "exactly the tokens left is allowed",
    rate: 1000,
    burst: 5,
    takes: [[3, 0], [2, 0], [1, 0]],
    want: [true, true, false],
  },
  {
    name: "a refused take costs nothing",
    rate: 1000,
    burst: 5,
    takes: [[2, 0], [4, 0], [3, 0]],
    want: [true, false, true],
  },
  {
    name: "refills at the rate: 4 per second is one every 250 ms",
    rate: 4,
    burst: 1,
    takes: [[1, 0], [1, 249.9], [1, 250]],
    want: [true, false, true],
  },
  {
    name: "a long idle refills to the burst, not beyond",
    rate: 1000,
    burst: 5,
    takes: [[5, 0], [5, 3_600_000], [1, 3_600_000]],
    want: [true, true, false],
  },
  {
    name: "more than the burst never passes",
    rate: 1000,
    burst: 5,
    takes: [[6, 0], [6, 3_600_000]],
    want: [false, false],
  },
];

for (const c of bucket) {
  Deno.test(`Bucket: ${c.name}`, () => {
    const b = new Bucket(c.rate, c.burst, 0);
    assert.deepEqual(c.takes.map(([n, now]) => b.take(n, now)), c.want);
  });
}

Deno.test("Bucket: sustained load gets the burst plus the rate, no more", () => {
  // 100 per second, burst 10, offered 1000 per second for 10 s.
  const b = new Bucket(100, 10, 0);
  let allowed = 0;
  for (let now = 0; now < 10_000; now++) if (b.take(1, now)) allowed++;
  // 10 + 100/s over the 9.999 s after the first take; float refills may lose one.
  assert.ok(allowed >= 1008 && allowed <= 1009, `allowed ${allowed}`);
});

// ---------------------------------------------------------------------------------------------
// LogLimiter: one line per key per `everyMs`, reporting how many it held back.

const logs: { name: string; everyMs?: number; calls: [string, number][]; want: number[] }[] = [
  { name: "the first line goes through", calls: [["k", 0]], want: [0] },
  {
    name: "held for 10 s by default, then through with the count held back",
    calls: [["k", 0], ["k", 1], ["k", 9_999], ["k", 10_000]],
    want: [0, -1, -1, 2],
  },
  {
    name: "held lines do not extend the wait",
    calls: [
      ["k", 0],
      ...everySecond("k", 1, 9),
      ["k", 10_000],
    ],
    want: [0, ...new Array(9).fill(-1), 9],
  },
  {
    name: "the count restarts after each report",
    calls: [["k", 0], ["k", 1], ["k", 10_000], ["k", 20_000]],
    want: [0, -1, 1, 0],
  },
  {
    name: "keys are limited apart",
    calls: [["a", 0], ["b", 0], ["a", 1], ["b", 1], ["b", 2]],
    want: [0, 0, -1, -1, -1],
  },
  {
    name: "a custom interval",
    everyMs: 100,
    calls: [["k", 0], ["k", 99], ["k", 100]],
    want: [0, -1, 1],
  },
];

for (const c of logs) {
  Deno.test(`LogLimiter: ${c.name}`, () => {
    const l = new LogLimiter(c.everyMs);
    assert.deepEqual(c.calls.map(([k, now]) => l.allow(k, now)), c.want);
  });
}

Deno.test("LogLimiter: still one line per key per interval with many keys", () => {
  // The server logs per peer (relay and connect limits, up to maxPeers 4096 peers), so a crowd of
  // misbehaving peers must not turn the limiter off.
  const l = new LogLimiter();
  const keys = Array.from({ length: 1500 }, (_, i) => `relay:${i}`);
  for (const k of keys) assert.equal(l.allow(k, 0), 0);
  const through = keys.filter((k) => l.allow(k, 1000) >= 0);
  assert.deepEqual(through, [], `${through.length} of ${keys.length} let through within 10 s`);
});
