/**
 * Birthday punching: the machine on its own, then two agents behind simulated NATs (one
 * endpoint-independent, one with random ports per destination) on the in-memory network.
 */
import assert from "node:assert/strict";
import {
  Birthday,
  type BirthdayAction,
  birthdayRole,
  DEFAULT_BIRTHDAY_CONFIG,
} from "../../lib/peer/birthday.ts";
import type { NatMapping } from "../../lib/wire/codec.ts";
import { MemNet, type SimNat } from "../_helpers/memnet.ts";
import type { PeerEvent } from "../../lib/peer/events.ts";

/** A small deterministic generator, so each run's NAT ports are the same. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}
const bytesFrom = (next: () => number) => (n: number) =>
  Uint8Array.from({ length: n }, () => Math.floor(next() * 256));

Deno.test("birthday: who is hard and who is easy", () => {
  const cases: [NatMapping, NatMapping, string | null][] = [
    ["address-and-port-dependent", "endpoint-independent", "hard"],
    ["address-dependent", "endpoint-independent", "hard"],
    ["endpoint-independent", "address-and-port-dependent", "easy"],
    ["endpoint-independent", "endpoint-independent", null],
    ["address-and-port-dependent", "address-and-port-dependent", null],
    ["unknown", "endpoint-independent", null],
    ["endpoint-independent", "unknown", null],
  ];
  for (const [mine, theirs, want] of cases) {
    assert.equal(birthdayRole(mine, theirs), want, `${mine} vs ${theirs}`);
  }
});

Deno.test("birthday: the easy side probes distinct random ports at the configured rate", () => {
  const cfg = { ...DEFAULT_BIRTHDAY_CONFIG, probesPerSec: 200, batchMs: 50, maxProbes: 1000 };
  const b = new Birthday(
    "easy",
    { host: "203.0.113.9", port: 4000 },
    cfg,
    0,
    bytesFrom(lcg(1)),
    () => {
      throw new Error("the easy side opens no sockets");
    },
  );
  const out: BirthdayAction[] = [];
  b.start(out);
  assert.equal(out.length, 0);
  let now = 0, last = 0;
  for (; b.active; now = b.nextDeadline()!) {
    last = now;
    b.tick(now, out);
  }
  now = last;
  const probes = out.filter((a) => a.type === "probe");
  assert.equal(probes.length, 1000, "stops at its budget");
  const ports = new Set(probes.map((p) => p.type === "probe" ? p.to.port : 0));
  assert.equal(ports.size, 1000, "no port probed twice");
  for (const p of probes) {
    if (p.type !== "probe") continue;
    assert.equal(p.to.host, "203.0.113.9");
    assert.ok(p.to.port >= 1024 && p.to.port <= 65535);
    assert.equal(p.via, 0);
  }
  // 1000 probes at 200/s: about 5 s.
  assert.ok(now >= 4900 && now <= 5100, `ended at ${now} ms`);
});

Deno.test("birthday: the hard side opens its sockets, resends, and keeps only the winner", () => {
  const cfg = { ...DEFAULT_BIRTHDAY_CONFIG, sockets: 8, resendMs: 5000, windowMs: 30_000 };
  let via = 100;
  const target = { host: "198.51.100.4", port: 5000 };
  const b = new Birthday("hard", target, cfg, 0, bytesFrom(lcg(2)), () => ++via);
  const out: BirthdayAction[] = [];
  b.start(out);
  assert.deepEqual(out.map((a) => a.type), Array(8).fill("open"));
  out.length = 0;
  b.tick(0, out);
  assert.equal(out.length, 8);
  assert.ok(out.every((a) => a.type === "probe" && a.to === target));
  assert.equal(b.nextDeadline(), 5000);
  out.length = 0;
  b.tick(4999, out);
  assert.equal(out.length, 0, "nothing before the resend is due");
  b.won(103, out);
  assert.deepEqual(
    out.map((a) => a.type === "close" ? a.via : -1).sort((x, y) => x - y),
    [101, 102, 104, 105, 106, 107, 108],
  );
  assert.equal(b.active, false);
  assert.equal(b.nextDeadline(), null);
});

Deno.test("birthday: a window that finds nothing closes every socket", () => {
  const cfg = { ...DEFAULT_BIRTHDAY_CONFIG, sockets: 4, windowMs: 10_000 };
  let via = 0;
  const b = new Birthday(
    "hard",
    { host: "198.51.100.4", port: 5000 },
    cfg,
    0,
    bytesFrom(lcg(3)),
    () => ++via,
  );
  const out: BirthdayAction[] = [];
  b.start(out);
  for (let now = 0; b.active; now = b.nextDeadline()!) b.tick(now, out);
  assert.equal(out.filter((a) => a.type === "close").length, 4);
});

const EASY_HOST = "198.51.100.10";
const HARD_HOST = "203.0.113.20";

function natPair(seed: number, easy: SimNat["kind"], hard: SimNat["kind"]) {
  const net = new MemNet({ keepaliveMs: 15_000 });
  const cfg = { keepaliveMs: 15_000, random: bytesFrom(lcg(seed)) };
  net.add("easy", cfg, { host: "10.0.1.2", port: 4000 }, {
    kind: easy,
    publicHost: EASY_HOST,
    random: lcg(seed + 1),
  });
  net.add("hard", { ...cfg, random: bytesFrom(lcg(seed + 2)) }, { host: "10.0.2.2", port: 4000 }, {
    kind: hard,
    publicHost: HARD_HOST,
    random: lcg(seed + 3),
  });
  return net;
}

function paths(net: MemNet, name: string): string[] {
  return net.events.get(name)!.flatMap((e: PeerEvent) => e.type === "path" ? [e.path] : []);
}

function tell(net: MemNet, name: string, mapping: NatMapping) {
  net.call(name, (out) => net.agent(name).setNat({ mapping, mapped: [] }, net.now, out));
}

Deno.test("birthday: port-restricted <-> symmetric goes direct, and chat crosses the switch intact", () => {
  const net = natPair(7, "cone", "symmetric");
  tell(net, "easy", "endpoint-independent");
  tell(net, "hard", "address-and-port-dependent");
  net.advance(1000);
  // Relay first: the first message arrives long before any direct path.
  net.say("easy", "m0");
  assert.deepEqual(net.texts("hard"), ["m0"]);
  assert.equal(paths(net, "easy")[0], "relay");
  // Keep talking through the punch window, the birthday attempt and the switch.
  for (let i = 1; i <= 40; i++) {
    net.advance(500);
    net.say(i % 2 ? "easy" : "hard", `m${i}`);
  }
  net.advance(5000);
  assert.ok(paths(net, "easy").includes("direct"), `easy paths: ${paths(net, "easy")}`);
  assert.ok(paths(net, "hard").includes("direct"), `hard paths: ${paths(net, "hard")}`);
  const fromEasy = Array.from({ length: 41 }, (_, i) => i).filter((i) => i % 2 === 1 || i === 0);
  const fromHard = Array.from({ length: 41 }, (_, i) => i).filter((i) => i % 2 === 0 && i > 0);
  assert.deepEqual(net.texts("hard"), fromEasy.map((i) => `m${i}`), "in order, exactly once");
  assert.deepEqual(net.texts("easy"), fromHard.map((i) => `m${i}`), "in order, exactly once");
  // It was the birthday attempt that found the path (classic punching cannot here).
  assert.deepEqual(net.agent("easy").birthdays().map((b) => b.role), ["easy"]);
  assert.deepEqual(net.agent("hard").birthdays().map((b) => b.role), ["hard"]);
  // The hard side keeps the one socket that won; the easy side never opened any.
  assert.equal(net.openSockets("hard"), 1);
  assert.equal(net.openSockets("easy"), 0);
  // Once direct, no data goes through the relay.
  const before = net.wire.length;
  net.say("easy", "direct now");
  const relayed = net.wire.slice(before).filter((p) => p.to.host === "192.0.2.1");
  assert.equal(relayed.length, 0, "nothing relayed once direct");
  assert.deepEqual(net.texts("hard").at(-1), "direct now");
  assert.deepEqual(net.fatals, []);
});

Deno.test("birthday: without NAT knowledge the same pair stays relayed (control)", () => {
  const net = natPair(7, "cone", "symmetric");
  net.advance(40_000);
  assert.deepEqual(paths(net, "easy"), ["relay"]);
  assert.equal(net.openSockets("hard"), 0);
  net.say("easy", "still works");
  assert.deepEqual(net.texts("hard"), ["still works"]);
});

Deno.test("birthday: symmetric <-> symmetric makes no attempt", () => {
  const net = natPair(9, "symmetric", "symmetric");
  tell(net, "easy", "address-and-port-dependent");
  tell(net, "hard", "address-and-port-dependent");
  net.advance(40_000);
  assert.deepEqual(paths(net, "easy"), ["relay"]);
  assert.equal(net.openSockets("hard") + net.openSockets("easy"), 0);
  assert.deepEqual(net.agent("easy").birthdays(), []);
});
