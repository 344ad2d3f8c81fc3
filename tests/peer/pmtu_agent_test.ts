/**
 * Path MTU probing between two agents over the in-memory network: DATA carries several
 * fragments only where both links allow it and a probe got through; a path that carries less
 * than the links say settles below it; one that shrinks mid-transfer loses nothing.
 */
import assert from "node:assert/strict";
import { MemNet, SERVER } from "../_helpers/memnet.ts";
import { addrKey } from "../../lib/wire/addr.ts";
import { MAX_SEND, T } from "../../lib/wire/codec.ts";
import type { AgentConfig } from "../../lib/peer/agent.ts";
import type { Packet } from "../_helpers/memnet.ts";

const BIG_LINK: Partial<AgentConfig> = { linkMtu: () => 65536 };
const MESSAGE = 16 * 1024;

/** Message i: its number, then filler to MESSAGE bytes. */
function text(i: number): string {
  const head = `m${i}:`;
  return head + String.fromCharCode(97 + (i % 26)).repeat(MESSAGE - head.length);
}

function isServer(p: Packet): boolean {
  return addrKey(p.to) === addrKey(SERVER) || addrKey(p.from) === addrKey(SERVER);
}

/** a and b with a direct path (or relayed only, with `relayOnly`), both links as given. */
function pair(a: Partial<AgentConfig>, b: Partial<AgentConfig>, relayOnly = false): MemNet {
  const net = new MemNet();
  if (relayOnly) net.filter = isServer;
  net.add("a", a);
  net.add("b", b);
  net.advance(5000);
  const info = net.agents.get("b")!.peers().find((p) => p.name === "a")!;
  // Relayed: "connecting" until the first DATA goes, then "relay".
  if (!relayOnly) assert.equal(info.path, "direct");
  assert.ok(info.secure);
  return net;
}

/** b sends `n` full-size messages to the room, `gapMs` apart; a must get each once, in order. */
function send(net: MemNet, n: number, gapMs = 50, from = 0): void {
  for (let i = from; i < from + n; i++) {
    net.say("b", text(i));
    net.advance(gapMs);
  }
  net.advance(5000);
}

function bToA(net: MemNet) {
  return net.agents.get("b")!.peers().find((p) => p.name === "a")!;
}

function largest(net: MemNet, from: string, pred: (p: Packet) => boolean = () => true): number {
  const host = addrKey(net.hosts.get(from)!);
  return Math.max(
    0,
    ...net.wire.filter((p) => addrKey(p.from) === host && pred(p)).map((p) => p.bytes.length),
  );
}

Deno.test("pmtu: links that carry 64 KiB: a whole 16 KiB message per DATA, direct", () => {
  const net = pair(BIG_LINK, BIG_LINK);
  send(net, 20);
  assert.deepEqual(net.texts("a"), Array.from({ length: 20 }, (_, i) => text(i)));
  assert.equal(bToA(net).dataFrags, 16);
  // 16 fragments of 1 KiB, the DATA framing, the sealing.
  assert.equal(largest(net, "b"), 16 * 1024 + 34 + 31);
  const stats = net.agents.get("b")!.counters();
  assert.ok(stats.mtu_probes! >= 1 && stats.mtu_acks! >= 1, JSON.stringify(stats));
});

Deno.test("pmtu: Ethernet links (the default): one fragment per DATA, no probes", () => {
  const net = pair({}, {});
  send(net, 5);
  assert.equal(net.texts("a").length, 5);
  assert.equal(bToA(net).dataFrags, 1);
  assert.ok(largest(net, "b") <= MAX_SEND, `b sent ${largest(net, "b")} bytes`);
  assert.equal(net.agents.get("b")!.counters().mtu_probes ?? 0, 0);
});

Deno.test("pmtu: the peer's link bounds it: its MTU_ACK's limit keeps us at one fragment", () => {
  const net = pair({}, BIG_LINK);
  send(net, 5);
  assert.equal(net.texts("a").length, 5);
  assert.equal(bToA(net).dataFrags, 1);
  // The probe itself went out big; no DATA did.
  const data = (p: Packet) => p.bytes.length !== 16 * 1024 + 34 + 31 || p.bytes[2] !== T.SEALED;
  assert.ok(largest(net, "b", data) <= MAX_SEND);
  assert.equal(net.agents.get("b")!.counters().mtu_acks, 1);
});

Deno.test("pmtu: a path that drops datagrams over 4000 bytes settles at 3 fragments", () => {
  const net = pair(BIG_LINK, BIG_LINK);
  net.filter = (p) => p.bytes.length <= 4000;
  send(net, 40, 500);
  assert.deepEqual(net.texts("a"), Array.from({ length: 40 }, (_, i) => text(i)));
  // 3 · 1024 + 65 = 3137 bytes fit; 4 · 1024 + 65 = 4161 do not.
  assert.equal(bToA(net).dataFrags, 3);
});

Deno.test("pmtu: relayed, both links and the server's big: whole messages through the relay", () => {
  const net = pair(BIG_LINK, BIG_LINK, true);
  send(net, 10);
  assert.equal(net.texts("a").length, 10);
  assert.equal(bToA(net).path, "relay");
  assert.equal(bToA(net).dataFrags, 16);
  // RELAY: its 27-byte wrapping around the sealed DATA.
  assert.equal(largest(net, "b"), 16 * 1024 + 34 + 31 + 27);
  assert.ok(net.server.stats.relayedBytes > 10 * MESSAGE);
});

Deno.test("pmtu: the path shrinks mid-transfer (a black hole): back to one fragment, nothing lost", () => {
  const net = pair(BIG_LINK, BIG_LINK);
  send(net, 5);
  assert.equal(bToA(net).dataFrags, 16);
  // From now on nothing over 1500 bytes gets through, and nothing says so.
  net.filter = (p) => p.bytes.length <= 1500;
  send(net, 30, 20, 5);
  net.advance(30_000);
  assert.deepEqual(net.texts("a"), Array.from({ length: 35 }, (_, i) => text(i)));
  assert.equal(bToA(net).dataFrags, 1);
  assert.equal(net.agents.get("b")!.counters().mtu_black_holes, 1);
  const undelivered = net.events.get("b")!.filter((e) => e.type === "undelivered");
  assert.deepEqual(undelivered, []);
});

Deno.test("pmtu: timeouts before the search (DATA lost a while, then the path heals) are no black hole", () => {
  const net = pair(BIG_LINK, BIG_LINK);
  const b = addrKey(net.hosts.get("b")!), a = addrKey(net.hosts.get("a")!);
  let drop = true;
  net.filter = (p) =>
    !(drop && addrKey(p.from) === b && addrKey(p.to) === a && p.bytes[2] === T.SEALED);
  net.say("b", "small");
  net.advance(3500);
  drop = false;
  net.advance(5000);
  assert.equal(net.agents.get("b")!.counters().mtu_probes, 0, "no search yet");
  send(net, 5, 50, 1);
  assert.deepEqual(net.texts("a"), ["small", ...Array.from({ length: 5 }, (_, i) => text(i + 1))]);
  assert.equal(bToA(net).dataFrags, 16);
  assert.equal(net.agents.get("b")!.counters().mtu_black_holes, 0);
});
