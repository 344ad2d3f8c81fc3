/** Server hardening: each test here failed before its fix. */
import assert from "node:assert/strict";
import { type Identity, newIdentity } from "../../lib/identity/identity.ts";
import { DEFAULT_SERVER_CONFIG, limitKey } from "../../lib/server/state.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { encode, ErrorCode, MAX_DATAGRAM, type Message } from "../../lib/wire/codec.ts";
import { bindingRequest } from "../../lib/stun/binding.ts";
import { RELAY_MIN_CHARGE } from "../../lib/server/config.ts";
import {
  A,
  B,
  C,
  cfg,
  errorCode,
  type Feed,
  ID1,
  ID2,
  ID3,
  join,
  msgs,
  server,
  tick,
  tokenOf,
} from "./_server.ts";

const alice = newIdentity();
const bob = newIdentity();
const mallory = newIdentity();

Deno.test("hardening: another key cannot take over a member's session id", () => {
  const { s, feed } = server();
  const a = tokenOf(join(feed, ID1, "alice", alice, A)[0]);
  join(feed, ID2, "bob", bob, B);
  // Member ids are in every member list; mallory registers under alice's, correctly signed.
  const taken = join(feed, ID1, "mallory", mallory, C, 10);
  assert.equal(taken[0]?.type === "error" && taken[0].code, ErrorCode.ID_TAKEN);
  assert.equal(s.peerCount, 2);
  const ka = msgs(feed({ type: "keepalive", id: ID1, token: a }, A, 20))[0];
  assert.equal(ka?.type, "keepalive_ack", "alice is still registered, with her token");
  // Her own key may still re-register under it (here with another name).
  assert.equal(join(feed, ID1, "alice2", alice, A, 30)[0]?.type, "register_ok");
});

/** A fresh identity per registration (the per-key cap is not what these tests are about). */
const anyone = () => newIdentity();
const idOf = (i: number) => i.toString(16).padStart(16, "0");
const at = (host: string, port = 7000): Addr => ({ host, port });

Deno.test("hardening: one IP cannot fill a room, with the default limits", () => {
  const { s, feed } = server({ ...DEFAULT_SERVER_CONFIG });
  let admitted = 0;
  for (let i = 0; i < DEFAULT_SERVER_CONFIG.maxMembersPerRoom; i++) {
    // A minute apart: the per-minute registration rate is not what stops it.
    const ok = join(feed, idOf(i + 1), `n${i}`, anyone(), at(A.host, 7000 + i), i * 61_000);
    if (ok[0]?.type === "register_ok") admitted++;
    else assert.equal(errorCode(ok[0]), ErrorCode.SERVER_FULL);
  }
  assert.equal(admitted, DEFAULT_SERVER_CONFIG.maxPeersPerIp);
  assert.ok(admitted < DEFAULT_SERVER_CONFIG.maxMembersPerRoom);
  assert.equal(s.peerCount, admitted);
  const t = DEFAULT_SERVER_CONFIG.maxMembersPerRoom * 61_000;
  assert.equal(join(feed, ID1, "bob", bob, B, t)[0]?.type, "register_ok", "others still get in");
});

const capCases: { name: string; hosts: string[]; other: string }[] = [
  { name: "an IPv4 address", hosts: ["198.51.100.7"], other: "198.51.100.8" },
  {
    name: "an IPv6 /64",
    hosts: ["2001:db8:1:2::1", "2001:db8:1:2:aaaa::2"],
    other: "2001:db8:1:3::1",
  },
  {
    name: "an IPv4 address, also seen v4-mapped",
    hosts: ["198.51.100.7", "::ffff:198.51.100.7"],
    other: "::ffff:198.51.100.8",
  },
];
for (const c of capCases) {
  Deno.test(`hardening: live registrations per IP are capped: ${c.name}`, () => {
    const { s, feed } = server({ ...cfg, maxPeersPerIp: 3 });
    for (let i = 0; i < 3; i++) {
      const from = at(c.hosts[i % c.hosts.length]!, 7000 + i);
      assert.equal(join(feed, idOf(i + 1), `n${i}`, anyone(), from)[0]?.type, "register_ok");
    }
    const fourth = at(c.hosts[3 % c.hosts.length]!, 7010);
    const refused = join(feed, idOf(4), "n3", anyone(), fourth);
    assert.equal(errorCode(refused[0]), ErrorCode.SERVER_FULL);
    assert.equal(s.peerCount, 3);
    assert.equal(join(feed, idOf(5), "n4", anyone(), at(c.other))[0]?.type, "register_ok");
  });
}

