/**
 * A model of what the rendezvous server may do, for the stateful fuzz: which members are
 * registered (with their tokens, addresses and last-heard times), which names are bound to
 * which keys, which source addresses have proven themselves, and which cookies were issued
 * where. `World.step` feeds one datagram to a real ServerState and checks every action it
 * takes against the model; `World.invariants` checks the state-wide bounds.
 *
 * Membership is read from what the server does, not from its private fields: its "joined" and
 * "left (why)" log lines (one live member per room and name, so they identify a member), and
 * the REGISTER_OK that gives the member its id and token. Everything the model predicts on its
 * own (who is authenticated, when a member may time out, whether a cookie is valid, whether a
 * name is free) is then checked against those observations.
 */
import assert from "node:assert/strict";
import { type ServerAction, type ServerConfig, ServerState } from "../../lib/server/state.ts";
import { limitKey } from "../../lib/server/ip.ts";
import { silenceMs } from "../../lib/server/config.ts";
import { type Addr, addrKey, ipv4Bytes, ipv6Bytes, sameAddr } from "../../lib/wire/addr.ts";
import { decode, ErrorCode, type Message } from "../../lib/wire/codec.ts";
import { looksLikeStun } from "../../lib/stun/codec.ts";

/** What caused a datagram or a tick, as far as the checks need to know. */
export type Cause =
  | {
    kind: "register";
    id: string;
    name: string;
    room: string;
    keyHex: string;
    nonce: string;
    from: Addr;
    /** Whether the cookie it carries is certainly valid, certainly not, or may be either. */
    cookie: "valid" | "invalid" | "maybe";
  }
  | { kind: "keepalive" | "leave"; id: string; token: string; from: Addr }
  | { kind: "connect" | "relay"; id: string; token: string; to: string; from: Addr }
  | { kind: "stun" | "junk"; from: Addr }
  | { kind: "tick" };

export interface MMember {
  id: string;
  name: string;
  room: string;
  keyHex: string;
  token: string;
  public: Addr;
  lastSeen: number;
  nonce: string;
}

interface MBinding {
  keyHex: string;
  holder: string | null;
  releasedAt: number;
}

interface Issued {
  to: Addr;
  at: number;
  cookie: Uint8Array;
}

/** A deterministic byte source (xorshift32), so a failing sequence replays exactly. */
export function seeded(seed: number): (n: number) => Uint8Array {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}

/** The same IP and port, whatever the spelling (the codec writes IPv6 in its canonical form). */
function sameEndpoint(a: Addr, b: Addr): boolean {
  const bytes = (h: string) => (ipv4Bytes(h) ?? ipv6Bytes(h))?.join(".");
  return a.port === b.port && bytes(a.host) === bytes(b.host);
}

const JOINED = /^(\S+) joined (\S+) from (\S+)$/;
const LEFT = /^(\S+) left (\S+) \((.+)\)$/;

export class World {
  readonly server: ServerState;
  /** The time the caller passes (it may step back); `now` is the server's clock (never back). */
  t = 0;
  now = -Infinity;
  readonly members = new Map<string, MMember>();
  readonly bindings = new Map<string, MBinding>();
  readonly issued: Issued[] = [];
  readonly proven = new Set<string>();
  readonly maybeProven = new Set<string>();
  /** Every token the server ever handed out (stale and foreign tokens for the fuzz to try). */
  readonly tokens: string[] = [];
  /** Datagrams fed so far, for replays. */
  readonly history: { bytes: Uint8Array; from: Addr }[] = [];
  /** The last REGISTER nonce used per id (resends reuse it). */
  readonly nonces = new Map<string, string>();
  readonly silence: number;
  /** What happened, by kind (errors by code, removals by reason): coverage for the report. */
  readonly seen = new Map<string, number>();

  /** Which announced local addresses the server may pass on (the test's own LAN list). */
  lan: (a: Addr) => boolean = () => true;

  constructor(readonly cfg: ServerConfig, seed: number) {
    this.server = new ServerState(cfg, seeded(seed));
    this.silence = silenceMs(cfg);
  }

  /** The live member named `name` in `room`, per the model. */
  holder(room: string, name: string): MMember | undefined {
    for (const m of this.members.values()) if (m.room === room && m.name === name) return m;
    return undefined;
  }

  /** Whether the model is sure `token` from `from` authenticates member `id`. */
  authed(id: string, token: string, from: Addr): boolean {
    const m = this.members.get(id);
    return m !== undefined && m.token === token && sameAddr(m.public, from);
  }

