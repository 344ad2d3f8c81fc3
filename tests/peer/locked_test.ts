/**
 * Locked rooms at the peers: the encryption layer with a room psk (IKpsk1), and agents on the
 * in-memory network, among them one a modified server slips into the room without the secret.
 */
import assert from "node:assert/strict";
import type { AgentAction, AgentConfig, PeerAgent } from "../../lib/peer/agent.ts";
import { MemNet, type Packet, SERVER } from "../_helpers/memnet.ts";
import { type Addr, addrKey } from "../../lib/wire/addr.ts";
import { decode, encode, type Member, type Message } from "../../lib/wire/codec.ts";
import { SecureLayer } from "../../lib/peer/secure.ts";
import { generateKeyPair } from "../../lib/crypto/keys.ts";
import { deriveRoomKeys } from "../../lib/crypto/room.ts";
import type { PeerEvent } from "../../lib/peer/events.ts";

const family = deriveRoomKeys("the family secret", "family");
const other = deriveRoomKeys("another secret", "family");

// ---------------------------------------------------------------------------------------------
// The encryption layer

const ID_A = "aaaaaaaaaaaaaaaa", ID_B = "bbbbbbbbbbbbbbbb";

/** Two layers, with the psk each holds (null: an open room's IK). */
function layers(pa: Uint8Array | null, pb: Uint8Array | null) {
  const ka = generateKeyPair(), kb = generateKeyPair();
  const a = new SecureLayer({ staticKey: ka, sessionId: ID_A, roomPsk: pa ?? undefined });
  const b = new SecureLayer({ staticKey: kb, sessionId: ID_B, roomPsk: pb ?? undefined });
  a.addPeer(ID_B, kb.publicKey);
  b.addPeer(ID_A, ka.publicKey);
  return { a, b };
}

const pairs: { name: string; a: Uint8Array | null; b: Uint8Array | null; ok: boolean }[] = [
  { name: "the same room psk", a: family.psk, b: family.psk, ok: true },
  { name: "another room's psk", a: other.psk, b: family.psk, ok: false },
  { name: "no psk (open room) towards a locked peer", a: null, b: family.psk, ok: false },
  { name: "a psk towards an open-room peer", a: family.psk, b: null, ok: false },
];
for (const c of pairs) {
  Deno.test(`secure layer, locked room: ${c.name} ${c.ok ? "connects" : "gets no answer"}`, () => {
    const { a, b } = layers(c.a, c.b);
    const init = a.handshakeInit(ID_B, 0, 1000);
    const r = b.onHandshakeInit(init, 0);
    assert.equal(r.ok, c.ok);
    if (!r.ok) {
      // No reply to send and no session: the responder learnt the init fails, nothing more.
      assert.equal(r.reason, "decrypt_failed");
      assert.equal(b.hasSession(ID_A), false);
      return;
    }
    assert.ok(a.onHandshakeResp(r.reply, 0).ok);
    const hdr = Uint8Array.of(0x50, 1, 0x50);
    const sealed = a.seal(ID_B, hdr, new TextEncoder().encode("hi"), 0)!;
    const open = b.open(hdr, sealed, 0);
    assert.ok(open.ok && new TextDecoder().decode(open.plaintext) === "hi");
  });
}

Deno.test("secure layer: a room psk must be 32 bytes", () => {
  assert.throws(
    () =>
      new SecureLayer({
        staticKey: generateKeyPair(),
        sessionId: ID_A,
        roomPsk: new Uint8Array(16),
      }),
    /room psk must be 32 bytes/,
  );
});

// ---------------------------------------------------------------------------------------------
// Agents on the in-memory network

const HOSTS: Record<string, Addr> = {
  alice: { host: "198.51.100.1", port: 1000 },
  bob: { host: "203.0.113.2", port: 2000 },
  carol: { host: "192.0.2.3", port: 3000 },
  mallory: { host: "198.51.100.66", port: 6600 },
  eve: { host: "198.51.100.77", port: 7700 },
};

class Net extends MemNet {
  /** Exit codes of fatal actions, by agent. */
  readonly codes = new Map<string, number>();
  override add(name: string, cfg: Partial<AgentConfig> = {}): PeerAgent {
    return super.add(name, cfg, HOSTS[name]);
  }
  override run(name: string, acts: AgentAction[]): void {
    for (const a of acts) if (a.type === "fatal") this.codes.set(name, a.code);
    super.run(name, acts);
  }
}

const locked = { room: "family", roomKeys: family };
const ready = (net: Net, name: string) =>
  net.events.get(name)!.find((e) => e.type === "ready") as
    | Extract<PeerEvent, { type: "ready" }>
    | undefined;
const joined = (net: Net, name: string) =>
  net.events.get(name)!.flatMap((e) => e.type === "peer" && e.state === "joined" ? [e.name] : []);

/** Every datagram `p` carries to or from peers, the relayed ones unwrapped. */
function peerMessages(p: Packet): Message[] {
  const d = decode(p.bytes);
  if (!d.ok) return [];
  const m = d.value;
  if (m.type === "relay" || m.type === "relayed") {
    const inner = decode(m.payload);
    return inner.ok ? [inner.value] : [];
  }
  return [m];
}

Deno.test("locked room: members with the secret chat; ready says the room is locked", () => {
  const net = new Net();
  net.add("alice", locked);
  net.add("bob", locked);
  net.advance(1000);
  assert.equal(ready(net, "alice")?.locked, true);
  net.say("alice", "hello family");
  net.msg("bob", "alice", "just you");
  net.advance(1000);
  assert.deepEqual(net.texts("bob"), ["hello family"]);
  assert.deepEqual(net.texts("alice"), ["just you"]);
  assert.equal(net.agent("alice").peers()[0]?.secure, true);
});

