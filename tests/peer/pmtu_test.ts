/**
 * Unit tests of the path MTU search (lib/peer/pmtu.ts) with a fake clock: MtuSearch's probe
 * schedule, acks, failures, restart and black-hole fallback; PeerMtu's routes and shared ids;
 * and the size helpers against the real codec. The agent-level tests are in
 * pmtu_agent_test.ts.
 */
import assert from "node:assert/strict";
import {
  dataSize,
  encodedWithin,
  fragsWithin,
  ipUdpOverhead,
  type MtuConfig,
  MtuSearch,
  PeerMtu,
  probePad,
  RELAY_WRAP,
  RELAYED_WRAP,
  SEAL_OVERHEAD,
} from "../../lib/peer/pmtu.ts";
import { decode, encode } from "../../lib/wire/codec.ts";
import {
  DATA_OVERHEAD,
  FRAG_SIZE,
  MAX_LARGE_DATAGRAM,
  MTU_PROBE_MIN,
} from "../../lib/wire/sizes.ts";

/** The defaults, spelled out so these tests do not move when a default is tuned. */
const CFG: MtuConfig = {
  probeTimeoutMs: 1000,
  probeTries: 2,
  raiseMs: 600_000,
  blackHoleTimeouts: 2,
};
/** An MTU_ACK limit no path reaches: the peer takes whatever we send. */
const BIG = 65535;

const A = "0102030405060708";
const B = "a1a2a3a4a5a6a7a8";

/** Polls and asserts a probe came out; returns it. */
function probe(s: MtuSearch, now: number): { id: number; frags: number } {
  const p = s.poll(now);
  assert.notEqual(p, null, `expected a probe at ${now}`);
  return p!;
}

/** Answers probe `p` as a peer that saw it whole and takes `limit`. */
function ack(s: MtuSearch, p: { id: number; frags: number }, now: number, limit = BIG): boolean {
  return s.onAck(p.id, dataSize(p.frags), limit, now);
}

/**
 * Runs the search from `now` against a path that carries DATA of at most `carries` fragments
 * (probes above it vanish), sleeping to each deadline as a host would, until the search has
 * no deadline before `until`. Returns the probe sizes sent, in order, and the time it ended.
 */
function runAgainst(s: MtuSearch, carries: number, now: number, until: number) {
  const sizes: number[] = [];
  for (let steps = 0; steps < 1000; steps++) {
    const p = s.poll(now);
    if (p) {
      sizes.push(p.frags);
      if (p.frags <= carries) assert.equal(ack(s, p, now), true);
    }
    const next = s.nextDeadline();
    if (next === null || next >= until) return { sizes, now };
    // A deadline already past means now (after an ack: the next size is due at once), but
    // one that is due while poll had nothing would spin the host forever.
    if (next <= now && !p) assert.fail(`busy deadline ${next} at ${now}`);
    now = Math.max(now, next);
  }
  return assert.fail("search did not settle in 1000 steps");
}

// ---- size helpers ----

Deno.test("pmtu: ipUdpOverhead is 28 for IPv4 (and v4-mapped IPv6), 48 for IPv6", () => {
  const cases: [string, number][] = [
    ["192.0.2.1", 28],
    ["127.0.0.1", 28],
    ["::ffff:192.0.2.1", 28],
    ["2001:db8::1", 48],
    ["::1", 48],
    ["fe80::1%eth0", 48],
  ];
  for (const [host, want] of cases) assert.equal(ipUdpOverhead(host), want, host);
});

Deno.test("pmtu: fragsWithin is whole fragments of DATA, clamped to [1, 16]", () => {
  const cases: [number, number][] = [
    [-5, 1],
    [0, 1],
    [DATA_OVERHEAD, 1],
    [dataSize(1), 1],
    [dataSize(2) - 1, 1],
    [dataSize(2), 2],
    [dataSize(7) + 1023, 7],
    [dataSize(16) - 1, 15],
    [dataSize(16), 16],
    [dataSize(17), 16],
    [1_000_000, 16],
    [1441, 1], // a 1500-byte IPv4 link, direct
    [8941, 8], // a 9000-byte jumbo-frame IPv4 link, direct
  ];
  for (const [max, want] of cases) assert.equal(fragsWithin(max), want, `fragsWithin(${max})`);
});