Deno.test("hardening: a member leaving frees its IP's slot", () => {
  const { feed } = server({ ...cfg, maxPeersPerIp: 1 });
  const a = tokenOf(join(feed, ID1, "alice", alice, A)[0]);
  assert.equal(errorCode(join(feed, ID2, "bob", bob, at(A.host, 9))[0]), ErrorCode.SERVER_FULL);
  feed({ type: "leave", id: ID1, token: a }, A, 1);
  assert.equal(join(feed, ID2, "bob", bob, at(A.host, 9), 2)[0]?.type, "register_ok");
});

Deno.test("hardening: a member cannot move into an IP that is at its cap", () => {
  const { s, feed } = server({ ...cfg, maxPeersPerIp: 1 });
  tokenOf(join(feed, ID1, "alice", alice, A)[0]);
  const b = tokenOf(join(feed, ID2, "bob", bob, B)[0]);
  // bob registers again (a new nonce) from alice's IP: refused, and he stays where he was.
  const moved = join(feed, ID2, "bob", bob, at(A.host, 9), 10, "lobby", { nonce: "1".repeat(16) });
  assert.equal(errorCode(moved[0]), ErrorCode.SERVER_FULL);
  assert.equal(s.peerCount, 2);
  const ka = msgs(feed({ type: "keepalive", id: ID2, token: b }, B, 20))[0];
  assert.equal(ka?.type, "keepalive_ack");
});

Deno.test("hardening: live registrations per key are capped", () => {
  const { s, feed } = server({ ...cfg, maxPeersPerKey: 2 });
  assert.equal(join(feed, idOf(1), "alice", alice, A, 0, "r1")[0]?.type, "register_ok");
  assert.equal(join(feed, idOf(2), "alice", alice, B, 0, "r2")[0]?.type, "register_ok");
  assert.equal(
    errorCode(join(feed, idOf(3), "alice", alice, C, 0, "r3")[0]),
    ErrorCode.SERVER_FULL,
  );
  // A new session of one of them replaces it (same name and room), so it is not refused.
  assert.equal(join(feed, idOf(4), "alice", alice, C, 1, "r1")[0]?.type, "register_ok");
  assert.equal(s.peerCount, 2);
});

Deno.test("hardening: per-source limits treat v4-mapped IPv6 as the IPv4 address", () => {
  assert.equal(limitKey("::ffff:198.51.100.7"), limitKey("198.51.100.7"));
  assert.equal(limitKey("::FFFF:c633:6407"), limitKey("198.51.100.7"));
  assert.notEqual(limitKey("::ffff:198.51.100.7"), limitKey("::ffff:198.51.100.8"));
  // So two IPv4 clients of a dual-stack socket do not share one registration allowance.
  const { feed } = server({ ...cfg, registrationsPerMinute: 1 });
  assert.equal(join(feed, ID1, "alice", alice, at("::ffff:198.51.100.7"))[0]?.type, "register_ok");
  assert.equal(join(feed, ID2, "bob", bob, at("::ffff:203.0.113.9"))[0]?.type, "register_ok");
});

/** Registers `name` for `who` and leaves at once; returns nothing, asserts it was accepted. */
function joinAndLeave(
  feed: Feed,
  id: string,
  name: string,
  who: Identity,
  from: Addr,
  now: number,
) {
  const t = tokenOf(join(feed, id, name, who, from, now)[0]);
  feed({ type: "leave", id, token: t }, from, now);
}

