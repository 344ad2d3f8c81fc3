/**
 * The rendezvous server as a state machine: `handle(datagram, from, now, out)` and
 * `tick(now, out)` push actions into `out`; the socket loop in server.ts carries them out.
 * The caller passes one reused `out` array so the hot path allocates nothing for it.
 * `nextDeadline(now)` says when `tick` next has work, so the host sleeps until then.
 * Time never runs backwards here: an earlier `now` than one already seen counts as that one.
 *
 * Abuse resistance: to a source that has not echoed a cookie, the server never answers with
 * more bytes than it received (STUN Binding responses excepted, as in coturn); registrations
 * must prove the key (Ed25519 signature) and the address (cookie); later requests carry a
 * per-registration token only the registered address ever received.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { type Addr, addrKey, ipv6Bytes, sameAddr } from "../wire/addr.ts";
import { equalBytes, toHex } from "../wire/bytes.ts";
import {
  decode,
  encode,
  ErrorCode,
  type Id,
  looksLikeP2p,
  MAX_SEND,
  type Member,
  memberSize,
  type Message,
  NO_TOKEN,
  registerSigInput,
  T,
} from "../wire/codec.ts";
import { validName } from "../wire/names.ts";
import { decodeStun, looksLikeStun } from "../stun/codec.ts";
import { bindingResponse } from "../stun/binding.ts";
import { Cookies } from "./cookie.ts";
import { Bucket, LogLimiter, PerMinute } from "./limits.ts";

export interface ServerConfig {
  /** Interval peers are told to send keepalives at; a peer silent for 3 of them is dropped. */
  keepaliveMs: number;
  maxMembersPerRoom: number;
  maxRooms: number;
  maxPeers: number;
  /** How long a name stays bound to its key after its owner left. */
  nameTtlMs: number;
  /** Registration attempts per source IP per minute. */
  registrationsPerMinute: number;
  /** Relayed payload bytes per second per peer (bursts of 4 s allowed). */
  relayBytesPerSec: number;
  /**
   * Names remembered after their owners left; past this the oldest released ones are
   * forgotten early, so registrations cannot grow memory without bound.
   */
  maxNameBindings: number;
}

export const DEFAULT_SERVER_CONFIG: ServerConfig = {
  keepaliveMs: 15_000,
  maxMembersPerRoom: 64,
  maxRooms: 1024,
  maxPeers: 4096,
  nameTtlMs: 24 * 3600_000,
  registrationsPerMinute: 30,
  relayBytesPerSec: 128 * 1024,
  maxNameBindings: 100_000,
};

export type ServerAction =
  | { type: "send"; to: Addr; bytes: Uint8Array }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string };

interface Rec {
  id: Id;
  token: string;
  name: string;
  room: string;
  key: Uint8Array;
  public: Addr;
  locals: Addr[];
  lastSeen: number;
  relay: Bucket;
  /** Nonce of the REGISTER that made or last moved this record (resends are answered as-is). */
  regNonce: string;
  /** CONNECTs this member may send: each makes the target probe addresses the sender chose. */
  connects: Bucket;
}

/** Silence after which a member is dropped: 3 keepalive intervals, plus 1 s for jitter. */
const silenceMs = (cfg: ServerConfig) => 3 * cfg.keepaliveMs + 1000;

/** CONNECTs per second per member, and the burst (a newcomer asks for a whole room at once). */
const CONNECT_RATE = 10;
const CONNECT_BURST = 128;

interface Binding {
  key: string;
  holder: Id | null;
  releasedAt: number;
}

/** Counters the operator can read; every dropped datagram lands in exactly one `drop_*`. */
export class ServerStats {
  received = 0;
  stun = 0;
  registered = 0;
  relayedPackets = 0;
  relayedBytes = 0;
  bindingsEvicted = 0;
  drops = new Map<string, number>();
  drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }
}

/** Splits a member list into pages that each fit one datagram (with room for the header). */
function pages(members: Member[]): Member[][] {
  const out: Member[][] = [[]];
  let size = 0;
  for (const m of members) {
    const n = memberSize(m);
    if (size + n > MAX_SEND - 64 && out[out.length - 1]!.length > 0) {
      out.push([]);
      size = 0;
    }
    out[out.length - 1]!.push(m);
    size += n;
  }
  return out;
}