Deno.test("pmtu: encodedWithin takes off IP/UDP, the sealing and the relay's wrapping", () => {
  assert.equal(SEAL_OVERHEAD, 31);
  assert.equal(RELAY_WRAP, 27);
  assert.equal(RELAYED_WRAP, 19);
  const cases: [number, string, number, number][] = [
    [1500, "192.0.2.1", 0, 1500 - 28 - 31],
    [1500, "::ffff:192.0.2.1", 0, 1500 - 28 - 31],
    [1500, "2001:db8::1", 0, 1500 - 48 - 31],
    [1500, "192.0.2.1", RELAY_WRAP, 1500 - 28 - 31 - 27],
    [1500, "2001:db8::1", RELAYED_WRAP, 1500 - 48 - 31 - 19],
    [9000, "192.0.2.1", 0, 9000 - 28 - 31],
    // Loopback's 64 KiB: bounded by what decoders take, not by the link.
    [65536, "127.0.0.1", 0, MAX_LARGE_DATAGRAM - 31],
    [65536, "::1", RELAY_WRAP, MAX_LARGE_DATAGRAM - 31 - 27],
  ];
  for (const [mtu, host, wrap, want] of cases) {
    assert.equal(encodedWithin(mtu, host, wrap), want, `${mtu} ${host} +${wrap}`);
  }
  assert.equal(MAX_LARGE_DATAGRAM - 31, 16865);
  // A whole 16 KiB message fits in one DATA on loopback, even through the relay.
  assert.equal(fragsWithin(encodedWithin(65536, "127.0.0.1", RELAY_WRAP)), 16);
  assert.equal(fragsWithin(encodedWithin(1500, "192.0.2.1", 0)), 1);
});

Deno.test("pmtu: dataSize and probePad", () => {
  assert.equal(DATA_OVERHEAD, 34);
  assert.equal(MTU_PROBE_MIN, 23);
  assert.equal(dataSize(1), 1024 + 34);
  assert.equal(dataSize(16), 16 * 1024 + 34);
  for (let k = 1; k <= 16; k++) {
    assert.equal(dataSize(k), k * FRAG_SIZE + DATA_OVERHEAD, `dataSize(${k})`);
    assert.equal(probePad(k) + MTU_PROBE_MIN, dataSize(k), `probePad(${k})`);
  }
});

Deno.test("pmtu: an encoded MTU_PROBE is exactly as long as the DATA it stands for", () => {
  for (const k of [1, 3, 16]) {
    const probe = encode({ type: "mtu_probe", from: A, to: B, id: 0xdeadbeef, pad: probePad(k) });
    const data = encode({
      type: "data",
      from: A,
      to: B,
      seq: 7,
      floor: 3,
      msgNo: 9,
      frag: 0,
      frags: 16,
      direct: true,
      chunk: new Uint8Array(k * FRAG_SIZE).fill(0x5a),
    });
    assert.equal(probe.length, dataSize(k), `probe of ${k}`);
    assert.equal(data.length, dataSize(k), `data of ${k}`);
    // And both decode, up to the largest (MTU_PROBE and DATA may exceed MAX_DATAGRAM).
    const d = decode(probe);
    assert.deepEqual(d, {
      ok: true,
      value: { type: "mtu_probe", from: A, to: B, id: 0xdeadbeef, pad: probePad(k) },
    });
    assert.equal(decode(data).ok, true, `data of ${k} decodes`);
  }
});

// ---- MtuSearch ----

Deno.test("pmtu: a search starts at one fragment", () => {
  const s = new MtuSearch(16, 0, CFG);
  assert.equal(s.frags, 1);
  assert.deepEqual(s.stats, { probes: 0, acks: 0, blackHoles: 0 });
  assert.equal(s.nextDeadline(), 0);
});