  /** A cookie the server issued to `to`, by age: the newest, or one at least `minAge` old. */
  cookieFor(to: Addr, minAge = 0): Issued | undefined {
    for (let i = this.issued.length - 1; i >= 0; i--) {
      const c = this.issued[i]!;
      if (sameAddr(c.to, to) && this.now - c.at >= minAge) return c;
    }
    return undefined;
  }

  /** How a cookie presented from `from` stands: cookies are good for 60-120 s (two buckets). */
  classify(cookie: Uint8Array, from: Addr, now: number): "valid" | "invalid" | "maybe" {
    if (cookie.length === 0) return "invalid";
    const c = this.issued.findLast((i) =>
      sameAddr(i.to, from) && i.cookie.every((b, k) => b === cookie[k])
    );
    if (!c) return "invalid";
    const age = now - c.at;
    if (age < 60_000) return "valid";
    if (age >= 120_000) return "invalid";
    return "maybe";
  }

  /** Feeds one datagram at time `t` and checks everything the server does about it. */
  step(bytes: Uint8Array, from: Addr, t: number, cause: Cause): Message[] {
    this.t = t;
    this.now = Math.max(this.now, t);
    this.history.push({ bytes: bytes.slice(), from });
    if (cause.kind === "register") {
      if (cause.cookie === "valid") this.proven.add(addrKey(from));
      if (cause.cookie === "maybe") this.maybeProven.add(addrKey(from));
    }
    const out: ServerAction[] = [];
    this.server.handle(bytes, from, t, out);
    return this.check(out, cause, { bytes, from });
  }

  /** Runs the server's tick at time `t` and checks it. */
  tick(t: number): void {
    this.t = t;
    this.now = Math.max(this.now, t);
    const out: ServerAction[] = [];
    this.server.tick(t, out);
    this.check(out, { kind: "tick" }, null);
    for (const m of this.members.values()) {
      assert.ok(
        this.now < m.lastSeen + this.silence,
        `${m.name} (${m.id}) silent since ${m.lastSeen} is still registered at ${this.now}`,
      );
    }
    const next = this.server.nextDeadline(t);
    assert.ok(next === null || next > this.now, `deadline ${next} not after tick at ${this.now}`);
  }

  private check(
    out: ServerAction[],
    cause: Cause,
    input: { bytes: Uint8Array; from: Addr } | null,
  ): Message[] {
    const got: Message[] = [];
    // The model's verdict on a request's token, before this datagram changed anything.
    const authed = "token" in cause && this.authed(cause.id, cause.token, cause.from);
    let joined: { name: string; room: string } | null = null;
    let removedByLeave = false;
    let keepaliveAck = false;
    let unknownPeer = false;
    const saw = (k: string) => this.seen.set(k, (this.seen.get(k) ?? 0) + 1);
    for (const a of out) {
      if (a.type === "log") {
        saw(a.message.replace(/^\S+ (joined|left) .*?(\(.*\))?$/, "$1 $2").trim());
        const j = JOINED.exec(a.message);
        const l = LEFT.exec(a.message);
        if (j) joined = this.onJoined(j[1]!, j[2]!, j[3]!, cause);
        else if (l) removedByLeave = this.onLeft(l[1]!, l[2]!, l[3]!, cause) || removedByLeave;
        continue;
      }
      const isStun = looksLikeStun(a.bytes);
      if (isStun) {
        assert.equal(cause.kind, "stun", "STUN responses only answer STUN requests");
        assert.ok(input && sameAddr(a.to, input.from), "STUN responses go to the requester");
        assert.ok(a.bytes.length <= 64, `STUN response of ${a.bytes.length} bytes`);
        continue;
      }
      this.checkDestination(a.to, a.bytes.length, input);
      const d = decode(a.bytes);
      assert.ok(d.ok, `the server sent an undecodable datagram (${d.ok || d.reason})`);
      const m = d.value;
      got.push(m);
      this.checkLocals(m);
      saw(m.type === "error" ? `error ${m.code}` : m.type);
      switch (m.type) {
        case "register_ok":
          this.onRegisterOk(m, a.to, cause, joined);
          joined = null;
          break;
        case "cookie":
          this.issued.push({ to: a.to, at: this.now, cookie: m.cookie.slice() });
          break;
        case "keepalive_ack":
          keepaliveAck = true;
          this.tokenOwner(m.token, a.to, m.type);
          break;
        case "members":
        case "peer_joined":
        case "peer_left":
          this.tokenOwner(m.token, a.to, m.type);
          break;
        case "connect_fwd":
        case "relayed": {
          assert.ok(
            cause.kind === "connect" || cause.kind === "relay",
            `${m.type} caused by ${cause.kind}`,
          );
          assert.equal(m.type === "connect_fwd" ? "connect" : "relay", cause.kind);
          const target = this.members.get(cause.to);
          assert.ok(target, `${m.type} to someone not registered`);
          assert.ok(sameAddr(a.to, target.public), `${m.type} sent elsewhere than the target`);
          assert.equal(m.token, target.token, `${m.type} carries the target's token`);
          const src = m.type === "connect_fwd" ? m.member.id : m.from;
          assert.equal(src, cause.id, `${m.type} names its sender`);
          break;
        }
        case "error":
          if (m.code === ErrorCode.UNKNOWN_PEER) unknownPeer = true;
          if (m.about === 0x01 && m.code !== ErrorCode.BAD_VERSION) {
            assert.ok(cause.kind === "register", "ERROR about REGISTER without one");
            assert.notEqual(cause.cookie, "invalid", "refused a REGISTER it never saw proven");
          }
          break;
        default:
          assert.fail(`the server sent a ${m.type}`);
      }
    }
    assert.equal(joined, null, "a member joined without REGISTER_OK");
    // What the model says about authentication, against what the server did.
    const verdict = `${cause.kind} ${authed ? "refused" : "accepted"}`;
    if (cause.kind === "keepalive") {
      assert.equal(keepaliveAck, authed, `${verdict}: ${cause.id}`);
      if (authed) this.members.get(cause.id)!.lastSeen = this.now;
    }
    if (cause.kind === "connect" || cause.kind === "relay") {
      assert.equal(!unknownPeer, authed, `${verdict}: ${cause.id}`);
      if (authed) this.members.get(cause.id)!.lastSeen = this.now;
    }
    if (cause.kind === "leave") assert.equal(removedByLeave, authed, `${verdict}: ${cause.id}`);
    return got;
  }

