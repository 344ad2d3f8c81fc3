import assert from "node:assert/strict";
import fc from "fast-check";
import { generateKeyPair, type KeyPair } from "../../lib/crypto/keys.ts";
import {
  DEFAULT_SECURE_CONFIG,
  INIT_LEN,
  RESP_LEN,
  type SecureConfig,
  SecureLayer,
  TRANSPORT_OVERHEAD,
} from "../../lib/peer/secure.ts";

const A = "a1a1a1a1a1a1a1a1";
const B = "b2b2b2b2b2b2b2b2";
const C = "c3c3c3c3c3c3c3c3";
const WALL = 1_700_000_000_000;
const HEADER = Uint8Array.of(0x01, 0x30, 0x00);
const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

interface Party {
  id: string;
  keys: KeyPair;
  layer: SecureLayer;
}

function party(id: string, cfg: Partial<SecureConfig> = {}, keys = generateKeyPair()): Party {
  return { id, keys, layer: new SecureLayer({ staticKey: keys, sessionId: id }, cfg) };
}

/** Alice and Bob, each registered with the other. */
function pair(cfg: Partial<SecureConfig> = {}): [Party, Party] {
  const alice = party(A, cfg);
  const bob = party(B, cfg);
  alice.layer.addPeer(B, bob.keys.publicKey);
  bob.layer.addPeer(A, alice.keys.publicKey);
  return [alice, bob];
}

/** `from` initiates, `to` answers, `from` completes; returns the init and reply bodies. */
function handshake(from: Party, to: Party, now = 0, wall = WALL) {
  const init = from.layer.handshakeInit(to.id, now, wall);
  const r = to.layer.onHandshakeInit(init, now);
  assert.ok(r.ok, `init accepted: ${JSON.stringify(r)}`);
  assert.equal(r.peerId, from.id);
  const c = from.layer.onHandshakeResp(r.reply, now);
  assert.deepEqual(c, { ok: true, peerId: to.id, fresh: true });
  return { init, reply: r.reply };
}

/** Seal from `from` to `to` and open it there; returns the plaintext as a string. */
function roundTrip(from: Party, to: Party, msg: string, now = 0): string {
  const body = from.layer.seal(to.id, HEADER, text(msg), now);
  assert.ok(body, "sealed");
  const r = to.layer.open(HEADER, body, now);
  assert.ok(r.ok, `opened: ${JSON.stringify(r)}`);
  assert.equal(r.peerId, from.id);
  return str(r.plaintext);
}

function reason(r: { ok: boolean; reason?: string }): string | undefined {
  assert.equal(r.ok, false);
  return r.reason;
}

Deno.test("secure: IK handshake, then transport both ways", () => {
  const [alice, bob] = pair();
  assert.equal(alice.layer.seal(B, HEADER, text("early"), 0), null, "no session yet");
  const { init, reply } = handshake(alice, bob);
  assert.equal(init.length, INIT_LEN);
  assert.equal(INIT_LEN, 116);
  assert.equal(reply.length, RESP_LEN);
  assert.equal(RESP_LEN, 56);
  assert.ok(alice.layer.hasSession(B));
  assert.ok(bob.layer.hasSession(A));
  assert.equal(roundTrip(alice, bob, "hi bob"), "hi bob");
  assert.equal(roundTrip(bob, alice, "hi alice"), "hi alice");
  for (let i = 0; i < 10; i++) assert.equal(roundTrip(alice, bob, `m${i}`), `m${i}`);
  const body = alice.layer.seal(B, HEADER, text("xyz"), 0)!;
  assert.equal(body.length, 3 + TRANSPORT_OVERHEAD);
});

Deno.test("secure: the responder may send first, right after its reply", () => {
  const [alice, bob] = pair();
  const init = alice.layer.handshakeInit(B, 0, WALL);
  const r = bob.layer.onHandshakeInit(init, 0);
  assert.ok(r.ok);
  const early = bob.layer.seal(A, HEADER, text("before you finished"), 1)!;
  assert.ok(early, "responder session usable at once");
  assert.ok(alice.layer.onHandshakeResp(r.reply, 2).ok);
  const o = alice.layer.open(HEADER, early, 2);
  assert.ok(o.ok);
  assert.equal(str(o.plaintext), "before you finished");
});