Deno.test("pmtu: the bound is probed first; its ack confirms it and ends the search", () => {
  const s = new MtuSearch(16, 0, CFG);
  const p = probe(s, 0);
  assert.deepEqual(p, { id: 1, frags: 16 });
  assert.equal(s.frags, 1, "not before the ack");
  assert.equal(s.nextDeadline(), 1000, "the probe's timeout");
  assert.equal(s.poll(999), null, "one probe at a time");
  assert.equal(ack(s, p, 40), true);
  assert.equal(s.frags, 16);
  assert.deepEqual(s.stats, { probes: 1, acks: 1, blackHoles: 0 });
  // At our ceiling nothing can be confirmed above it: no more probes, no wake-ups.
  assert.equal(s.nextDeadline(), null);
  for (const t of [41, 1000, 2000, 40 + CFG.raiseMs, 10 * CFG.raiseMs]) {
    assert.equal(s.poll(t), null, `no probe at ${t}`);
  }
  assert.equal(s.frags, 16);
  assert.equal(s.stats.probes, 1);
});

Deno.test("pmtu: an ack of the wrong size or of an unknown probe is refused", () => {
  const s = new MtuSearch(16, 0, CFG);
  const p = probe(s, 0);
  assert.equal(s.onAck(p.id, dataSize(16) - 1, BIG, 10), false, "one byte short");
  assert.equal(s.onAck(p.id, dataSize(8), BIG, 10), false, "another size");
  assert.equal(s.onAck(p.id, MTU_PROBE_MIN + probePad(16) + 1, BIG, 10), false, "one byte long");
  assert.equal(s.onAck(p.id + 1, dataSize(16), BIG, 10), false, "an id never sent");
  assert.equal(s.onAck(0, dataSize(16), BIG, 10), false, "id 0");
  assert.equal(s.frags, 1);
  assert.equal(s.stats.acks, 0);
  // The probe is still out, and its true answer still counts.
  assert.equal(ack(s, p, 20), true);
  assert.equal(s.frags, 16);
  // Answered once: a repeat is refused.
  assert.equal(ack(s, p, 30), false);
  assert.equal(s.stats.acks, 1);
});

Deno.test("pmtu: the peer's limit caps the size and ends the search; the next one asks again", () => {
  const cases: [number, number][] = [
    [dataSize(4), 4],
    [dataSize(4) + 1023, 4],
    [dataSize(1), 1],
    [1441, 1],
    [dataSize(15), 15],
    [BIG, 16],
  ];
  for (const [limit, want] of cases) {
    const s = new MtuSearch(16, 0, CFG);
    const p = probe(s, 0);
    assert.equal(ack(s, p, 10, limit), true);
    assert.equal(s.frags, want, `limit ${limit}`);
    if (want === 16) {
      assert.equal(s.nextDeadline(), null, "our own ceiling reached: nothing left to try");
      assert.equal(s.poll(10 + CFG.raiseMs), null, "not even after raiseMs");
      continue;
    }
    // The peer's link or transport may change: a new search after raiseMs asks it again.
    assert.equal(s.nextDeadline(), 10 + CFG.raiseMs, `limit ${limit}`);
    assert.equal(s.poll(9 + CFG.raiseMs), null, `limit ${limit}: not before raiseMs`);
    assert.equal(s.poll(10 + CFG.raiseMs)?.frags, 16, `limit ${limit}: from the top again`);
  }
});

Deno.test("pmtu: our ceiling caps the first probe", () => {
  for (const c of [2, 5, 9, 16, 17, 100]) {
    const s = new MtuSearch(c, 0, CFG);
    const p = probe(s, 0);
    assert.equal(p.frags, Math.min(c, 16), `ceiling ${c}`);
    assert.equal(ack(s, p, 1), true);
    assert.equal(s.frags, Math.min(c, 16));
  }
});

Deno.test("pmtu: an unanswered probe is retried probeTries times, then halfway is probed", () => {
  for (const tries of [1, 2, 3]) {
    const s = new MtuSearch(16, 0, { ...CFG, probeTries: tries });
    const ids = new Set<number>();
    for (let i = 0; i < tries; i++) {
      const at = i * CFG.probeTimeoutMs;
      assert.equal(s.poll(at - 1), null, `nothing before ${at}`);
      const p = probe(s, at);
      assert.equal(p.frags, 16, `try ${i + 1} of ${tries}`);
      ids.add(p.id);
      assert.equal(s.nextDeadline(), at + CFG.probeTimeoutMs);
      assert.equal(s.poll(at + CFG.probeTimeoutMs - 1), null);
    }
    assert.equal(ids.size, tries, "each try has its own id");
    // 16 failed: between 1 (works) and 15 (the bound now) lies ceil((1 + 15) / 2) = 8.
    const half = probe(s, tries * CFG.probeTimeoutMs);
    assert.equal(half.frags, 8, `after ${tries} tries`);
    assert.equal(s.stats.probes, tries + 1);
    assert.equal(s.frags, 1);
  }
});

