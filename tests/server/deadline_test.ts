/**
 * The server says when it next has work (nextDeadline) and the host sleeps until then: ticking
 * exactly at a deadline does the work, ticking before it does nothing.
 */
import assert from "node:assert/strict";
import { newIdentity } from "../../lib/identity/identity.ts";
import { ErrorCode } from "../../lib/wire/codec.ts";
import {
  A,
  B,
  C,
  cfg,
  ID1,
  ID2,
  ID3,
  join,
  server,
  tick,
  tickActions,
  timedOut,
  tokenOf,
} from "./_server.ts";

const alice = newIdentity();
const bob = newIdentity();
const mallory = newIdentity();
/** Silence after which the server drops a member (3 keepalives + 1 s) at cfg's keepalive. */
const SILENCE = 3 * cfg.keepaliveMs + 1000;

Deno.test("deadline: an empty server has none", () => {
  const { s } = server();
  assert.equal(s.nextDeadline(0), null);
  assert.equal(s.nextDeadline(1e12), null);
});

Deno.test("deadline: a member's silence deadline; ticking before it does nothing, at it drops", () => {
  const { s, feed } = server();
  join(feed, ID1, "alice", alice, A, 0);
  join(feed, ID2, "bob", bob, B, 0);
  const b = tokenOf(join(feed, ID3, "bob2", mallory, C, 500)[0]);
  assert.equal(s.nextDeadline(500), SILENCE, "alice and bob, registered at 0, are due first");
  assert.deepEqual(tick(s, SILENCE - 1), []);
  assert.equal(s.peerCount, 3);
  assert.deepEqual(timedOut(tickActions(s, SILENCE)).sort(), ["alice", "bob"]);
  assert.equal(s.peerCount, 1);
  assert.equal(s.nextDeadline(SILENCE), 500 + SILENCE, "then carol's");
  // A keepalive moves her deadline.
  feed({ type: "keepalive", id: ID3, token: b }, C, SILENCE + 100);
  assert.equal(s.nextDeadline(SILENCE + 100), 2 * SILENCE + 100);
  assert.deepEqual(tick(s, 500 + SILENCE), []);
  assert.equal(s.peerCount, 1);
});

Deno.test("deadline: a keepalive from the earliest member makes the next one the earliest", () => {
  const { s, feed } = server();
  const a = tokenOf(join(feed, ID1, "alice", alice, A, 0)[0]);
  join(feed, ID2, "bob", bob, B, 100);
  assert.equal(s.nextDeadline(200), SILENCE);
  feed({ type: "keepalive", id: ID1, token: a }, A, 300);
  assert.equal(s.nextDeadline(300), 100 + SILENCE, "bob's, not alice's");
});

Deno.test("deadline: a released name's TTL end; the binding goes at exactly that time", () => {
  const { s, feed } = server();
  const a = tokenOf(join(feed, ID1, "alice", alice, A, 0)[0]);
  feed({ type: "leave", id: ID1, token: a }, A, 1000);
  assert.equal(s.peerCount, 0);
  assert.equal(s.nextDeadline(1000), 1000 + cfg.nameTtlMs);
  assert.deepEqual(tick(s, 1000 + cfg.nameTtlMs - 1), []);
  assert.equal(s.nextDeadline(1000 + cfg.nameTtlMs - 1), 1000 + cfg.nameTtlMs, "still pending");
  const taken = join(feed, ID2, "alice", mallory, B, 1000 + cfg.nameTtlMs - 1)[0];
  assert.equal(taken?.type === "error" && taken.code, ErrorCode.NAME_TAKEN);
  tick(s, 1000 + cfg.nameTtlMs);
  assert.equal(s.nextDeadline(1000 + cfg.nameTtlMs), null, "nothing left to do");
  assert.equal(join(feed, ID2, "alice", mallory, B, 1000 + cfg.nameTtlMs)[0]?.type, "register_ok");
});

Deno.test("deadline: the earlier of a member's silence and a name's TTL", () => {
  const { s, feed } = server({ ...cfg, nameTtlMs: 1000 });
  const a = tokenOf(join(feed, ID1, "alice", alice, A, 0)[0]);
  join(feed, ID2, "bob", bob, B, 0);
  feed({ type: "leave", id: ID1, token: a }, A, 10);
  assert.equal(s.nextDeadline(10), 1010, "alice's name before bob's silence");
  tick(s, 1010);
  assert.equal(s.nextDeadline(1010), SILENCE);
});

Deno.test("deadline: a host that only wakes at deadlines drops members exactly on time", () => {
  const { s, feed } = server();
  join(feed, ID1, "alice", alice, A, 0);
  join(feed, ID2, "bob", bob, B, 700);
  const drops: [number, string][] = [];
  let wakeups = 0;
  for (let at = s.nextDeadline(0); at !== null; at = s.nextDeadline(at)) {
    wakeups++;
    for (const name of timedOut(tickActions(s, at))) drops.push([at, name]);
  }
  assert.deepEqual(drops, [[SILENCE, "alice"], [700 + SILENCE, "bob"]]);
  // Two silences and then the two names' TTLs: nothing else woke the host.
  assert.equal(wakeups, 4);
});

Deno.test("deadline: time that runs backwards counts as the latest time seen", () => {
  const { s, feed } = server();
  join(feed, ID1, "alice", alice, A, 5000);
  join(feed, ID2, "bob", bob, B, 100);
  assert.equal(s.nextDeadline(0), 5000 + SILENCE, "bob was seen at 5000 as well");
});
