/** The server state machine, driven with a fake clock: registration proof, names, limits. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { limitKey, type ServerAction } from "../../lib/server/state.ts";
import { PerMinute } from "../../lib/server/limits.ts";
import { encode, ErrorCode, registerSigInput } from "../../lib/wire/codec.ts";
import { newIdentity, sign } from "../../lib/identity/identity.ts";
import { bindingRequest } from "../../lib/stun/binding.ts";
import { A, B, C, cfg, ID1, ID2, ID3, join, msgs, reg, server } from "./_server.ts";

const alice = newIdentity();
const bob = newIdentity();
const mallory = newIdentity();

Deno.test("server: a first REGISTER only gets a cookie, smaller than the request", () => {
  const { s, feed } = server();
  const req = encode(reg(ID1, "alice", alice));
  const out = feed(req, A);
  assert.equal(out.length, 1);
  assert.ok(out[0]!.bytes.length < req.length);
  assert.equal(msgs(out)[0]?.type, "cookie");
  assert.equal(s.peerCount, 0);
});

Deno.test("server: a cookie made for another address is refused (spoofed source)", () => {
  const { s, feed } = server();
  const c = msgs(feed(reg(ID1, "alice", alice), B))[0] as { cookie: Uint8Array };
  const out = feed(reg(ID1, "alice", alice, c.cookie), A);
  assert.deepEqual(msgs(out).map((m) => m.type), ["cookie"]);
  assert.equal(s.peerCount, 0);
});

Deno.test("server: a signature that does not match the key is refused", () => {
  const { s, feed } = server();
  const c = msgs(feed(reg(ID1, "alice", alice), A))[0] as { cookie: Uint8Array };
  const m = reg(ID1, "alice", alice, c.cookie);
  m.sig = sign(mallory, registerSigInput(m));
  const out = msgs(feed(m, A));
  assert.equal(out[0]?.type === "error" && out[0].code, ErrorCode.BAD_SIGNATURE);
  assert.equal(s.peerCount, 0);
});

Deno.test("server: a name belongs to its key while registered and for the TTL after", () => {
  const { s, feed } = server();
  const ok = join(feed, ID1, "alice", alice, A);
  assert.equal(ok[0]?.type, "register_ok");
  const taken = join(feed, ID2, "alice", mallory, B);
  assert.ok(taken[0]?.type === "error" && taken[0].code === ErrorCode.NAME_TAKEN);
  // alice leaves; the name stays hers for the TTL.
  const token = (ok[0] as { token: string }).token;
  feed({ type: "leave", id: ID1, token }, A, 1000);
  assert.equal(s.peerCount, 0);
  const still = join(feed, ID2, "alice", mallory, B, 30_000);
  assert.ok(still[0]?.type === "error" && still[0].code === ErrorCode.NAME_TAKEN);
  // alice herself may come back, from anywhere.
  const back = join(feed, ID3, "alice", alice, C, 31_000)[0];
  assert.equal(back?.type, "register_ok");
  feed({ type: "leave", id: ID3, token: (back as { token: string }).token }, C, 32_000);
  // After the TTL, anyone.
  const out: ServerAction[] = [];
  s.tick(32_000 + cfg.nameTtlMs + 1, out);
  assert.equal(
    join(feed, ID2, "alice", mallory, B, 32_000 + cfg.nameTtlMs + 2)[0]?.type,
    "register_ok",
  );
});

Deno.test("server: the same key under a new session replaces the old one and tells the room", () => {
  const { s, feed } = server();
  join(feed, ID1, "alice", alice, A);
  join(feed, ID2, "bob", bob, B);
  const again = join(feed, ID3, "alice", alice, C, 10);
  assert.equal(again[0]?.type, "register_ok");
  assert.equal(s.peerCount, 2);
});

Deno.test("server: requests with a wrong token get a small error and change nothing", () => {
  const { s, feed } = server();
  join(feed, ID1, "alice", alice, A);
  join(feed, ID2, "bob", bob, B);
  const forged = encode({ type: "leave", id: ID1, token: "0000000000000000" });
  const out = feed(forged, C);
  assert.ok(out.every((o) => o.bytes.length <= forged.length));
  assert.equal(s.peerCount, 2, "alice was not kicked");
  const relay = encode({
    type: "relay",
    from: ID1,
    token: "0000000000000000",
    to: ID2,
    payload: new Uint8Array(500),
  });
  const r = feed(relay, C);
  assert.ok(r.every((o) => !(o.to.host === B.host)), "nothing relayed to bob");
});

Deno.test("server: relays only within a room, and only up to the relay rate", () => {
  const { feed } = server({ ...cfg, relayBytesPerSec: 10_000 });
  const a = join(feed, ID1, "alice", alice, A)[0] as { token: string };
  join(feed, ID2, "bob", bob, B);
  join(feed, ID3, "carol", mallory, C, 0, "other");
  const payload = encode({ type: "sealed", body: new Uint8Array(997) }); // 1000 bytes
  const to = (id: string) =>
    feed({ type: "relay", from: ID1, token: a.token, to: id, payload }, A, 1);
  assert.equal(to(ID3).filter((o) => o.to.host === C.host).length, 0, "not across rooms");
  let relayed = 0;
  for (let i = 0; i < 100; i++) relayed += to(ID2).filter((o) => o.to.host === B.host).length;
  assert.ok(relayed >= 39 && relayed <= 41, `burst of 4 s at 10 kB/s, got ${relayed} kB`);
});

Deno.test("server: address-proven registrations per source IP per minute are limited", () => {
  const { feed } = server({ ...cfg, registrationsPerMinute: 5 });
  const c = msgs(feed(reg(ID1, "alice", alice), A, 0))[0] as { cookie: Uint8Array };
  // Each a new attempt (its own nonce), as a client that keeps restarting would send.
  const attempt = (i: number, cookie: Uint8Array, now: number) =>
    feed(reg(ID1, "alice", alice, cookie, "lobby", i.toString(16).padStart(16, "0")), A, now);
  let answered = 0;
  for (let i = 0; i < 20; i++) answered += attempt(i, c.cookie, i).length;
  assert.equal(answered, 5);
  const c2 = msgs(feed(reg(ID1, "alice", alice), A, 61_000))[0] as { cookie: Uint8Array };
  assert.equal(attempt(99, c2.cookie, 61_000).length, 1, "a new minute");
});

Deno.test("server: a resent REGISTER (its answer was lost) is answered again, not counted", () => {
  const { s, feed } = server({ ...cfg, registrationsPerMinute: 2 });
  const c = msgs(feed(reg(ID1, "alice", alice), A, 0))[0] as { cookie: Uint8Array };
  const signed = reg(ID1, "alice", alice, c.cookie);
  for (let i = 0; i < 10; i++) {
    assert.equal(msgs(feed(signed, A, i))[0]?.type, "register_ok", `resend ${i}`);
  }
  assert.equal(s.stats.registered, 1);
  assert.equal(s.stats.drops.get("registration_rate") ?? 0, 0);
});

Deno.test("server: forged-source registrations cannot use up an address's allowance", () => {
  const { feed } = server({ ...cfg, registrationsPerMinute: 5 });
  // A flood of cookieless and wrong-cookie REGISTERs "from" A (anyone can forge that) ...
  for (let i = 0; i < 50; i++) {
    assert.equal(msgs(feed(reg(ID2, "mallory", mallory), A, i))[0]?.type, "cookie");
    feed(reg(ID2, "mallory", mallory, new Uint8Array(16).fill(i)), A, i);
  }
  // ... leaves the real peer at A free to register.
  assert.equal(join(feed, ID1, "alice", alice, A, 100)[0]?.type, "register_ok");
});

Deno.test("server: never amplifies towards an unproven source (STUN Binding excepted)", () => {
  const { feed } = server();
  join(feed, ID1, "alice", alice, A);
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 1600 }),
        fc.uint8Array({ maxLength: 200 }).map((b) => Uint8Array.from([0x50, 1, ...b])),
        fc.constantFrom(...[1, 6, 8, 0x10, 0x20].map((t) => t)).chain((t) =>
          fc.uint8Array({ maxLength: 120 }).map((b) => Uint8Array.from([0x50, 1, t, ...b]))
        ),
      ),
      (b) => {
        const out = feed(b, C);
        const sent = out.reduce((n, o) => n + o.bytes.length, 0);
        assert.ok(sent <= b.length, `${sent} bytes answered to ${b.length}`);
      },
    ),
    { numRuns: 3000 },
  );
  // The STUN exception: a fixed small answer.
  const stun = bindingRequest(new Uint8Array(12).fill(9), { fingerprint: false });
  const out = feed(stun, C);
  assert.equal(out.length, 1);
  assert.ok(out[0]!.bytes.length <= 40);
});

Deno.test("server: a silent peer is dropped after 3 keepalive intervals and the room is told", () => {
  const { s, feed } = server();
  join(feed, ID1, "alice", alice, A);
  const b = join(feed, ID2, "bob", bob, B)[0] as { token: string };
  let leftAt = -1;
  for (let t = 0; t <= 6000; t += 250) {
    feed({ type: "keepalive", id: ID2, token: b.token }, B, t);
    const out: ServerAction[] = [];
    s.tick(t, out);
    const told = msgs(out.filter((o) => o.type === "send") as { bytes: Uint8Array }[]);
    if (told.some((m) => m.type === "peer_left" && m.name === "alice")) {
      assert.equal(leftAt, -1, "reported once");
      leftAt = t;
    }
  }
  assert.ok(
    leftAt > 3 * cfg.keepaliveMs && leftAt <= 3 * cfg.keepaliveMs + 1250,
    `left at ${leftAt}`,
  );
  assert.equal(s.peerCount, 1, "bob, who kept alive, stays");
});

Deno.test("server: a token from another address does not move the member; it gets ERROR 4", () => {
  const { s, feed } = server();
  const ok = join(feed, ID1, "alice", alice, A)[0] as { token: string };
  join(feed, ID2, "bob", bob, B);
  // Someone holding alice's token, sending from C, asks to be kept alive there.
  const out = msgs(feed({ type: "keepalive", id: ID1, token: ok.token }, C, 10));
  assert.equal(out.length, 1);
  const e = out[0]!;
  assert.ok(e.type === "error" && e.code === ErrorCode.UNKNOWN_PEER && e.token === ok.token);
  // Nobody was told to send to C; alice is still at A.
  const ka = msgs(feed({ type: "keepalive", id: ID1, token: ok.token }, A, 20))[0];
  assert.ok(ka?.type === "keepalive_ack" && ka.public.host === A.host);
  // Proving C with a cookie moves her, and the room hears of it.
  const moved = join(feed, ID1, "alice", alice, C, 30);
  assert.equal(moved[0]?.type, "register_ok");
  assert.equal(s.peerCount, 2);
});

Deno.test("server: per-source limits count IPv6 by /64, IPv4 by address", () => {
  assert.equal(limitKey("2001:db8:1:2:aaaa::1"), limitKey("2001:db8:1:2:bbbb::9"));
  assert.notEqual(limitKey("2001:db8:1:2::1"), limitKey("2001:db8:1:3::1"));
  assert.equal(limitKey("198.51.100.7"), "198.51.100.7");
});

Deno.test("server: a limiter full of live keys still admits newcomers", () => {
  const l = new PerMinute(1, 3);
  for (const k of ["a", "b", "c"]) assert.ok(l.take(k, 0));
  assert.ok(l.take("d", 1), "the oldest key is forgotten to make room");
  assert.equal(l.size, 3);
  assert.equal(l.take("d", 2), false, "d is counted like anyone else");
});

Deno.test("server: CONNECTs per member are rate limited", () => {
  const { s, feed } = server();
  const a = join(feed, ID1, "alice", alice, A)[0] as { token: string };
  join(feed, ID2, "bob", bob, B);
  let forwarded = 0;
  for (let i = 0; i < 500; i++) {
    const out = feed({ type: "connect", from: ID1, token: a.token, to: ID2, nonce: ID3 }, A, 10);
    forwarded += msgs(out).filter((m) => m.type === "connect_fwd").length;
  }
  assert.equal(forwarded, 128, "the burst, then nothing");
  assert.equal(s.stats.drops.get("connect_rate"), 500 - 128);
  const later = feed({ type: "connect", from: ID1, token: a.token, to: ID2, nonce: ID3 }, A, 1010);
  assert.equal(msgs(later).filter((m) => m.type === "connect_fwd").length, 1, "refills");
});