Deno.test("pmtu: a failure after a confirmed size probes halfway between the two", () => {
  // Path carries 8: 16 fails, 8 confirms, then ceil((8 + 15) / 2) = 12, then 10, then 9.
  const s = new MtuSearch(16, 0, CFG);
  const { sizes } = runAgainst(s, 8, 0, 100_000);
  assert.deepEqual(sizes, [16, 16, 8, 12, 12, 10, 10, 9, 9]);
  assert.equal(s.frags, 8);
  // Path carries 11: 16, 8 (ok), 12, 10 (ok), ceil((10 + 11) / 2) = 11 (ok).
  const t = new MtuSearch(16, 0, CFG);
  assert.deepEqual(runAgainst(t, 11, 0, 100_000).sizes, [16, 16, 8, 12, 12, 10, 11]);
  assert.equal(t.frags, 11);
});

Deno.test("pmtu: the search finds exactly what the path carries, in a bounded number of probes", () => {
  for (const ceiling of [16, 13, 8, 2]) {
    for (let n = 1; n <= ceiling; n++) {
      const s = new MtuSearch(ceiling, 0, CFG);
      const { sizes, now } = runAgainst(s, n, 0, CFG.raiseMs / 2);
      const what = `ceiling ${ceiling}, path carries ${n}`;
      assert.equal(s.frags, n, what);
      // The bound, then at most ceil(log2(ceiling - 1)) halvings, each tried probeTries times.
      const most = CFG.probeTries * (1 + Math.ceil(Math.log2(Math.max(1, ceiling - 1))));
      assert.ok(sizes.length <= most, `${what}: ${sizes.length} probes > ${most}: ${sizes}`);
      assert.equal(s.stats.probes, sizes.length, what);
      assert.ok(sizes.every((k) => k > 1 && k <= ceiling), `${what}: ${sizes}`);
      // Ended: below our ceiling it starts over after raiseMs, at it there is nothing more.
      assert.equal(s.nextDeadline(), n < ceiling ? now + CFG.raiseMs : null, what);
      assert.equal(s.poll(now + CFG.raiseMs - 1), null, what);
    }
  }
});

Deno.test("pmtu: after raiseMs the search starts over from the top", () => {
  const s = new MtuSearch(16, 0, CFG);
  const first = runAgainst(s, 5, 0, CFG.raiseMs);
  assert.equal(s.frags, 5);
  const again = first.now + CFG.raiseMs;
  assert.equal(s.nextDeadline(), again);
  assert.equal(s.poll(again - 1), null);
  assert.equal(s.frags, 5, "kept while waiting");
  // The path grew: the top is tried first, and confirmed.
  const p = probe(s, again);
  assert.equal(p.frags, 16);
  assert.equal(ack(s, p, again + 5), true);
  assert.equal(s.frags, 16);
  assert.equal(s.nextDeadline(), null);
});

Deno.test("pmtu: after raiseMs, a path that still carries the same settles there again", () => {
  const s = new MtuSearch(16, 0, CFG);
  const first = runAgainst(s, 6, 0, CFG.raiseMs);
  const second = runAgainst(s, 6, first.now + CFG.raiseMs, first.now + 2 * CFG.raiseMs);
  assert.equal(second.sizes[0], 16, "from the top");
  assert.equal(s.frags, 6, "the same size again");
  assert.equal(s.nextDeadline(), second.now + CFG.raiseMs);
});