/**
 * What the per-source limits count by: the IPv4 address, or the IPv6 /64 (one subscriber
 * usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
 */
export function limitKey(host: string): string {
  const v6 = host.includes(":") ? ipv6Bytes(host) : null;
  return v6 ? `${toHex(v6.subarray(0, 8))}/64` : host;
}

export class ServerState {
  readonly stats = new ServerStats();
  /** Kept in `lastSeen` order (a member seen again moves to the end): the first expires first. */
  private byId = new Map<Id, Rec>();
  private rooms = new Map<string, Map<string, Rec>>();
  private bindings = new Map<string, Binding>();
  /** Released bindings in release order: the first one's TTL ends first. */
  private released = new Map<string, Binding>();
  /** The latest `now` seen; see `clock`. */
  private last = -Infinity;
  private cookies: Cookies;
  private regLimit: PerMinute;
  private logs = new LogLimiter();

  constructor(
    readonly cfg: ServerConfig = DEFAULT_SERVER_CONFIG,
    private random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n)),
  ) {
    this.cookies = new Cookies(random(32));
    this.regLimit = new PerMinute(cfg.registrationsPerMinute);
  }

  get peerCount(): number {
    return this.byId.size;
  }

  /** `now`, never earlier than before: the expiry orders above rely on it. */
  private clock(now: number): number {
    return this.last = Math.max(this.last, now);
  }

  handle(b: Uint8Array, from: Addr, t: number, out: ServerAction[]): void {
    const now = this.clock(t);
    this.stats.received++;
    if (looksLikeStun(b)) return this.stun(b, from, out);
    if (!looksLikeP2p(b)) return this.stats.drop("unknown_protocol");
    const d = decode(b);
    if (!d.ok) {
      this.stats.drop(d.reason);
      // Tell a newer client why we ignore it, but never answer with more bytes than we got.
      if (d.reason === "version") {
        const reply = encode({
          type: "error",
          code: ErrorCode.BAD_VERSION,
          about: b[2]!,
          token: NO_TOKEN,
          text: "",
        });
        this.small(from, reply, b.length, out);
      }
      return;
    }
    const m = d.value;
    switch (m.type) {
      case "register":
        return this.register(m, b.length, from, now, out);
      case "keepalive":
        return this.keepalive(m, b.length, from, now, out);
      case "leave": {
        const r = this.authed(m.id, m.token, from, now);
        if (r) this.remove(r, now, out, "left");
        return;
      }
      case "connect":
        return this.connect(m, b.length, from, now, out);
      case "relay":
        return this.relay(m, b.length, from, now, out);
      default:
        this.stats.drop("unexpected_type");
    }
  }

  /**
   * Expires members that stopped sending keepalives, and name bindings past their time: all
   * whose deadline (see nextDeadline) is `now` or earlier.
   */
  tick(t: number, out: ServerAction[]): void {
    const now = this.clock(t);
    for (const r of this.byId.values()) {
      if (now < r.lastSeen + silenceMs(this.cfg)) break;
      this.remove(r, now, out, "timed out");
    }
    this.expireBindings(now);
  }

  /**
   * The earliest time at which `tick` has work (a member falls silent for too long, a released
   * name's TTL ends), or null when nothing is pending. May be `now` or earlier: tick at once.
   */
  nextDeadline(t: number): number | null {
    this.clock(t);
    let at: number | null = null;
    for (const r of this.byId.values()) {
      at = r.lastSeen + silenceMs(this.cfg);
      break;
    }
    for (const b of this.released.values()) {
      const end = b.releasedAt + this.cfg.nameTtlMs;
      if (at === null || end < at) at = end;
      break;
    }
    return at;
  }

  private expireBindings(now: number): void {
    for (const [k, b] of this.released) {
      if (now < b.releasedAt + this.cfg.nameTtlMs) return;
      this.released.delete(k);
      this.bindings.delete(k);
    }
  }

  /** Marks `r` as heard from now: it moves to the end of the expiry order. */
  private touch(r: Rec, now: number): void {
    r.lastSeen = now;
    this.byId.delete(r.id);
    this.byId.set(r.id, r);
  }

  private warn(key: string, message: string, now: number, out: ServerAction[]): void {
    const held = this.logs.allow(key, now);
    if (held < 0) return;
    const more = held > 0 ? ` (${held} more like it since the last report)` : "";
    out.push({ type: "log", level: "warn", message: message + more });
  }

  /** A reply to a source whose address is not proven: never larger than what it sent. */
  private small(to: Addr, bytes: Uint8Array, got: number, out: ServerAction[]): void {
    if (bytes.length <= got) out.push({ type: "send", to, bytes });
    else this.stats.drop("reply_too_large");
  }

  private stun(b: Uint8Array, from: Addr, out: ServerAction[]): void {
    const d = decodeStun(b);
    if (!d.ok) return this.stats.drop("stun_malformed");
    const s = d.value;
    if (s.method !== 0x001 || s.class !== "request") return this.stats.drop("stun_unsupported");
    this.stats.stun++;
    // Fixed 32-40 bytes whatever the request: the one allowed exception to `small`.
    out.push({ type: "send", to: from, bytes: bindingResponse(s, from) });
  }

  private error(
    to: Addr,
    code: ErrorCode,
    about: number,
    text: string,
    out: ServerAction[],
    token = NO_TOKEN,
  ) {
    out.push({ type: "send", to, bytes: encode({ type: "error", code, about, token, text }) });
  }

  private register(
    m: Extract<Message, { type: "register" }>,
    got: number,
    from: Addr,
    now: number,
    out: ServerAction[],
  ): void {
    if (m.cookie.length === 0 || !this.cookies.check(m.cookie, from, now)) {
      // Prove the address first: the cookie reply is smaller than any REGISTER.
      if (m.cookie.length > 0) this.stats.drop("stale_cookie");
      return this.small(
        from,
        encode({ type: "cookie", nonce: m.nonce, cookie: this.cookies.make(from, now) }),
        got,
        out,
      );
    }
    const again = this.byId.get(m.id);
    if (
      again && again.regNonce === m.nonce && sameAddr(again.public, from) &&
      again.name === m.name && again.room === m.room && equalBytes(again.key, m.key)
    ) {
      // A resend of a REGISTER we accepted (our answer was lost): answer again, no new work.
      this.touch(again, now);
      return this.welcome(again, m.nonce, from, out);
    }
    // Counted only once the address is proven, so forged sources cannot use up a real
    // address's allowance (or fill the table); signature checks are what it protects.
    if (!this.regLimit.take(limitKey(from.host), now)) {
      this.stats.drop("registration_rate");
      return this.warn(
        `rate:${from.host}`,
        `registration rate limit hit by ${from.host}`,
        now,
        out,
      );
    }
    // From here on the source address is proven: full-size replies are fine.
    let sigOk = false;
    try {
      // Strict (RFC 8032) verification: no small-order keys or non-canonical encodings.
      sigOk = ed25519.verify(m.sig, registerSigInput(m), m.key, { zip215: false });
    } catch {
      sigOk = false;
    }
    if (!sigOk) {
      this.stats.drop("bad_signature");
      return this.error(from, ErrorCode.BAD_SIGNATURE, T.REGISTER, "bad signature", out, m.nonce);
    }
    if (!validName(m.name)) {
      return this.error(
        from,
        ErrorCode.BAD_NAME,
        T.REGISTER,
        `invalid name "${m.name}"`,
        out,
        m.nonce,
      );
    }
    if (!validName(m.room)) {
      return this.error(
        from,
        ErrorCode.BAD_ROOM,
        T.REGISTER,
        `invalid room "${m.room}"`,
        out,
        m.nonce,
      );
    }
    const keyHex = toHex(m.key);
    let rec = this.byId.get(m.id);
    if (rec && (rec.name !== m.name || rec.room !== m.room || toHex(rec.key) !== keyHex)) {
      this.remove(rec, now, out, "re-registered");
      rec = undefined;
    }
    const bindKey = `${m.room}\0${m.name}`;
    const binding = this.bindings.get(bindKey);
    const live = binding?.holder ? this.byId.get(binding.holder) : undefined;
    if (
      binding && binding.key !== keyHex &&
      (live || now < binding.releasedAt + this.cfg.nameTtlMs)
    ) {
      this.stats.drop("name_taken");
      return this.error(
        from,
        ErrorCode.NAME_TAKEN,
        T.REGISTER,
        `name "${m.name}" is taken in room "${m.room}"`,
        out,
        m.nonce,
      );
    }
    // The same key under a new session id (restart, roaming): the new session replaces the old.
    if (live && live.id !== m.id) this.remove(live, now, out, "replaced by a new session");
    const room = this.rooms.get(m.room);
    const isNew = !rec;
    let moved = false;
    if (!rec) {
      if (this.byId.size >= this.cfg.maxPeers) {
        this.warn("full", "server is full (--max-peers)", now, out);
        return this.error(from, ErrorCode.SERVER_FULL, T.REGISTER, "server is full", out, m.nonce);
      }
      if (!room && this.rooms.size >= this.cfg.maxRooms) {
        this.warn("rooms", "too many rooms (--max-rooms)", now, out);
        return this.error(from, ErrorCode.SERVER_FULL, T.REGISTER, "too many rooms", out, m.nonce);
      }
      if (room && room.size >= this.cfg.maxMembersPerRoom) {
        return this.error(
          from,
          ErrorCode.ROOM_FULL,
          T.REGISTER,
          `room "${m.room}" is full`,
          out,
          m.nonce,
        );
      }
      rec = {
        id: m.id,
        token: toHex(this.random(8)),
        name: m.name,
        room: m.room,
        key: m.key,
        public: from,
        locals: m.locals,
        lastSeen: now,
        relay: new Bucket(this.cfg.relayBytesPerSec, this.cfg.relayBytesPerSec * 4, now),
        regNonce: m.nonce,
        connects: new Bucket(CONNECT_RATE, CONNECT_BURST, now),
      };
      this.byId.set(rec.id, rec);
      let r = this.rooms.get(m.room);
      if (!r) this.rooms.set(m.room, r = new Map());
      r.set(rec.name, rec);
      this.bindings.set(bindKey, { key: keyHex, holder: rec.id, releasedAt: 0 });
      this.released.delete(bindKey);
      if (this.bindings.size > this.cfg.maxNameBindings) this.forgetOldBindings();
      this.stats.registered++;
      out.push({
        type: "log",
        level: "info",
        message: `${rec.name} joined ${rec.room} from ${addrKey(from)}`,
      });
    } else {
      moved = !sameAddr(rec.public, from);
      rec.public = from;
      rec.locals = m.locals;
      this.touch(rec, now);
      rec.regNonce = m.nonce;
    }
    this.welcome(rec, m.nonce, from, out);
    // A re-registration from a new address is news too: peers must learn the new public address.
    if (isNew || moved) this.announce(rec, out);
  }

  /** REGISTER_OK (echoing `nonce`) and the rest of the member list, in pages. */
  private welcome(rec: Rec, nonce: string, from: Addr, out: ServerAction[]): void {
    const others = [...this.rooms.get(rec.room)!.values()].filter((r) => r !== rec).map(member);
    const [first, ...rest] = pages(others);
    const reply: Message = {
      type: "register_ok",
      id: rec.id,
      nonce,
      token: rec.token,
      public: from,
      keepaliveMs: this.cfg.keepaliveMs,
      total: others.length,
      members: first!,
    };
    out.push({ type: "send", to: from, bytes: encode(reply) });
    for (const page of rest) {
      const p: Message = { type: "members", token: rec.token, total: others.length, members: page };
      out.push({ type: "send", to: from, bytes: encode(p) });
    }
  }

  private announce(rec: Rec, out: ServerAction[]): void {
    const m = member(rec);
    for (const o of this.rooms.get(rec.room)?.values() ?? []) {
      if (o === rec) continue;
      out.push({
        type: "send",
        to: o.public,
        bytes: encode({ type: "peer_joined", token: o.token, member: m }),
      });
    }
  }

  /**
   * The member `id`, if `token` is its registration token. A right token from a new address
   * means the peer's NAT rebound or it roamed: follow it and tell the room.
   */
  private authed(id: Id, token: string, from: Addr, now: number): Rec | undefined {
    const r = this.byId.get(id);
    if (!r || r.token !== token) {
      this.stats.drop("unauthenticated");
      return undefined;
    }
    if (!sameAddr(r.public, from)) {
      // A new address must be proven (REGISTER with a cookie) before the room is told to send
      // to it; a token alone would let its holder aim the room's hole punching at anyone.
      this.stats.drop("unproven_address");
      return undefined;
    }
    this.touch(r, now);
    return r;
  }

  /** ERROR 4, "register again", echoing the request's token; never larger than the request. */
  private unknown(from: Addr, about: number, token: string, got: number, out: ServerAction[]) {
    this.small(
      from,
      encode({ type: "error", code: ErrorCode.UNKNOWN_PEER, about, token, text: "" }),
      got,
      out,
    );
  }

  private keepalive(
    m: Extract<Message, { type: "keepalive" }>,
    got: number,
    from: Addr,
    now: number,
    out: ServerAction[],
  ): void {
    const rec = this.authed(m.id, m.token, from, now);
    if (!rec) return this.unknown(from, T.KEEPALIVE, m.token, got, out);
    out.push({
      type: "send",
      to: from,
      bytes: encode({ type: "keepalive_ack", id: m.id, token: m.token, public: from }),
    });
  }

  /**
   * Sender and target of a peer-to-peer request: the sender must hold its token, the target
   * must be in the sender's room. Otherwise answers with the error and returns undefined.
   */
  private route(
    fromId: Id,
    token: string,
    to: Id,
    about: number,
    got: number,
    from: Addr,
    now: number,
    out: ServerAction[],
  ): [Rec, Rec] | undefined {
    const src = this.authed(fromId, token, from, now);
    if (!src) return void this.unknown(from, about, token, got, out);
    const dst = this.byId.get(to);
    if (!dst || dst.room !== src.room) {
      return void this.error(from, ErrorCode.NO_SUCH_PEER, about, to, out, token);
    }
    return [src, dst];
  }

  private connect(
    m: Extract<Message, { type: "connect" }>,
    got: number,
    from: Addr,
    now: number,
    out: ServerAction[],
  ): void {
    const ends = this.route(m.from, m.token, m.to, T.CONNECT, got, from, now, out);
    if (!ends) return;
    const [src, dst] = ends;
    if (!src.connects.take(1, now)) {
      this.stats.drop("connect_rate");
      return this.warn(
        `connect:${src.id}`,
        `connect rate limit hit by ${src.name} in ${src.room}`,
        now,
        out,
      );
    }
    out.push({
      type: "send",
      to: dst.public,
      bytes: encode({
        type: "connect_fwd",
        token: dst.token,
        member: member(src),
        nonce: m.nonce,
      }),
    });
  }

  private relay(
    m: Extract<Message, { type: "relay" }>,
    got: number,
    from: Addr,
    now: number,
    out: ServerAction[],
  ): void {
    const ends = this.route(m.from, m.token, m.to, T.RELAY, got, from, now, out);
    if (!ends) return;
    const [src, dst] = ends;
    if (!src.relay.take(m.payload.length, now)) {
      this.stats.drop("relay_rate");
      return this.warn(
        `relay:${src.id}`,
        `relay rate limit hit by ${src.name} in ${src.room}`,
        now,
        out,
      );
    }
    this.stats.relayedPackets++;
    this.stats.relayedBytes += m.payload.length;
    out.push({
      type: "send",
      to: dst.public,
      bytes: encode({ type: "relayed", token: dst.token, from: src.id, payload: m.payload }),
    });
  }

  /** Drops released bindings, oldest first, until under the cap (held ones stay). */
  private forgetOldBindings(): void {
    for (const [k, b] of this.bindings) {
      if (this.bindings.size <= this.cfg.maxNameBindings) return;
      if (b.holder === null) {
        this.bindings.delete(k);
        this.released.delete(k);
        this.stats.bindingsEvicted++;
      }
    }
  }

  private remove(r: Rec, now: number, out: ServerAction[], why: string): void {
    this.byId.delete(r.id);
    const room = this.rooms.get(r.room);
    if (room?.get(r.name) === r) room.delete(r.name);
    if (room && room.size === 0) this.rooms.delete(r.room);
    const bindKey = `${r.room}\0${r.name}`;
    const b = this.bindings.get(bindKey);
    if (b && b.holder === r.id) {
      b.holder = null;
      b.releasedAt = now;
      this.released.set(bindKey, b);
    }
    out.push({ type: "log", level: "info", message: `${r.name} left ${r.room} (${why})` });
    for (const o of room?.values() ?? []) {
      const bytes = encode({ type: "peer_left", token: o.token, id: r.id, name: r.name });
      out.push({ type: "send", to: o.public, bytes });
    }
  }
}

function member(r: Rec): Member {
  return { id: r.id, name: r.name, public: r.public, locals: r.locals, key: r.key };
}