Deno.test("hardening: a full name table refuses new names and never frees one within its TTL", () => {
  const { feed } = server({ ...cfg, maxNameBindings: 3 });
  const who = [alice, bob, newIdentity()];
  for (let i = 0; i < 3; i++) {
    joinAndLeave(feed, idOf(i + 1), `n${i}`, who[i]!, at(`192.0.2.${i + 1}`), i);
  }
  const n3 = join(feed, idOf(4), "n3", mallory, C, 10);
  assert.equal(errorCode(n3[0]), ErrorCode.SERVER_FULL, "no room for another name");
  // n0, released first, is still alice's: nobody else may take it.
  assert.equal(errorCode(join(feed, idOf(5), "n0", mallory, C, 20)[0]), ErrorCode.NAME_TAKEN);
  // The owners still get their names back, and once a TTL ends there is room again.
  assert.equal(join(feed, idOf(6), "n0", alice, A, 30)[0]?.type, "register_ok");
  assert.equal(join(feed, idOf(7), "n3", mallory, C, 2 + cfg.nameTtlMs)[0]?.type, "register_ok");
});

Deno.test("hardening: registering a name again restarts its TTL, also in a full table", () => {
  const { s, feed } = server({ ...cfg, maxNameBindings: 2 });
  joinAndLeave(feed, idOf(1), "n1", alice, A, 0);
  joinAndLeave(feed, idOf(2), "n2", bob, B, 1000);
  // alice comes back for n1 much later and leaves again: n1 is now the most recently released.
  joinAndLeave(feed, idOf(3), "n1", alice, A, 50_000);
  assert.equal(errorCode(join(feed, idOf(4), "n3", mallory, C, 50_001)[0]), ErrorCode.SERVER_FULL);
  // n2's TTL ends first; n1's runs from its second release.
  tick(s, 1000 + cfg.nameTtlMs);
  assert.equal(join(feed, idOf(5), "n2", mallory, C, 1000 + cfg.nameTtlMs)[0]?.type, "register_ok");
  const n1 = join(feed, idOf(6), "n1", mallory, at(C.host, 9), 50_000 + cfg.nameTtlMs - 1)[0];
  assert.equal(errorCode(n1), ErrorCode.NAME_TAKEN);
});

Deno.test("hardening: names bound per source IP are capped", () => {
  const { feed } = server({ ...cfg, maxNamesPerIp: 2 });
  joinAndLeave(feed, idOf(1), "n1", alice, A, 0);
  joinAndLeave(feed, idOf(2), "n2", alice, at(A.host, 9), 1);
  const third = join(feed, idOf(3), "n3", alice, at(A.host, 10), 2);
  assert.equal(errorCode(third[0]), ErrorCode.SERVER_FULL);
  // Names it already holds are no new names; other sources are not affected.
  assert.equal(join(feed, idOf(4), "n1", alice, A, 3)[0]?.type, "register_ok");
  assert.equal(join(feed, idOf(5), "n3", bob, B, 4)[0]?.type, "register_ok");
  // Once the released ones expire, the IP may bind new names again.
  const later = 3 + cfg.nameTtlMs;
  assert.equal(join(feed, idOf(6), "n4", mallory, at(A.host, 11), later)[0]?.type, "register_ok");
});

/** alice and bob in one room; `relay(payload)` is what bob receives when alice relays it. */
function relayPair(c = cfg) {
  const { s, feed } = server(c);
  const a = tokenOf(join(feed, ID1, "alice", alice, A)[0]);
  join(feed, ID2, "bob", bob, B);
  const relay = (payload: Uint8Array, now = 1) =>
    msgs(feed({ type: "relay", from: ID1, token: a, to: ID2, payload }, A, now))
      .filter((m) => m.type === "relayed");
  return { s, relay };
}

