/**
 * Locked rooms at the server: only a REGISTER that proves the room's secret, for this very
 * registration, gets in; strangers learn no member and nobody hears of them.
 */
import assert from "node:assert/strict";
import { ServerState } from "../../lib/server/state.ts";
import { decode, encode, ErrorCode, type Message, roomProofInput } from "../../lib/wire/codec.ts";
import { newIdentity } from "../../lib/identity/identity.ts";
import { deriveRoomKeys, proveRoom, type RoomKeys } from "../../lib/crypto/room.ts";
import { publicFromSecret } from "../../lib/crypto/ed25519.ts";
import type { Addr } from "../../lib/wire/addr.ts";
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
  msgs,
  reg,
  type Register,
  type Send,
  server,
  tokenOf,
} from "./_server.ts";

const alice = newIdentity(), bob = newIdentity(), carol = newIdentity(), dave = newIdentity();
const family = deriveRoomKeys("the family secret", "family");
const D: Addr = { host: "198.51.100.44", port: 7000 };
const ID4 = "4444444444444444";

/** Keys from a random seed: for guesses, where scrypt would only slow the test down. */
function randomKeys(): RoomKeys {
  const signing = crypto.getRandomValues(new Uint8Array(32));
  return { signing, verifier: publicFromSecret(signing), psk: new Uint8Array(32) };
}

/** The whole exchange: every datagram the server sends for the signed REGISTER, to anyone. */
function enter(
  feed: Feed,
  id: string,
  name: string,
  who: ReturnType<typeof newIdentity>,
  from: Addr,
  keys: RoomKeys | null,
  room = "family",
  now = 0,
): { sends: Send[]; to: (a: Addr) => Message[]; signed: Register } {
  const c = msgs(feed(reg(id, name, who, undefined, room), from, now))[0];
  assert.equal(c?.type, "cookie");
  const cookie = (c as { cookie: Uint8Array }).cookie;
  const signed = reg(id, name, who, cookie, room, undefined, (m) => {
    if (keys) m.proof = proveRoom(keys, roomProofInput(m));
  });
  const sends = feed(signed, from, now);
  const to = (a: Addr) => msgs(sends.filter((x) => x.to.host === a.host && x.to.port === a.port));
  return { sends, to, signed };
}

const has = (b: Uint8Array, s: string) => new TextDecoder("latin1").decode(b).includes(s);

Deno.test("locked room: members with the secret get in and see each other", () => {
  const { feed } = server();
  const a = enter(feed, ID1, "alice", alice, A, family);
  assert.equal(a.to(A)[0]?.type, "register_ok");
  const b = enter(feed, ID2, "bob", bob, B, family);
  const ok = b.to(B)[0];
  assert.ok(ok?.type === "register_ok" && ok.members.map((m) => m.name).join() === "alice");
  assert.equal(b.to(A)[0]?.type, "peer_joined", "alice hears of bob");
});

const strangers: { name: string; keys: () => RoomKeys | null; text: RegExp }[] = [
  { name: "no secret", keys: () => null, text: /^room "family" is locked: it needs its secret$/ },
  { name: "a wrong secret", keys: randomKeys, text: /^wrong room secret$/ },
];
for (const c of strangers) {
  Deno.test(`locked room: ${c.name} is refused with ERROR 11; no names leak, nobody is told`, () => {
    const { s, feed } = server();
    enter(feed, ID1, "alice", alice, A, family);
    enter(feed, ID2, "bob", bob, B, family);
    const e = enter(feed, ID3, "carol", carol, C, c.keys());
    // One datagram, to carol only: the refusal. Alice and bob hear nothing.
    assert.equal(e.sends.length, 1);
    const refusal = e.to(C)[0];
    assert.equal(errorCode(refusal), ErrorCode.WRONG_SECRET);
    assert.match((refusal as { text: string }).text, c.text);
    // On the wire: neither member's name, id or key is in it.
    const bytes = e.sends[0]!.bytes;
    for (const secretish of ["alice", "bob", ID1, ID2]) assert.equal(has(bytes, secretish), false);
    assert.equal(s.peerCount, 2);
    assert.equal(s.stats.drops.get("wrong_room_secret"), 1);
  });
}