Deno.test("pmtu: setCeiling below frags lowers them at once; raising it searches again", () => {
  const s = new MtuSearch(16, 0, CFG);
  assert.equal(ack(s, probe(s, 0), 10), true);
  assert.equal(s.frags, 16);
  s.setCeiling(4, 100);
  assert.equal(s.frags, 4);
  assert.equal(s.nextDeadline(), null);
  assert.equal(s.poll(100 + CFG.raiseMs), null);
  // Same ceiling again: nothing changes.
  s.setCeiling(4, 200);
  assert.equal(s.frags, 4);
  // A ceiling of 0 or less is one fragment.
  s.setCeiling(0, 300);
  assert.equal(s.frags, 1);
  s.setCeiling(4, 400);
  assert.equal(s.frags, 1, "raising confirms nothing by itself");
  assert.equal(s.nextDeadline(), 400, "but searches at once");
  s.setCeiling(16, 500);
  const p = probe(s, 500);
  assert.equal(p.frags, 16);
  assert.equal(ack(s, p, 510), true);
  assert.equal(s.frags, 16);
});

Deno.test("pmtu: raising the ceiling during the wait after a search probes at once", () => {
  const s = new MtuSearch(8, 0, CFG);
  runAgainst(s, 8, 0, 100_000);
  assert.equal(s.frags, 8);
  assert.equal(s.nextDeadline(), null);
  s.setCeiling(12, 5000);
  assert.equal(s.nextDeadline(), 5000);
  assert.equal(probe(s, 5000).frags, 12);
});

Deno.test("pmtu: an ack is capped by a ceiling lowered while its probe was out", () => {
  const s = new MtuSearch(16, 0, CFG);
  const p = probe(s, 0);
  s.setCeiling(4, 10);
  assert.equal(ack(s, p, 20), true);
  assert.equal(s.frags, 4);
});

Deno.test("pmtu: no probe above a ceiling lowered while it was out", () => {
  const s = new MtuSearch(16, 0, CFG);
  assert.equal(probe(s, 0).frags, 16);
  s.setCeiling(4, 500);
  let probes = 0;
  for (let t = 1000; t <= 10_000; t += 1000) {
    const p = s.poll(t);
    if (p) probes++;
    if (p) assert.ok(p.frags <= 4, `probe of ${p.frags} at ${t} above the ceiling of 4`);
  }
  assert.ok(probes > 0, "the search goes on below the new ceiling");
});

Deno.test("pmtu: a late ack of an earlier try still confirms", () => {
  const s = new MtuSearch(16, 0, CFG);
  const first = probe(s, 0);
  const retry = probe(s, 1000);
  assert.notEqual(retry.id, first.id);
  assert.equal(retry.frags, 16);
  assert.equal(ack(s, first, 1100), true);
  assert.equal(s.frags, 16);
  assert.equal(s.nextDeadline(), null, "the retry no longer waits for an answer");
  assert.equal(s.poll(2000), null);
  // The search has ended and forgotten its probes: the retry's answer is refused, harmlessly.
  assert.equal(ack(s, retry, 1200), false);
  assert.equal(s.frags, 16);
  assert.equal(s.stats.acks, 1);
});

Deno.test("pmtu: a late ack of a size declared failed still confirms it", () => {
  const s = new MtuSearch(16, 0, CFG);
  const first = probe(s, 0);
  probe(s, 1000);
  const half = probe(s, 2000);
  assert.equal(half.frags, 8);
  assert.equal(ack(s, first, 2100), true);
  assert.equal(s.frags, 16);
  assert.equal(s.nextDeadline(), null);
});

Deno.test("pmtu: a ceiling of one fragment never probes and never wakes", () => {
  for (const c of [1, 0, -3, 0.5]) {
    const s = new MtuSearch(c, 0, CFG);
    assert.equal(s.frags, 1);
    assert.equal(s.nextDeadline(), null, `ceiling ${c}`);
    assert.equal(s.poll(0), null);
    assert.equal(s.poll(CFG.raiseMs * 3), null);
    assert.equal(s.nextDeadline(), null);
    assert.equal(s.stats.probes, 0);
  }
});