Deno.test("secure: the header is authenticated", () => {
  const [alice, bob] = pair();
  handshake(alice, bob);
  const body = alice.layer.seal(B, HEADER, text("x"), 0)!;
  assert.equal(reason(bob.layer.open(Uint8Array.of(0x01, 0x31, 0x00), body, 0)), "decrypt_failed");
  assert.ok(bob.layer.open(HEADER, body, 0).ok, "a failed attempt does not burn the counter");
});

Deno.test("secure: the same init is answered with identical bytes and no new session", () => {
  const [alice, bob] = pair();
  const init1 = alice.layer.handshakeInit(B, 0, WALL);
  const init2 = alice.layer.handshakeInit(B, 50, WALL + 50);
  assert.deepEqual(init2, init1, "resent init is byte-identical");
  const r1 = bob.layer.onHandshakeInit(init1, 0);
  const r2 = bob.layer.onHandshakeInit(init2, 10);
  assert.ok(r1.ok && r2.ok);
  assert.equal(r1.fresh, true);
  assert.equal(r2.fresh, false);
  assert.deepEqual(r2.reply, r1.reply);
  assert.equal(bob.layer.sessionCount(A), 1);
  // Both replies reach Alice (say, over two paths): one session, the copy is not fresh.
  assert.deepEqual(alice.layer.onHandshakeResp(r1.reply, 20), { ok: true, peerId: B, fresh: true });
  assert.deepEqual(alice.layer.onHandshakeResp(r2.reply, 21), {
    ok: true,
    peerId: B,
    fresh: false,
  });
  assert.equal(alice.layer.sessionCount(B), 1);
  assert.equal(roundTrip(alice, bob, "one session"), "one session");
  // After completion a new init is made.
  assert.notDeepEqual(alice.layer.handshakeInit(B, 30, WALL + 30), init1);
});

Deno.test("secure: a replayed init is rejected once its cache entry is gone", async (t) => {
  await t.step("session evicted by newer handshakes", () => {
    const [alice, bob] = pair();
    const { init: old } = handshake(alice, bob, 0, WALL);
    for (let i = 1; i <= 3; i++) handshake(alice, bob, i, WALL + i);
    assert.equal(bob.layer.sessionCount(A), 3);
    assert.equal(reason(bob.layer.onHandshakeInit(old, 10)), "stale_init");
    assert.equal(bob.layer.sessionCount(A), 3, "no session from a replay");
  });
  await t.step("LRU cache evicted (257 handshakes)", () => {
    const [alice, bob] = pair({ maxSessionsPerPeer: 1000 });
    const { init: old } = handshake(alice, bob, 0, WALL);
    for (let i = 1; i <= 256; i++) handshake(alice, bob, i, WALL + i);
    assert.equal(reason(bob.layer.onHandshakeInit(old, 300)), "stale_init");
    assert.equal(bob.layer.drops.get("stale_init"), 1);
  });
  await t.step("session expired", () => {
    const [alice, bob] = pair({ sessionTtlMs: 1000 });
    const { init } = handshake(alice, bob, 0);
    bob.layer.tick(1000);
    assert.equal(bob.layer.hasSession(A), false);
    assert.equal(reason(bob.layer.onHandshakeInit(init, 1001)), "stale_init");
  });
  await t.step("older timestamp from a restarted initiator", () => {
    const [alice, bob] = pair();
    handshake(alice, bob, 0, WALL);
    const again = party(A, {}, alice.keys);
    again.layer.addPeer(B, bob.keys.publicKey);
    const init = again.layer.handshakeInit(B, 0, WALL - 1);
    assert.equal(reason(bob.layer.onHandshakeInit(init, 1)), "stale_init");
    again.layer.restartHandshake(B);
    const later = again.layer.handshakeInit(B, 0, WALL + 1);
    assert.ok(bob.layer.onHandshakeInit(later, 2).ok, "a newer timestamp is accepted");
  });
});

