/** Server hardening: each test here failed before its fix. */
import assert from "node:assert/strict";
import { newIdentity } from "../../lib/identity/identity.ts";
import { DEFAULT_SERVER_CONFIG, limitKey } from "../../lib/server/state.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { ErrorCode } from "../../lib/wire/codec.ts";
import { A, B, C, cfg, errorCode, ID1, ID2, join, msgs, server, tokenOf } from "./_server.ts";

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