  /** A datagram to `to`: to the source (no larger than it, unless proven) or a proven address. */
  private checkDestination(
    to: Addr,
    size: number,
    input: { bytes: Uint8Array; from: Addr } | null,
  ): void {
    const k = addrKey(to);
    if (this.proven.has(k) || this.maybeProven.has(k)) return;
    assert.ok(input && sameAddr(to, input.from), `sent ${size} bytes to unproven ${k}`);
    assert.ok(
      size <= input.bytes.length,
      `answered ${input.bytes.length} bytes from unproven ${k} with ${size}`,
    );
  }

  /** Member entries pass on only LAN locals, each once, at most four. */
  private checkLocals(m: Message): void {
    const entries = m.type === "register_ok" || m.type === "members"
      ? m.members
      : m.type === "peer_joined" || m.type === "connect_fwd"
      ? [m.member]
      : [];
    for (const e of entries) {
      const keys = e.locals.map(addrKey);
      assert.ok(e.locals.every(this.lan), `${e.name}'s locals include a non-LAN address: ${keys}`);
      assert.equal(new Set(keys).size, keys.length, `${e.name}'s locals repeat: ${keys}`);
      assert.ok(keys.length <= 4, `${e.name} has ${keys.length} locals`);
    }
  }

  /** A message carrying `token` sent to `to`: only the member holding it may receive it. */
  private tokenOwner(token: string, to: Addr, what: string): void {
    const owner = [...this.members.values()].find((m) => m.token === token);
    assert.ok(owner, `${what} carries a token no member holds`);
    assert.ok(sameAddr(owner.public, to), `${what} with ${owner.name}'s token sent elsewhere`);
  }

  private onJoined(name: string, room: string, from: string, cause: Cause) {
    assert.ok(cause.kind === "register", `${name} joined on a ${cause.kind}`);
    assert.equal(name, cause.name);
    assert.equal(room, cause.room);
    assert.equal(from, addrKey(cause.from));
    assert.notEqual(cause.cookie, "invalid", `${name} joined with an invalid cookie`);
    assert.equal(this.holder(room, name), undefined, `two live members named ${name} in ${room}`);
    const b = this.bindings.get(`${room}/${name}`);
    if (b && b.keyHex !== cause.keyHex) {
      const held = b.holder !== null || this.now < b.releasedAt + this.cfg.nameTtlMs;
      assert.ok(
        !held,
        `name ${name} in ${room} taken by another key within its TTL ` +
          `(released at ${b.releasedAt}, now ${this.now})`,
      );
    }
    return { name, room };
  }