const member = { id: ID1, name: "x", public: C, locals: [], key: new Uint8Array(32) };
const payloads: { name: string; bytes: Uint8Array; forwarded: boolean }[] = [
  { name: "SEALED", bytes: encode({ type: "sealed", body: new Uint8Array(40) }), forwarded: true },
  {
    name: "HELLO",
    bytes: encode({
      type: "hello",
      from: ID1,
      to: ID2,
      nonce: ID1,
      init: new Uint8Array(116),
      mac1: new Uint8Array(16),
    }),
    forwarded: true,
  },
  {
    name: "HELLO_ACK",
    bytes: encode({
      type: "hello_ack",
      from: ID1,
      to: ID2,
      resp: new Uint8Array(56),
      sealed: new Uint8Array(28),
    }),
    forwarded: true,
  },
  {
    name: "a PING in the clear",
    bytes: encode({ type: "ping", from: ID1, to: ID2, nonce: ID1 }),
    forwarded: false,
  },
  {
    name: "a server message (PEER_JOINED)",
    bytes: encode({ type: "peer_joined", token: ID2, member }),
    forwarded: false,
  },
  {
    name: "a truncated HELLO",
    bytes: encode({
      type: "hello",
      from: ID1,
      to: ID2,
      nonce: ID1,
      init: new Uint8Array(116),
      mac1: new Uint8Array(16),
    })
      .subarray(0, 60),
    forwarded: false,
  },
  { name: "a STUN request", bytes: bindingRequest(new Uint8Array(12).fill(1)), forwarded: false },
  { name: "random bytes", bytes: new Uint8Array(200).fill(0x5a), forwarded: false },
  { name: "an empty payload", bytes: new Uint8Array(0), forwarded: false },
];
for (const p of payloads) {
  Deno.test(`hardening: RELAY ${p.forwarded ? "forwards" : "drops"} ${p.name}`, () => {
    const { s, relay } = relayPair();
    assert.equal(relay(p.bytes).length, p.forwarded ? 1 : 0);
    if (!p.forwarded) assert.equal(s.stats.drops.get("relay_payload"), 1);
  });
}

Deno.test("hardening: a large SEALED is relayed between UDP members, never to a WebSocket member", () => {
  const big = encode({ type: "sealed", body: new Uint8Array(16 * 1024 + 100) });
  assert.equal(relayPair().relay(big).length, 1, "UDP to UDP: a probed path MTU may allow it");
  // bob over WebSocket: its frames are MAX_DATAGRAM at most, so the relay drops and counts it.
  const { s, feed } = server();
  const a = tokenOf(join(feed, ID1, "alice", alice, A)[0]);
  join(feed, ID2, "bob", bob, { ...B, tcp: true });
  const relay = (payload: Uint8Array) =>
    msgs(feed({ type: "relay", from: ID1, token: a, to: ID2, payload }, A, 1))
      .filter((m) => m.type === "relayed");
  assert.equal(relay(big).length, 0);
  assert.equal(s.stats.drops.get("relay_too_big_for_ws"), 1);
  const fits = encode({ type: "sealed", body: new Uint8Array(MAX_DATAGRAM - 19 - 3) });
  assert.equal(relay(fits).length, 1, "one that fits a WebSocket frame still goes");
  assert.equal(
    relay(encode({ type: "sealed", body: new Uint8Array(MAX_DATAGRAM - 19 - 2) })).length,
    0,
  );
});

Deno.test("hardening: the relay limit charges each packet at least a minimum", () => {
  const { relay } = relayPair({ ...cfg, relayBytesPerSec: 10_000 });
  const tiny = encode({ type: "sealed", body: new Uint8Array(28) }); // 31 bytes
  let forwarded = 0;
  for (let i = 0; i < 2000; i++) forwarded += relay(tiny).length;
  // A 40 000-byte burst: 1290 packets of 31 bytes without a minimum.
  assert.equal(forwarded, Math.floor(40_000 / RELAY_MIN_CHARGE));
});