Deno.test("locked room: a stranger learns nothing about names either (checked before them)", () => {
  const { feed } = server();
  enter(feed, ID1, "alice", alice, A, family);
  // "alice" is taken, but a stranger is told only that the secret is wrong.
  const e = enter(feed, ID2, "alice", carol, C, randomKeys());
  assert.equal(errorCode(e.to(C)[0]), ErrorCode.WRONG_SECRET);
});

Deno.test("locked room: a captured REGISTER replayed from another address gets only a cookie", () => {
  const { s, feed } = server();
  enter(feed, ID1, "alice", alice, A, family);
  const b = enter(feed, ID2, "bob", bob, B, family);
  const captured = encode(b.signed);
  // Unchanged from elsewhere: the cookie is bob's address's, so the server just asks again.
  const out = msgs(feed(captured, D));
  assert.deepEqual(out.map((m) => m.type), ["cookie"]);
  assert.equal(s.peerCount, 2);
  // Bob's proof under mallory's own key and a fresh cookie for her address: the proof signs
  // bob's cookie, id, nonce and key, so it fails for hers.
  const c = msgs(feed(reg(ID4, "bob2", dave, undefined, "family"), D))[0] as { cookie: Uint8Array };
  const reuse = reg(ID4, "bob2", dave, c.cookie, "family", undefined, (m) => {
    m.proof = b.signed.proof;
  });
  assert.equal(errorCode(msgs(feed(reuse, D))[0]), ErrorCode.WRONG_SECRET);
  // Bob's whole REGISTER again with only the id changed cannot be re-signed without his key.
  const tampered = decode(captured);
  assert.ok(tampered.ok && tampered.value.type === "register");
  const moved = { ...tampered.value, id: ID4 };
  assert.equal(errorCode(msgs(feed(moved, B))[0]), ErrorCode.BAD_SIGNATURE);
  assert.equal(s.peerCount, 2);
});

Deno.test("locked room: a REGISTER stripped of its proof fails its signature", () => {
  const { s, feed } = server();
  enter(feed, ID1, "alice", alice, A, family);
  const c = msgs(feed(reg(ID2, "bob", bob, undefined, "family"), B))[0] as { cookie: Uint8Array };
  const signed = encode(reg(ID2, "bob", bob, c.cookie, "family", undefined, (m) => {
    m.proof = proveRoom(family, roomProofInput(m));
  }));
  // Cut off the proof (length byte and 96 bytes): it reads as an open-room REGISTER...
  const cut = signed.subarray(0, signed.length - 97);
  const d = decode(cut);
  assert.ok(d.ok && d.value.type === "register" && d.value.proof === undefined);
  // ...whose signature, made over the proof too, no longer verifies.
  assert.equal(errorCode(msgs(feed(cut, B))[0]), ErrorCode.BAD_SIGNATURE);
  assert.equal(s.peerCount, 1);
  assert.equal(msgs(feed(signed, B))[0]?.type, "register_ok", "the whole one still works");
});

Deno.test("rooms cannot switch between open and locked while they have members", () => {
  const { feed } = server();
  enter(feed, ID1, "alice", alice, A, null, "lobby");
  const lock = enter(feed, ID2, "bob", bob, B, family, "lobby").to(B)[0];
  assert.equal(errorCode(lock), ErrorCode.WRONG_SECRET);
  assert.match(
    (lock as { text: string }).text,
    /is open: it cannot be locked while it has members/,
  );
  enter(feed, ID3, "carol", carol, C, family);
  const open = enter(feed, ID4, "dave", dave, D, null).to(D)[0];
  assert.equal(errorCode(open), ErrorCode.WRONG_SECRET);
});