Deno.test("pmtu: onTimeouts drops to one fragment after blackHoleTimeouts without progress", () => {
  const s = new MtuSearch(16, 0, CFG);
  assert.equal(ack(s, probe(s, 0), 10), true);
  assert.equal(s.frags, 16);
  s.onProgress(3);
  assert.equal(s.onTimeouts(3, 100), false);
  assert.equal(s.onTimeouts(4, 200), false, "one timeout is ordinary loss");
  assert.equal(s.frags, 16);
  assert.equal(s.stats.blackHoles, 0);
  s.onProgress(4); // an ACK: the count starts over
  assert.equal(s.onTimeouts(5, 300), false);
  assert.equal(s.frags, 16);
  assert.equal(s.onTimeouts(6, 400), true, "two in a row");
  assert.equal(s.frags, 1);
  assert.equal(s.stats.blackHoles, 1);
  assert.equal(s.onTimeouts(6, 500), false, "already at one fragment");
  assert.equal(s.stats.blackHoles, 1);
  // Probing resumes 60 probe timeouts later, from the top.
  const resume = 400 + 60 * CFG.probeTimeoutMs;
  assert.equal(s.nextDeadline(), resume);
  assert.equal(s.poll(resume - 1), null);
  const p = probe(s, resume);
  assert.equal(p.frags, 16);
  assert.equal(ack(s, p, resume + 10), true);
  assert.equal(s.frags, 16);
  // The count starts from the drop: the timeouts before it do not count again.
  assert.equal(s.onTimeouts(6, resume + 20), false);
  assert.equal(s.onTimeouts(7, resume + 30), false);
  assert.equal(s.onTimeouts(8, resume + 40), true);
  assert.equal(s.stats.blackHoles, 2);
});

Deno.test("pmtu: onTimeouts follows blackHoleTimeouts", () => {
  const s = new MtuSearch(16, 0, { ...CFG, blackHoleTimeouts: 3 });
  assert.equal(ack(s, probe(s, 0), 10), true);
  s.onProgress(0);
  assert.equal(s.onTimeouts(2, 100), false);
  assert.equal(s.frags, 16);
  assert.equal(s.onTimeouts(3, 200), true);
  assert.equal(s.frags, 1);
});

Deno.test("pmtu: a black hole forgets the probes out: their late acks are refused", () => {
  const s = new MtuSearch(16, 0, CFG);
  probe(s, 0);
  probe(s, 1000);
  const half = probe(s, 2000);
  assert.equal(half.frags, 8);
  assert.equal(ack(s, half, 2010), true);
  assert.equal(s.frags, 8);
  const q = probe(s, 2010);
  assert.equal(q.frags, 12);
  s.onProgress(0);
  assert.equal(s.onTimeouts(2, 2100), true);
  assert.equal(s.frags, 1);
  assert.equal(ack(s, q, 2110), false, "a probe from before the drop proves nothing now");
  assert.equal(s.frags, 1);
  assert.equal(s.stats.acks, 1);
  assert.equal(s.nextDeadline(), 2100 + 60 * CFG.probeTimeoutMs);
});

Deno.test("pmtu: timeouts from before a new search do not count as its black hole", () => {
  // The peer's Sender has had 5 timeouts when the search is made (a new direct path, or the
  // relay, for a peer whose DATA was lost earlier).
  const s = new PeerMtu(CFG).route("k", 16, 5, 0);
  assert.equal(ack(s, probe(s, 0), 10), true);
  assert.equal(s.onTimeouts(5, 20), false, "no timeout since this search began");
  assert.equal(s.onTimeouts(6, 30), false, "one is ordinary loss");
  assert.equal(s.frags, 16);
  assert.equal(s.onTimeouts(7, 40), true, "two in a row are a black hole");
  assert.equal(s.frags, 1);
});

// ---- PeerMtu ----

Deno.test("pmtu: PeerMtu keeps one direct search per path and a separate relay search", () => {
  const pm = new PeerMtu(CFG);
  assert.equal(pm.current, null);
  assert.deepEqual(pm.sizes, { direct: null, relay: null });
  const a = pm.route("192.0.2.1:4000/0", 16, 0, 0);
  assert.equal(pm.current, a);
  assert.equal(pm.route("192.0.2.1:4000/0", 16, 0, 10), a, "same key, same search");
  const relay = pm.route(null, 16, 0, 20);
  assert.notEqual(relay, a);
  assert.equal(pm.current, relay);
  assert.equal(pm.route(null, 16, 0, 30), relay, "the relay's is kept");
  assert.equal(pm.route("192.0.2.1:4000/0", 16, 0, 40), a, "the relay does not replace it");
  const b = pm.route("198.51.100.7:5000/0", 16, 0, 50);
  assert.notEqual(b, a, "a new path, a new search");
  assert.notEqual(b, relay);
  assert.notEqual(pm.route("192.0.2.1:4000/0", 16, 0, 60), a, "only the latest path is kept");
  assert.equal(pm.route(null, 16, 0, 70), relay);
});