  /** Returns whether this was an authenticated LEAVE's removal. */
  private onLeft(name: string, room: string, why: string, cause: Cause): boolean {
    const m = this.holder(room, name);
    assert.ok(m, `${name} left ${room}, but the model has no such member`);
    switch (why) {
      case "left":
        assert.equal(cause.kind, "leave", `${name} "left" on a ${cause.kind}`);
        assert.ok(
          cause.kind === "leave" && cause.id === m.id && cause.token === m.token &&
            sameAddr(cause.from, m.public),
          `${name} removed by a LEAVE without its token from its address`,
        );
        break;
      case "timed out":
        assert.equal(cause.kind, "tick", `${name} timed out on a ${cause.kind}`);
        assert.ok(
          m.lastSeen + this.silence <= this.now,
          `${name} timed out at ${this.now}, heard from at ${m.lastSeen}`,
        );
        break;
      case "re-registered":
      case "replaced by a new session":
        assert.ok(
          cause.kind === "register" && cause.keyHex === m.keyHex,
          `${name} ${why} by a REGISTER of another key`,
        );
        break;
      default:
        assert.fail(`${name} removed for an unknown reason: ${why}`);
    }
    this.members.delete(m.id);
    const b = this.bindings.get(`${room}/${name}`);
    if (b && b.holder === m.id) {
      b.holder = null;
      b.releasedAt = this.now;
    }
    return why === "left";
  }

  private onRegisterOk(
    m: Extract<Message, { type: "register_ok" }>,
    to: Addr,
    cause: Cause,
    joined: { name: string; room: string } | null,
  ): void {
    assert.ok(cause.kind === "register", "REGISTER_OK without a REGISTER");
    assert.notEqual(cause.cookie, "invalid", "REGISTER_OK for an invalid cookie");
    assert.ok(sameAddr(to, cause.from), "REGISTER_OK sent elsewhere");
    assert.equal(m.id, cause.id);
    assert.equal(m.nonce, cause.nonce, "REGISTER_OK echoes the nonce");
    assert.ok(sameEndpoint(m.public, cause.from), "REGISTER_OK reports the source address");
    this.proven.add(addrKey(to));
    if (joined) {
      assert.ok(!this.members.has(m.id), `id ${m.id} joined while registered`);
      this.members.set(m.id, {
        id: m.id,
        name: joined.name,
        room: joined.room,
        keyHex: cause.keyHex,
        token: m.token,
        public: to,
        lastSeen: this.now,
        nonce: cause.nonce,
      });
      this.tokens.push(m.token);
      const k = `${joined.room}/${joined.name}`;
      const b = this.bindings.get(k);
      if (b && b.keyHex === cause.keyHex) b.holder = m.id;
      else this.bindings.set(k, { keyHex: cause.keyHex, holder: m.id, releasedAt: 0 });
      return;
    }
    // No join: a resend or a move of the same member, which keeps its token.
    const r = this.members.get(m.id);
    assert.ok(r, `REGISTER_OK for ${m.id}, who is not registered`);
    assert.equal(r.keyHex, cause.keyHex, "REGISTER_OK to another key's member");
    assert.equal(r.name, cause.name);
    assert.equal(r.room, cause.room);
    assert.equal(m.token, r.token, "a member keeps its token when it registers again");
    r.public = to;
    r.lastSeen = this.now;
    r.nonce = cause.nonce;
  }

  /** The bounds that hold between any two datagrams. */
  invariants(): void {
    const s = this.server;
    assert.equal(s.peerCount, this.members.size, "the server and the model agree on who is in");
    const count = (f: (m: MMember) => string) => {
      const n = new Map<string, number>();
      for (const m of this.members.values()) n.set(f(m), (n.get(f(m)) ?? 0) + 1);
      return n;
    };
    for (const [ip, n] of count((m) => limitKey(m.public.host))) {
      assert.ok(n <= this.cfg.maxPeersPerIp, `${n} live registrations from ${ip}`);
    }
    for (const [k, n] of count((m) => m.keyHex)) {
      assert.ok(n <= this.cfg.maxPeersPerKey, `${n} live registrations of key ${k.slice(0, 8)}`);
    }
    const rooms = count((m) => m.room);
    assert.ok(rooms.size <= this.cfg.maxRooms, `${rooms.size} rooms`);
    for (const [r, n] of rooms) assert.ok(n <= this.cfg.maxMembersPerRoom, `${n} in ${r}`);
    assert.ok(this.members.size <= this.cfg.maxPeers);
    for (const [k, n] of count((m) => `${m.room}/${m.name}`)) assert.equal(n, 1, k);
  }
}