Deno.test("hardening: a token differing in any one byte is refused", () => {
  const { s, feed } = server();
  const a = tokenOf(join(feed, ID1, "alice", alice, A)[0]);
  for (let i = 0; i < a.length; i += 2) {
    const flipped = (parseInt(a.slice(i, i + 2), 16) ^ 1).toString(16).padStart(2, "0");
    const wrong = a.slice(0, i) + flipped + a.slice(i + 2);
    const out = msgs(feed({ type: "keepalive", id: ID1, token: wrong }, A, 1));
    assert.equal(errorCode(out[0]), ErrorCode.UNKNOWN_PEER, `byte ${i / 2}`);
  }
  assert.equal(s.stats.drops.get("unauthenticated"), a.length / 2);
  assert.equal(
    msgs(feed({ type: "keepalive", id: ID1, token: a }, A, 2))[0]?.type,
    "keepalive_ack",
  );
});

Deno.test("hardening: registration tokens are compared in constant time (source check)", async () => {
  // Timing cannot be measured reliably in a unit test; this keeps `===` on secrets out.
  for (const f of ["state.ts", "admission.ts", "registry.ts"]) {
    const src = await Deno.readTextFile(new URL(`../../lib/server/${f}`, import.meta.url));
    const plain = src.split("\n").filter((l) => /\btoken\s*[!=]==|[!=]==\s*token\b/.test(l));
    assert.deepEqual(plain, [], `${f} compares a token with === or !==`);
  }
});

Deno.test("hardening: only LAN addresses are passed on as a member's locals", () => {
  const { feed } = server();
  const lan = { host: "10.0.0.5", port: 5000 }, ula = { host: "fd00::5", port: 5000 };
  const internet = { host: "8.8.8.8", port: 53 };
  const withLocals = (locals: Addr[]) => ({ edit: (m: { locals: Addr[] }) => m.locals = locals });
  const localsOfAlice = (answers: Message[]) =>
    answers.flatMap((m) => m.type === "register_ok" ? m.members : [])
      .find((e) => e.name === "alice")?.locals;
  const ok = join(feed, ID1, "alice", alice, A, 1, "lobby", withLocals([lan, internet, lan, ula]));
  assert.equal(ok[0]?.type, "register_ok");
  assert.deepEqual(localsOfAlice(join(feed, ID2, "bob", bob, B, 2)), [lan, ula]);
  // Registering again (here from a new address) is filtered the same way.
  const again = withLocals([internet, { host: "192.168.7.7", port: 1 }]);
  join(feed, ID1, "alice", alice, at(A.host, 9), 3, "lobby", { nonce: "2".repeat(16), ...again });
  const carol = join(feed, ID3, "carol", mallory, C, 4);
  assert.deepEqual(localsOfAlice(carol), [{ host: "192.168.7.7", port: 1 }]);
});

Deno.test("hardening: at most 2 global IPv6 locals per member are passed on, never public IPv4", () => {
  const { s, feed } = server();
  const v6 = (n: number) => ({ host: `2001:db8:${n}::10`, port: 5000 });
  const lan = { host: "10.0.0.5", port: 5000 }, internet = { host: "8.8.8.8", port: 53 };
  const withLocals = (locals: Addr[]) => ({ edit: (m: { locals: Addr[] }) => m.locals = locals });
  const localsOfAlice = (answers: Message[]) =>
    answers.flatMap((m) => m.type === "register_ok" ? m.members : [])
      .find((e) => e.name === "alice")?.locals;
  join(feed, ID1, "alice", alice, A, 1, "lobby", withLocals([v6(1), v6(2), v6(3), lan]));
  assert.deepEqual(localsOfAlice(join(feed, ID2, "bob", bob, B, 2)), [v6(1), v6(2), lan]);
  assert.equal(s.stats.localsRefused, 1, "the third global IPv6 address");
  // Public IPv4 stays refused beside them; the mapped form of it too.
  const again = withLocals([internet, { host: "::ffff:8.8.8.8", port: 53 }, v6(4), v6(4)]);
  join(feed, ID1, "alice", alice, at(A.host, 9), 3, "lobby", { nonce: "2".repeat(16), ...again });
  assert.deepEqual(localsOfAlice(join(feed, ID3, "carol", mallory, C, 4)), [v6(4)]);
});