Deno.test("a locked room stays locked for the name TTL after its last member leaves", () => {
  const { s, feed } = server();
  const a = enter(feed, ID1, "alice", alice, A, family);
  feed({ type: "leave", id: ID1, token: tokenOf(a.to(A)[0]) }, A, 1000);
  assert.equal(s.peerCount, 0);
  // Within the TTL: neither an open member nor another secret can take the room over.
  const t = 1000 + cfg.nameTtlMs - 1;
  assert.equal(
    errorCode(enter(feed, ID2, "bob", bob, B, null, "family", t).to(B)[0]),
    ErrorCode.WRONG_SECRET,
  );
  assert.equal(
    errorCode(enter(feed, ID3, "carol", carol, C, randomKeys(), "family", t).to(C)[0]),
    11,
  );
  // The right secret still works, and holds the lock again.
  const back = enter(feed, ID2, "bob", bob, B, family, "family", t).to(B)[0];
  assert.equal(back?.type, "register_ok");
  feed({ type: "leave", id: ID2, token: tokenOf(back) }, B, t);
  // After the TTL the room is forgotten: anyone may open it, or lock it with a new secret.
  const later = t + cfg.nameTtlMs;
  assert.equal(s.nextDeadline(t) !== null, true, "the lock's end is a deadline");
  const out: never[] = [];
  s.tick(later, out);
  assert.equal(
    enter(feed, ID3, "carol", carol, C, null, "family", later).to(C)[0]?.type,
    "register_ok",
  );
});

Deno.test("the same room name on another server is not locked there", () => {
  const one = server(), two = server();
  enter(one.feed, ID1, "alice", alice, A, family);
  assert.equal(
    errorCode(enter(one.feed, ID2, "bob", bob, B, null).to(B)[0]),
    ErrorCode.WRONG_SECRET,
  );
  // Nothing about "family" on the first server reaches the second: it is an open room there.
  const open = enter(two.feed, ID2, "bob", bob, B, null).to(B)[0];
  assert.equal(open?.type, "register_ok");
  assert.equal(enter(two.feed, ID3, "carol", carol, C, null).to(C)[0]?.type, "register_ok");
});

Deno.test("guessing a room's secret is bounded by the per-IP registration rate", () => {
  const s = new ServerState({ ...cfg, registrationsPerMinute: 30 });
  const feed: Feed = (m, from, now = 0) => {
    const out: Parameters<ServerState["handle"]>[3] = [];
    s.handle(m instanceof Uint8Array ? m : encode(m), from, now, out);
    return out.filter((a) => a.type === "send") as Send[];
  };
  enter(feed, ID1, "alice", alice, A, family);
  const guesses = (from: Addr, now: number, n: number) => {
    let answered = 0;
    for (let i = 0; i < n; i++) {
      const id = (0x5000_0000_0000_0000n + BigInt(i)).toString(16);
      const out = enter(feed, id, "guess", dave, from, randomKeys(), "family", now).to(from);
      if (out.length > 0) {
        assert.equal(errorCode(out[0]), ErrorCode.WRONG_SECRET);
        answered++;
      }
    }
    return answered;
  };
  // 100 guesses in a minute from one address: 30 are checked, the rest dropped unanswered.
  assert.equal(guesses(D, 1000, 100), 30);
  assert.equal(guesses({ ...D, port: 7001 }, 2000, 10), 0, "another port is the same IP");
  assert.equal(s.stats.drops.get("wrong_room_secret"), 30);
  assert.ok((s.stats.drops.get("registration_rate") ?? 0) >= 80);
  // A minute later, 30 more; another address has its own allowance meanwhile.
  assert.equal(guesses(C, 2000, 5), 5);
  assert.equal(guesses(D, 62_000, 100), 30);
  assert.equal(s.peerCount, 1);
});
