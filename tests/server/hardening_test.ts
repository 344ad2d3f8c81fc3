/** Server hardening: each test here failed before its fix. */
import assert from "node:assert/strict";
import { newIdentity } from "../../lib/identity/identity.ts";
import { ErrorCode } from "../../lib/wire/codec.ts";
import { A, B, C, ID1, ID2, join, msgs, server, tokenOf } from "./_server.ts";

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