Deno.test("secure: initiator timestamps keep increasing when the wall clock steps back", () => {
  const [alice, bob] = pair();
  handshake(alice, bob, 0, WALL);
  handshake(alice, bob, 1, WALL - 60_000);
  handshake(alice, bob, 2, WALL - 60_000);
  assert.equal(bob.layer.sessionCount(A), 3);
});

Deno.test("secure: simultaneous open gives two sessions each and both directions work", () => {
  const [alice, bob] = pair();
  const ia = alice.layer.handshakeInit(B, 0, WALL);
  const ib = bob.layer.handshakeInit(A, 0, WALL);
  const rb = bob.layer.onHandshakeInit(ia, 1);
  const ra = alice.layer.onHandshakeInit(ib, 1);
  assert.ok(ra.ok && rb.ok && ra.fresh && rb.fresh);
  assert.deepEqual(alice.layer.onHandshakeResp(rb.reply, 2), { ok: true, peerId: B, fresh: true });
  assert.deepEqual(bob.layer.onHandshakeResp(ra.reply, 2), { ok: true, peerId: A, fresh: true });
  assert.equal(alice.layer.sessionCount(B), 2);
  assert.equal(bob.layer.sessionCount(A), 2);
  for (let i = 0; i < 3; i++) {
    assert.equal(roundTrip(alice, bob, `a${i}`), `a${i}`);
    assert.equal(roundTrip(bob, alice, `b${i}`), `b${i}`);
  }
});

Deno.test("secure: initiator identity is checked against the registered key", async (t) => {
  await t.step("a third party claiming bob's session id: key_mismatch", () => {
    const [alice] = pair();
    const mallory = party(B);
    mallory.layer.addPeer(A, alice.keys.publicKey);
    const r = alice.layer.onHandshakeInit(mallory.layer.handshakeInit(A, 0, WALL), 0);
    assert.equal(reason(r), "key_mismatch");
    assert.equal(alice.layer.hasSession(B), false);
    assert.equal(alice.layer.drops.get("key_mismatch"), 1);
  });
  await t.step("an unregistered session id: unknown_static", () => {
    const [alice] = pair();
    const carol = party(C);
    carol.layer.addPeer(A, alice.keys.publicKey);
    assert.equal(
      reason(alice.layer.onHandshakeInit(carol.layer.handshakeInit(A, 0, WALL), 0)),
      "unknown_static",
    );
  });
  await t.step("an init for another responder key: decrypt_failed", () => {
    const [alice, bob] = pair();
    const other = generateKeyPair();
    alice.layer.addPeer(B, other.publicKey);
    assert.equal(
      reason(bob.layer.onHandshakeInit(alice.layer.handshakeInit(B, 0, WALL), 0)),
      "decrypt_failed",
    );
  });
  await t.step("a reply from someone else: decrypt_failed, handshake still pending", () => {
    const [alice, bob] = pair();
    const mallory = party(C, {}, generateKeyPair());
    mallory.layer.addPeer(A, alice.keys.publicKey);
    alice.layer.addPeer(C, mallory.keys.publicKey);
    const init = alice.layer.handshakeInit(B, 0, WALL);
    // Mallory answers a different init of Alice's and rewrites the receiver index.
    const rm = mallory.layer.onHandshakeInit(alice.layer.handshakeInit(C, 0, WALL), 0);
    assert.ok(rm.ok);
    const forged = rm.reply.slice();
    forged.set(init.subarray(0, 4), 4);
    assert.equal(reason(alice.layer.onHandshakeResp(forged, 1)), "decrypt_failed");
    const rb = bob.layer.onHandshakeInit(init, 1);
    assert.ok(rb.ok);
    assert.ok(alice.layer.onHandshakeResp(rb.reply, 2).ok, "the genuine reply still completes");
  });
});

