/**
 * TCP hole punching through the agents, on the in-memory network: two peers behind cone NATs
 * with UDP between them dropped find no direct UDP path, connect to each other over TCP at once
 * (memnet's simultaneous open), and the connection that answers becomes a direct path that
 * carries their chat. The lab test (tests/natlab/tcp_punch_test.ts) does the same on real NATs.
 */
import assert from "node:assert/strict";
import { MemNet, type Packet, SERVER } from "../_helpers/memnet.ts";
import { addrKey } from "../../lib/wire/addr.ts";
import { T } from "../../lib/wire/codec.ts";
import type { PeerEvent } from "../../lib/peer/events.ts";

const isServer = (p: Packet) =>
  addrKey(p.to) === addrKey(SERVER) || addrKey(p.from) === addrKey(SERVER);

function pair(tcpPunch: boolean) {
  const net = new MemNet();
  // Peer-to-peer UDP is dropped; the server and TCP get through.
  net.filter = (p) => isServer(p) || p.tcp !== undefined;
  let seed = 1;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const off = tcpPunch ? {} : { tcpPunch: null };
  for (const [name, n] of [["a", 2], ["b", 3]] as const) {
    const host = { host: `10.0.${n}.2`, port: 4000 };
    net.add(name, { locals: [host], ...off }, host, {
      kind: "cone",
      publicHost: `203.0.113.${n}`,
      random,
    });
  }
  return net;
}

const lastPath = (net: MemNet, name: string) =>
  net.events.get(name)!.filter((e): e is Extract<PeerEvent, { type: "path" }> => e.type === "path")
    .at(-1);

Deno.test("tcp punch (memnet): UDP dropped between cone NATs -> direct over TCP, chat both ways", () => {
  const net = pair(true);
  net.advance(20_000);
  assert.equal(net.fatals.length, 0, net.fatals.join("\n"));
  assert.equal(net.tcpConnections, 1, "one connection won; the others closed");
  for (const [me, other, pub] of [["a", "b", "203.0.113.3"], ["b", "a", "203.0.113.2"]]) {
    const p = lastPath(net, me!);
    assert.equal(p?.peer, other);
    assert.equal(p?.path, "direct", JSON.stringify(p));
    assert.equal(p?.transport, "tcp", JSON.stringify(p));
    assert.equal(p?.addr, `${pub}:4000`);
  }
  const before = net.wire.filter((p) => isServer(p)).length;
  net.say("a", "over tcp");
  net.say("b", "back over tcp");
  net.advance(2000);
  assert.deepEqual(net.texts("b"), ["over tcp"]);
  assert.deepEqual(net.texts("a"), ["back over tcp"]);
  // Nothing of the chat went through the relay: only keepalives reached the server meanwhile.
  const relayed = net.wire.slice(before).filter((p) => isServer(p) && p.bytes[2] === T.RELAY);
  assert.equal(relayed.length, 0, "no RELAY datagrams once the TCP path is up");
});

Deno.test("tcp punch (memnet): with TCP punching off, the same pair stays relayed", () => {
  const net = pair(false);
  net.advance(20_000);
  assert.equal(net.tcpConnections, 0);
  assert.equal(lastPath(net, "a")?.path, "relay");
  assert.equal(lastPath(net, "b")?.path, "relay");
  const before = net.wire.length;
  net.say("a", "through the relay");
  net.advance(2000);
  assert.deepEqual(net.texts("b"), ["through the relay"]);
  // The positive control of the other test's check: relayed chat shows as RELAY datagrams.
  assert.ok(net.wire.slice(before).some((p) => isServer(p) && p.bytes[2] === T.RELAY));
});

Deno.test("tcp punch (memnet): when UDP gets through again, the path moves from TCP to UDP", () => {
  const net = pair(true);
  net.advance(20_000);
  assert.equal(lastPath(net, "a")?.transport, "tcp");
  net.filter = () => true; // UDP between them works again
  net.advance(35_000); // one retry of UDP candidates (retryDirectMs) later
  for (const [me, pub] of [["a", "203.0.113.3"], ["b", "203.0.113.2"]]) {
    const p = lastPath(net, me!);
    assert.equal(p?.path, "direct", JSON.stringify(p));
    assert.notEqual(p?.transport, "tcp", JSON.stringify(p));
    assert.equal(p?.addr, `${pub}:4000`);
  }
  net.say("a", "over udp again");
  net.advance(1000);
  assert.deepEqual(net.texts("b"), ["over udp again"]);
});