for (const c of [{ what: "no secret", keys: undefined }, { what: "a wrong secret", keys: other }]) {
  Deno.test(`locked room: ${c.what} ends the peer with status 2 and learns no member`, () => {
    const net = new Net();
    net.add("alice", locked);
    net.add("bob", locked);
    net.advance(1000);
    const since = net.wire.length;
    net.add("carol", { room: "family", roomKeys: c.keys });
    net.advance(3000);
    assert.equal(net.codes.get("carol"), 2);
    assert.match(
      net.fatals.join("\n"),
      /carol: Cannot join room "family": (wrong room secret|room "family" is locked)/,
    );
    assert.equal(ready(net, "carol"), undefined);
    assert.deepEqual(joined(net, "carol"), []);
    // On the wire: nothing the server sent carol names a member.
    const toCarol = net.wire.slice(since).filter((p) => addrKey(p.to) === addrKey(HOSTS.carol!));
    assert.ok(toCarol.length > 0);
    for (const p of toCarol) {
      const text = new TextDecoder("latin1").decode(p.bytes);
      assert.ok(!text.includes("alice") && !text.includes("bob"), "no member names");
      assert.ok(
        ["cookie", "error"].includes(
          decode(p.bytes).ok ? (decode(p.bytes) as { value: Message }).value.type : "",
        ),
      );
    }
    // And the room never heard of carol.
    assert.deepEqual(joined(net, "alice"), ["bob"]);
    assert.deepEqual(joined(net, "bob"), ["alice"]);
  });
}

/** The registration token the server gave `name`, read off the wire (what a server knows). */
function tokenOf(net: Net, name: string): string {
  for (const p of net.wire) {
    if (addrKey(p.to) !== addrKey(HOSTS[name]!)) continue;
    const d = decode(p.bytes);
    if (d.ok && d.value.type === "register_ok") return d.value.token;
  }
  throw new Error(`no REGISTER_OK to ${name}`);
}

/** The member entry a server would announce for `name`. */
function memberOf(net: Net, name: string): Member {
  return {
    id: net.agent(name).id,
    name,
    public: HOSTS[name]!,
    locals: [],
    key: net.identities.get(name)!.edPublic,
  };
}

/** A modified server tells `to` that `who` is in its room (with `to`'s real token). */
function inject(net: Net, to: string, who: string): void {
  const m: Message = { type: "peer_joined", token: tokenOf(net, to), member: memberOf(net, who) };
  net.deliver(to, encode(m), SERVER);
  net.flush();
}

Deno.test("locked room: a member a modified server injects without the secret gets no handshake and no message", () => {
  const net = new Net();
  net.add("alice", locked);
  net.add("bob", locked);
  // Mallory registers in an open room; eve, the control, holds the family secret but is also
  // registered elsewhere: the server knows both keys, and introduces both to alice.
  net.add("mallory", { room: "elsewhere" });
  net.add("eve", { room: "elsewhere2", roomKeys: family });
  net.advance(1000);
  for (const intruder of ["mallory", "eve"]) {
    inject(net, "alice", intruder);
    inject(net, intruder, "alice");
  }
  const since = net.wire.length;
  net.advance(3000);
  net.say("alice", "family only");
  net.say("mallory", "let me in");
  net.say("eve", "eve here");
  net.advance(8000);

  // Both intruders are on alice's list (the server's word is all she has)...
  assert.deepEqual(joined(net, "alice").sort(), ["bob", "eve", "mallory"]);
  const peers = new Map(net.agent("alice").peers().map((p) => [p.name, p]));
  // ...but only the one holding the secret completed a handshake.
  assert.equal(peers.get("eve")?.secure, true, "control: injection itself works");
  // (Alice may also have dropped mallory: the real server says it knows no such member.)
  assert.notEqual(peers.get("mallory")?.secure, true);
  assert.notEqual(net.agent("mallory").peers()[0]?.secure, true);
  assert.deepEqual(net.texts("mallory"), []);
  assert.ok(!net.texts("alice").includes("let me in"));
  assert.ok(net.texts("alice").includes("eve here"));
  assert.deepEqual(net.texts("bob"), ["family only"]);
  assert.deepEqual(net.texts("eve"), ["family only"]);
  // Alice never answered mallory's handshakes, and they failed before any session.
  const mal = addrKey(HOSTS.mallory!), ali = addrKey(HOSTS.alice!);
  const aliceToMallory = net.wire.slice(since).filter((p) =>
    addrKey(p.from) === ali && addrKey(p.to) === mal
  ).flatMap(peerMessages).map((m) => m.type);
  assert.ok(!aliceToMallory.includes("hello_ack"), aliceToMallory.join());
  assert.ok(!aliceToMallory.includes("sealed"), "nothing sealed for mallory");
  assert.ok(
    (net.agent("alice").stats()["secure_decrypt_failed"] ?? 0) > 0,
    "mallory's inits failed",
  );
  assert.ok(
    !net.wire.some((p) => new TextDecoder("latin1").decode(p.bytes).includes("family only")),
  );
});

Deno.test("an open room named like a locked one on another server is unaffected", () => {
  const locked1 = new Net();
  locked1.add("alice", locked);
  locked1.advance(500);
  const open = new Net();
  open.add("carol", { room: "family" });
  open.add("bob", { room: "family" });
  open.advance(1000);
  assert.equal(ready(open, "carol")?.locked, false);
  open.say("carol", "open as ever");
  open.advance(1000);
  assert.deepEqual(open.texts("bob"), ["open as ever"]);
  assert.deepEqual(open.fatals, []);
});