Deno.test("secure: transport tampering and truncation are dropped", () => {
  const [alice, bob] = pair();
  handshake(alice, bob);
  const body = alice.layer.seal(B, HEADER, text("integrity"), 0)!;
  for (let i = 0; i < body.length; i++) {
    const bad = body.slice();
    bad[i]! ^= 0x01;
    const r = bob.layer.open(HEADER, bad, 0);
    assert.equal(r.ok, false, `flipped byte ${i}`);
  }
  for (let n = 0; n < body.length; n++) {
    assert.equal(bob.layer.open(HEADER, body.subarray(0, n), 0).ok, false, `truncated to ${n}`);
  }
  assert.equal(reason(bob.layer.open(HEADER, body.subarray(0, 27), 0)), "malformed");
  assert.ok(bob.layer.open(HEADER, body, 0).ok, "the genuine packet still opens");
});

Deno.test("secure: reordering within the window is accepted, replays and old counters are not", () => {
  const [alice, bob] = pair();
  handshake(alice, bob);
  const bodies = ["m0", "m1", "m2", "m3", "m4"].map((m) =>
    alice.layer.seal(B, HEADER, text(m), 0)!
  );
  const got = [4, 2, 0, 1, 3].map((i) => {
    const r = bob.layer.open(HEADER, bodies[i]!, 0);
    assert.ok(r.ok);
    return str(r.plaintext);
  });
  assert.deepEqual(got, ["m4", "m2", "m0", "m1", "m3"]);
  for (const b of bodies) assert.equal(reason(bob.layer.open(HEADER, b, 0)), "replay");
  assert.equal(bob.layer.drops.get("replay"), 5);

  const first = alice.layer.seal(B, HEADER, text("late"), 0)!;
  let last = first;
  for (let i = 0; i < 2100; i++) last = alice.layer.seal(B, HEADER, text("x"), 0)!;
  assert.ok(bob.layer.open(HEADER, last, 0).ok);
  assert.equal(reason(bob.layer.open(HEADER, first, 0)), "too_old");
});

Deno.test("secure: an unknown index is dropped and counted", () => {
  const [alice, bob] = pair();
  handshake(alice, bob);
  const body = alice.layer.seal(B, HEADER, text("x"), 0)!;
  const carol = party(C);
  assert.equal(reason(carol.layer.open(HEADER, body, 0)), "unknown_index");
  const bad = body.slice();
  bad[0]! ^= 0x80;
  assert.equal(reason(bob.layer.open(HEADER, bad, 0)), "unknown_index");
  assert.equal(bob.layer.drops.get("unknown_index"), 1);
  const resp = new Uint8Array(RESP_LEN);
  assert.equal(reason(alice.layer.onHandshakeResp(resp, 0)), "unknown_index");
});

Deno.test("secure: random bytes never make a decoder throw", () => {
  const [alice, bob] = pair();
  const { init, reply } = handshake(alice, bob);
  const transport = alice.layer.seal(B, HEADER, text("payload"), 0)!;
  alice.layer.handshakeInit(B, 0, WALL + 1); // a pending handshake for responses to hit
  const anyBytes = fc.uint8Array({ maxLength: 200 });
  const mutate = (base: Uint8Array) =>
    fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 1, max: 255 })).map(
      ([i, x]) => {
        const b = base.slice();
        b[i]! ^= x;
        return b;
      },
    );
  const inputs = fc.oneof(
    anyBytes,
    fc.uint8Array({ minLength: INIT_LEN, maxLength: INIT_LEN }),
    fc.uint8Array({ minLength: RESP_LEN, maxLength: RESP_LEN }),
    mutate(init),
    mutate(reply),
    mutate(transport),
  );
  fc.assert(
    fc.property(inputs, (bytes) => {
      for (const layer of [alice.layer, bob.layer]) {
        const results = [
          layer.onHandshakeInit(bytes, 0),
          layer.onHandshakeResp(bytes, 0),
          layer.open(HEADER, bytes, 0),
        ];
        for (const r of results) {
          if (!r.ok) assert.equal(typeof r.reason, "string");
        }
        // Only an exact copy of a real message can be accepted, never random bytes.
        assert.equal(layer.open(HEADER, bytes, 0).ok, false);
      }
    }),
    { numRuns: 300 },
  );
  assert.equal(alice.layer.drops.get("internal"), undefined);
  assert.equal(bob.layer.drops.get("internal"), undefined);
});