Deno.test("pmtu: PeerMtu.route passes the ceiling on to the search", () => {
  const pm = new PeerMtu(CFG);
  const s = pm.route("k", 16, 0, 0);
  assert.equal(ack(s, probe(s, 0), 10), true);
  assert.equal(s.frags, 16);
  assert.equal(pm.route("k", 3, 0, 20), s);
  assert.equal(s.frags, 3);
  assert.deepEqual(pm.sizes, { direct: 3, relay: null });
  const r = pm.route(null, 1, 0, 30);
  assert.equal(r.nextDeadline(), null);
  assert.deepEqual(pm.sizes, { direct: 3, relay: 1 });
});

Deno.test("pmtu: PeerMtu ids are unique across searches, so an ack reaches its own", () => {
  const pm = new PeerMtu(CFG);
  const direct = pm.route("k", 16, 0, 0);
  const relay = pm.route(null, 8, 0, 0);
  const d1 = probe(direct, 0);
  const r1 = probe(relay, 0);
  const d2 = probe(direct, 1000); // a retry
  const r2 = probe(relay, 1000);
  const ids = [d1.id, r1.id, d2.id, r2.id];
  assert.equal(new Set(ids).size, 4, `ids ${ids}`);
  assert.equal(r1.frags, 8);
  // The relay's answer raises the relay's size only.
  assert.equal(pm.onAck(r2.id, dataSize(8), BIG, 1010), true);
  assert.deepEqual(pm.sizes, { direct: 1, relay: 8 });
  // A size that does not match the probe with that id is refused, whichever search has it.
  assert.equal(pm.onAck(d1.id, dataSize(8), BIG, 1020), false);
  assert.equal(pm.onAck(999, dataSize(16), BIG, 1020), false);
  assert.deepEqual(pm.sizes, { direct: 1, relay: 8 });
  assert.equal(pm.onAck(d1.id, dataSize(16), BIG, 1030), true);
  assert.deepEqual(pm.sizes, { direct: 16, relay: 8 });
  assert.equal(direct.frags, 16);
  assert.equal(relay.frags, 8);
});

Deno.test("pmtu: PeerMtu.stats adds up both searches; onProgress reaches both", () => {
  const pm = new PeerMtu(CFG);
  assert.deepEqual(pm.stats(), { probes: 0, acks: 0, blackHoles: 0 });
  const direct = pm.route("k", 16, 0, 0);
  const d = probe(direct, 0);
  probe(direct, 1000);
  assert.equal(pm.onAck(d.id, dataSize(16), BIG, 1010), true);
  const relay = pm.route(null, 4, 0, 1020);
  const r = probe(relay, 1020);
  assert.equal(pm.onAck(r.id, dataSize(4), BIG, 1030), true);
  assert.deepEqual(direct.stats, { probes: 2, acks: 1, blackHoles: 0 });
  assert.deepEqual(relay.stats, { probes: 1, acks: 1, blackHoles: 0 });
  assert.deepEqual(pm.stats(), { probes: 3, acks: 2, blackHoles: 0 });
  // One progress report for the peer's sender reaches both searches.
  pm.onProgress(7);
  assert.equal(direct.onTimeouts(8, 1100), false);
  assert.equal(relay.onTimeouts(8, 1100), false);
  assert.equal(direct.onTimeouts(9, 1200), true);
  assert.equal(relay.onTimeouts(9, 1200), true);
  assert.deepEqual(pm.stats(), { probes: 3, acks: 2, blackHoles: 2 });
  // A replaced direct search's counters go with it.
  pm.route("other", 16, 0, 1300);
  assert.deepEqual(pm.stats(), { probes: 1, acks: 1, blackHoles: 1 });
});