Deno.test("secure: rekey is reported after the configured age, once", () => {
  const [alice, bob] = pair({ rekeyAfterMs: 1000 });
  handshake(alice, bob, 0, WALL);
  assert.deepEqual(alice.layer.tick(999).rekey, []);
  assert.deepEqual(alice.layer.tick(1000).rekey, [B]);
  assert.deepEqual(alice.layer.tick(1001).rekey, [], "reported once");
  assert.deepEqual(bob.layer.tick(1000).rekey, [A]);

  // Packets of the old session are in flight while the new handshake runs.
  const inFlight = bob.layer.seal(A, HEADER, text("old session"), 1000)!;
  alice.layer.restartHandshake(B);
  handshake(alice, bob, 1010, WALL + 1010);
  const o = alice.layer.open(HEADER, inFlight, 1020);
  assert.ok(o.ok);
  assert.equal(str(o.plaintext), "old session");
  assert.equal(roundTrip(bob, alice, "new session", 1020), "new session");
  assert.equal(roundTrip(alice, bob, "new session too", 1020), "new session too");
  assert.deepEqual(alice.layer.tick(1500).rekey, [], "the new session is young");
  assert.deepEqual(bob.layer.tick(1500).rekey, []);
  assert.deepEqual(alice.layer.tick(2010).rekey, [B]);
});

Deno.test("secure: rekey is reported after the configured number of messages", () => {
  const [alice, bob] = pair({ rekeyAfterMessages: 3 });
  handshake(alice, bob);
  for (let i = 0; i < 2; i++) roundTrip(alice, bob, "x");
  assert.deepEqual(alice.layer.tick(1).rekey, []);
  roundTrip(alice, bob, "x");
  assert.deepEqual(alice.layer.tick(2).rekey, [B]);
  assert.deepEqual(bob.layer.tick(2).rekey, [], "bob sent nothing");
});

Deno.test("secure: idle sessions and unanswered handshakes expire", () => {
  const [alice, bob] = pair({ sessionTtlMs: 1000 });
  handshake(alice, bob);
  roundTrip(alice, bob, "keep", 900);
  alice.layer.tick(1500);
  assert.ok(alice.layer.hasSession(B), "traffic at 900 kept it alive");
  alice.layer.tick(1900);
  assert.equal(alice.layer.hasSession(B), false);
  const init = alice.layer.handshakeInit(B, 2000, WALL + 2000);
  alice.layer.tick(3000);
  assert.notDeepEqual(alice.layer.handshakeInit(B, 3000, WALL + 3000), init, "a fresh init");
});

Deno.test("secure: sessions per peer are bounded; the oldest goes", () => {
  const [alice, bob] = pair({ maxSessionsPerPeer: 2 });
  handshake(alice, bob, 0, WALL);
  const oldest = alice.layer.seal(B, HEADER, text("gone"), 0)!;
  handshake(alice, bob, 1, WALL + 1);
  const middle = alice.layer.seal(B, HEADER, text("kept"), 1)!;
  handshake(alice, bob, 2, WALL + 2);
  assert.equal(alice.layer.sessionCount(B), 2);
  assert.equal(bob.layer.sessionCount(A), 2);
  assert.equal(reason(bob.layer.open(HEADER, oldest, 3)), "unknown_index");
  assert.ok(bob.layer.open(HEADER, middle, 3).ok);
});

Deno.test("secure: removePeer drops its sessions and handshakes", () => {
  const [alice, bob] = pair();
  const { init } = handshake(alice, bob);
  const body = alice.layer.seal(B, HEADER, text("x"), 0)!;
  const pendingInit = bob.layer.handshakeInit(A, 0, WALL);
  bob.layer.removePeer(A);
  assert.equal(bob.layer.hasSession(A), false);
  assert.equal(bob.layer.seal(A, HEADER, text("x"), 0), null);
  assert.equal(reason(bob.layer.open(HEADER, body, 0)), "unknown_index");
  assert.equal(reason(bob.layer.onHandshakeInit(init, 0)), "unknown_static", "no cached reply");
  const r = alice.layer.onHandshakeInit(pendingInit, 0);
  assert.ok(r.ok);
  assert.equal(reason(bob.layer.onHandshakeResp(r.reply, 0)), "unknown_index");
  assert.throws(() => bob.layer.handshakeInit(A, 0, WALL), /Cannot start handshake/);
});

Deno.test("secure: addPeer with a new key for the same id drops the old sessions", () => {
  const [alice, bob] = pair();
  handshake(alice, bob);
  alice.layer.addPeer(B, bob.keys.publicKey);
  assert.ok(alice.layer.hasSession(B), "same key: kept");
  alice.layer.addPeer(B, generateKeyPair().publicKey);
  assert.equal(alice.layer.hasSession(B), false);
});

Deno.test("secure: caller mistakes throw 'Cannot ...'", () => {
  const keys = generateKeyPair();
  const cases: [string, () => unknown, RegExp][] = [
    ["bad session id", () => new SecureLayer({ staticKey: keys, sessionId: "xyz" }), /id/],
    [
      "bad config",
      () => new SecureLayer({ staticKey: keys, sessionId: A }, { sessionTtlMs: 0 }),
      /sessionTtlMs/,
    ],
    [
      "reject-after not past rekey-after",
      () =>
        new SecureLayer({ staticKey: keys, sessionId: A }, {
          rekeyAfterMs: 1000,
          rejectAfterMs: 1000,
        }),
      /rejectAfterMs/,
    ],
    [
      "reject-after messages not past rekey-after messages",
      () =>
        new SecureLayer({ staticKey: keys, sessionId: A }, {
          rekeyAfterMessages: 10,
          rejectAfterMessages: 5,
        }),
      /rejectAfterMessages/,
    ],
    ["bad peer id", () => party(A).layer.addPeer("B2B2B2B2B2B2B2B2", keys.publicKey), /id/],
    ["own id", () => party(A).layer.addPeer(A, keys.publicKey), /own/],
    ["bad key", () => party(A).layer.addPeer(B, new Uint8Array(32)), /static key/],
    ["unknown peer", () => party(A).layer.handshakeInit(B, 0, WALL), /not registered/],
  ];
  for (const [name, f, re] of cases) {
    assert.throws(f, (e: Error) => e.message.startsWith("Cannot ") && re.test(e.message), name);
  }
});

Deno.test("secure: a rekey handshake that goes unanswered is asked for again", () => {
  const [alice, bob] = pair({ rekeyAfterMs: 1000, rekeyRetryMs: 500 });
  handshake(alice, bob, 0, WALL);
  assert.deepEqual(alice.layer.tick(1000).rekey, [B]);
  alice.layer.restartHandshake(B);
  alice.layer.handshakeInit(B, 1000, WALL + 1000); // lost on the way
  assert.deepEqual(alice.layer.tick(1499).rekey, []);
  assert.deepEqual(alice.layer.tick(1500).rekey, [B], "retry");
  alice.layer.restartHandshake(B);
  handshake(alice, bob, 1500, WALL + 1500);
  assert.deepEqual(alice.layer.tick(2000).rekey, [], "the new session is young");
  assert.equal(roundTrip(alice, bob, "after the retry", 2000), "after the retry");
});

Deno.test("secure: a responder sends on its new session only once the initiator used it", () => {
  const [alice, bob] = pair();
  handshake(alice, bob, 0, WALL);
  assert.equal(roundTrip(alice, bob, "first", 1), "first");
  // A rekey init reaches bob, but his answer is lost: alice never gets the new keys.
  alice.layer.restartHandshake(B);
  const init = alice.layer.handshakeInit(B, 10, WALL + 10);
  assert.ok(bob.layer.onHandshakeInit(init, 10).ok);
  assert.equal(bob.layer.sessionCount(A), 2);
  // Bob keeps sending on the session alice has ...
  assert.equal(roundTrip(bob, alice, "still readable", 20), "still readable");
  // ... and a flood of such inits never pushes that session out.
  for (let i = 1; i <= 5; i++) {
    alice.layer.restartHandshake(B);
    assert.ok(
      bob.layer.onHandshakeInit(alice.layer.handshakeInit(B, 30 + i, WALL + 30 + i), 30).ok,
    );
  }
  assert.equal(roundTrip(bob, alice, "after five lost answers", 40), "after five lost answers");
  // Once alice completes a handshake and sends on it, bob switches.
  alice.layer.restartHandshake(B);
  handshake(alice, bob, 50, WALL + 50);
  assert.equal(roundTrip(alice, bob, "on the new session", 60), "on the new session");
  const body = bob.layer.seal(A, HEADER, text("switched"), 70)!;
  const o = alice.layer.open(HEADER, body, 70);
  assert.ok(o.ok && str(o.plaintext) === "switched");
});

// ---- reject-after: a rekey that never completes does not keep a session alive ----

Deno.test("secure: the default session limits are WireGuard's reject-after, past the rekey", () => {
  assert.equal(DEFAULT_SECURE_CONFIG.rejectAfterMs, 180_000);
  assert.ok(DEFAULT_SECURE_CONFIG.rejectAfterMs > DEFAULT_SECURE_CONFIG.rekeyAfterMs);
  assert.equal(DEFAULT_SECURE_CONFIG.rejectAfterMessages, 2 ** 21);
  assert.ok(DEFAULT_SECURE_CONFIG.rejectAfterMessages > DEFAULT_SECURE_CONFIG.rekeyAfterMessages);
});

Deno.test("secure: a session whose rekey never completes stops sealing and opening", () => {
  const cfg = { rekeyAfterMs: 1000, rejectAfterMs: 1500, rekeyRetryMs: 200 };
  for (const defaults of [false, true]) {
    const [alice, bob] = pair(defaults ? {} : cfg);
    const { rekeyAfterMs, rejectAfterMs } = defaults ? DEFAULT_SECURE_CONFIG : cfg;
    handshake(alice, bob, 0, WALL);
    assert.deepEqual(alice.layer.tick(rekeyAfterMs).rekey, [B]);
    // Every rekey handshake is lost (or suppressed); the old session keeps being used ...
    for (let t = rekeyAfterMs; t < rejectAfterMs; t += 100) {
      alice.layer.restartHandshake(B);
      alice.layer.handshakeInit(B, t, WALL + t);
      assert.equal(roundTrip(alice, bob, "still", t), "still");
      assert.equal(roundTrip(bob, alice, "still", t), "still");
    }
    const late = bob.layer.seal(A, HEADER, text("sealed just in time"), rejectAfterMs - 1)!;
    assert.ok(alice.layer.hasSession(B, rejectAfterMs - 1));
    // ... until it is too old, whatever became of the rekey.
    const t = rejectAfterMs;
    assert.equal(alice.layer.seal(B, HEADER, text("too late"), t), null);
    assert.equal(alice.layer.hasSession(B, t), false);
    assert.equal(alice.layer.hasSession(B), false, "by the latest time it was given");
    assert.equal(reason(alice.layer.open(HEADER, late, t)), "expired");
    assert.equal(alice.layer.drops.get("expired"), 1);
    assert.equal(bob.layer.seal(A, HEADER, text("too late"), t), null);
    assert.equal(bob.layer.hasSession(A, t), false);
    // A handshake that completes gives a usable session again.
    alice.layer.restartHandshake(B);
    handshake(alice, bob, t + 10, WALL + t + 10);
    assert.ok(alice.layer.hasSession(B));
    assert.equal(roundTrip(alice, bob, "new keys", t + 20), "new keys");
    assert.equal(roundTrip(bob, alice, "new keys", t + 20), "new keys");
  }
});

Deno.test("secure: a session past rejectAfterMessages stops sealing; a counter that high drops", () => {
  const limits = { rekeyAfterMessages: 2, rejectAfterMessages: 4 };
  // Alice is limited as a sender: her fifth seal is refused.
  const alice = party(A, limits);
  const bob = party(B);
  alice.layer.addPeer(B, bob.keys.publicKey);
  bob.layer.addPeer(A, alice.keys.publicKey);
  handshake(alice, bob);
  for (let i = 0; i < 4; i++) assert.equal(roundTrip(alice, bob, `m${i}`), `m${i}`);
  assert.equal(alice.layer.seal(B, HEADER, text("fifth"), 1), null);
  assert.equal(alice.layer.hasSession(B, 1), false);
  assert.deepEqual(alice.layer.tick(1).rekey, [B], "asked for a new session");
  // Carol is limited as a receiver: the fifth message Bob seals (counter 4) is refused.
  const carol = party(C, limits);
  carol.layer.addPeer(B, bob.keys.publicKey);
  bob.layer.addPeer(C, carol.keys.publicKey);
  handshake(bob, carol);
  for (let i = 0; i < 4; i++) assert.equal(roundTrip(bob, carol, `m${i}`), `m${i}`);
  assert.equal(
    reason(carol.layer.open(HEADER, bob.layer.seal(C, HEADER, text("5"), 2)!, 2)),
    "expired",
  );
});

Deno.test("secure: nextDeadline wakes the host when the session it sends on expires", () => {
  const [alice, bob] = pair({ rekeyAfterMs: 1000, rejectAfterMs: 1500, rekeyRetryMs: 10_000 });
  handshake(alice, bob, 0, WALL);
  assert.equal(alice.layer.nextDeadline(0), 1000, "the rekey comes first");
  assert.deepEqual(alice.layer.tick(1000).rekey, [B]);
  alice.layer.restartHandshake(B);
  alice.layer.handshakeInit(B, 1000, WALL + 1000); // lost
  assert.equal(alice.layer.nextDeadline(1000), 1500, "then the expiry, before the retry");
  assert.ok(alice.layer.hasSession(B, 1499));
  assert.equal(alice.layer.hasSession(B, 1500), false);
  assert.deepEqual(alice.layer.tick(1500).rekey, [], "the retry is not due yet");
  assert.equal(alice.layer.nextDeadline(1500), 11_000, "the expired session sets no deadline");
});

Deno.test("secure: a rekey asked for but never started is asked for again", () => {
  const [alice, bob] = pair({ rekeyAfterMs: 1000, rejectAfterMs: 1500, rekeyRetryMs: 300 });
  handshake(alice, bob, 0, WALL);
  assert.deepEqual(alice.layer.tick(1000).rekey, [B]);
  // The host did not start a handshake (or its pending one was dropped): no init is pending.
  alice.layer.restartHandshake(B);
  assert.equal(alice.layer.nextDeadline(1000), 1300);
  assert.deepEqual(alice.layer.tick(1299).rekey, []);
  assert.deepEqual(alice.layer.tick(1300).rekey, [B]);
  assert.deepEqual(alice.layer.tick(1599).rekey, [], "expired now, and asked 299 ms ago");
  assert.deepEqual(alice.layer.tick(1600).rekey, [B], "still asking once expired");
});

Deno.test("secure: a copy of an init whose session is past reject-after is not answered from the cache", () => {
  const [alice, bob] = pair();
  const init = alice.layer.handshakeInit(B, 0, WALL);
  const r1 = bob.layer.onHandshakeInit(init, 0);
  assert.ok(r1.ok && r1.fresh);
  // The session is kept alive by traffic (not idle) but is now older than reject-after.
  const late = DEFAULT_SECURE_CONFIG.rejectAfterMs + 10_000;
  assert.equal(bob.layer.isAnsweredInit(init, 10), true);
  assert.equal(bob.layer.isAnsweredInit(init, late), false, "no longer a free cached copy");
  // Answering it from the cache would need a seal the session refuses: it is refused instead.
  const r2 = bob.layer.onHandshakeInit(init, late);
  assert.equal(r2.ok, false);
});
