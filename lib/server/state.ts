/**
 * The rendezvous server as a state machine: `handle(datagram, from, now, out)` and
 * `tick(now, out)` push actions into `out`; the socket loop in server.ts carries them out.
 * The caller passes one reused `out` array so the hot path allocates nothing for it.
 * `nextDeadline(now)` says when `tick` next has work, so the host sleeps until then.
 * Time never runs backwards here: an earlier `now` than one already seen counts as that one.
 *
 * Abuse resistance: to a source that has not echoed a cookie, the server never answers with
 * more bytes than it received (STUN Binding responses excepted, as in coturn: a fixed size of at
 * most 64 bytes for IPv4, see stun.ts); registrations
 * must prove the key (Ed25519 signature) and the address (cookie); later requests carry a
 * per-registration token only the registered address ever received.
 *
 * Who is registered lives in registry.ts, who may register in admission.ts.
 */
import { type Addr, addrKey, sameAddr } from "../wire/addr.ts";
import { equalText, toHex } from "../wire/bytes.ts";
import {
  decode,
  encode,
  ErrorCode,
  type Id,
  looksLikeP2p,
  MAX_LOCALS,
  MAX_SEND,
  type Member,
  memberSize,
  type Message,
  NO_TOKEN,
  relayedKind,
  T,
} from "../wire/codec.ts";
import { validName } from "../wire/names.ts";
import { HEADER_LEN, ID_LEN, MAX_DATAGRAM, TOKEN_LEN } from "../wire/sizes.ts";
import { looksLikeStun } from "../stun/codec.ts";
import { answerStun, PRIMARY_ONLY, type StunLayout, type StunSocket } from "./stun.ts";
import {
  CONNECT_BURST,
  CONNECT_RATE,
  DEFAULT_SERVER_CONFIG,
  RELAY_BURST_S,
  RELAY_MIN_CHARGE,
  type ServerConfig,
} from "./config.ts";
import { Admission, type Refusal } from "./admission.ts";
import { proofVerifier } from "../crypto/room.ts";
import { isGlobalV6, isLanAddress } from "./ip.ts";
import { memberOf, type Rec, Registry } from "./registry.ts";
import { Bucket, LogLimiter } from "./limits.ts";

export { DEFAULT_SERVER_CONFIG, type ServerConfig } from "./config.ts";
export { limitKey } from "./ip.ts";

export type ServerAction =
  /** `socket`: which STUN socket sends it (lib/server/stun.ts); absent means the primary. */
  | { type: "send"; to: Addr; bytes: Uint8Array; socket?: StunSocket }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string };

type Register = Extract<Message, { type: "register" }>;
type Forwarded = Extract<Message, { type: "connect" | "relay" }>;

/** Counters the operator can read; every dropped datagram lands in exactly one `drop_*`. */
export class ServerStats {
  received = 0;
  stun = 0;
  registered = 0;
  relayedPackets = 0;
  relayedBytes = 0;
  /** Announced local addresses not passed on (not LAN nor global IPv6, repeated, too many). */
  localsRefused = 0;
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

/** What a RELAY may carry: a whole peer datagram of the kinds peers exchange (docs/PROTOCOL.md). */
function relayable(payload: Uint8Array): boolean {
  // Header and length only: no decode (and no copies) per relayed datagram.
  return relayedKind(payload) !== null;
}

/** The locals of every member that announced none: one shared array, never changed. */
const NO_LOCALS: Addr[] = [];
/** What RELAYED adds to the datagram it carries: header, token, sender id. */
const RELAYED_OVERHEAD = HEADER_LEN + TOKEN_LEN + ID_LEN;

/**
 * Global IPv6 locals passed on per member, at most. The server cannot check that they are the
 * member's own, and every member of the room probes them, so a member could aim the room's
 * probes at any IPv6 host: few addresses (here) and few probes (peers drop one that goes a
 * punch window unanswered, lib/peer/path.ts) bound that. Two: a host with two prefixes.
 */
export const MAX_GLOBAL_V6_LOCALS = 2;

/** Whether `m` registers exactly what `r` is (maybe from elsewhere): same name, room and key. */
const sameMember = (r: Rec, m: Register) =>
  r.name === m.name && r.room === m.room && r.keyHex === toHex(m.key);

export class ServerState {
  readonly stats = new ServerStats();
  private registry: Registry;
  private admission: Admission;
  private logs = new LogLimiter();
  /** The latest `now` seen; see `clock`. */
  private last = -Infinity;
  /**
   * Where the STUN sockets are bound (the host sets it once they are): decides which socket
   * answers a CHANGE-REQUEST and whether answers carry the RFC 5780 attributes.
   */
  stunLayout: StunLayout = PRIMARY_ONLY;

  constructor(
    readonly cfg: ServerConfig = DEFAULT_SERVER_CONFIG,
    private random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n)),
  ) {
    this.registry = new Registry(cfg);
    this.admission = new Admission(cfg, random(32));
  }

  get peerCount(): number {
    return this.registry.size;
  }

  /** `now`, never earlier than before: the registry's expiry order relies on it. */
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
      case "relay":
        return this.forward(m, b.length, from, now, out);
      default:
        this.stats.drop("unexpected_type");
    }
  }

  /**
   * A datagram on one of the STUN-only sockets (1-3, see lib/server/stun.ts): Binding requests
   * are answered, everything else is dropped; p2pchat lives on the primary socket alone.
   */
  handleStunOnly(b: Uint8Array, from: Addr, via: StunSocket, t: number, out: ServerAction[]): void {
    this.clock(t);
    this.stats.received++;
    if (!looksLikeStun(b)) return this.stats.drop("not_stun_on_stun_socket");
    this.stun(b, from, out, via);
  }

  /**
   * Expires members that stopped sending keepalives, and name bindings past their time: all
   * whose deadline (see nextDeadline) is `now` or earlier.
   */
  tick(t: number, out: ServerAction[]): void {
    const now = this.clock(t);
    for (const r of this.registry.silent(now)) this.remove(r, now, out, "timed out");
    this.registry.expireNames(now);
  }

  /**
   * The earliest time at which `tick` has work (a member falls silent for too long, a released
   * name's TTL ends), or null when nothing is pending. May be `now` or earlier: tick at once.
   */
  nextDeadline(t: number): number | null {
    this.clock(t);
    return this.registry.nextDeadline();
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

  private stun(b: Uint8Array, from: Addr, out: ServerAction[], via: StunSocket = 0): void {
    const a = answerStun(b, from, via, this.stunLayout);
    if (!a.ok) return this.stats.drop(a.reason);
    this.stats.stun++;
    // A fixed size whatever the request (32-64 bytes for IPv4): the one exception to `small`.
    out.push(
      a.socket === 0
        ? { type: "send", to: from, bytes: a.bytes }
        : { type: "send", to: from, bytes: a.bytes, socket: a.socket },
    );
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

  /**
   * REGISTER, in order: prove the address (cookie) → answer a resend as before → rate →
   * prove the key → valid name and room → the room's secret, if locked → the id is free or
   * ours → the name is free or ours → room for a newcomer (or at the new source IP, for a
   * member moving) → join (or move).
   */
  private register(m: Register, got: number, from: Addr, now: number, out: ServerAction[]): void {
    /** ERROR about this REGISTER, echoing its nonce; `drop` counts it under that reason. */
    const refuse = (code: ErrorCode, text: string, drop?: string) => {
      if (drop) this.stats.drop(drop);
      this.error(from, code, T.REGISTER, text, out, m.nonce);
    };
    if (!this.admission.addressProven(m, from, now)) {
      // Prove the address first: the cookie reply is smaller than any REGISTER.
      if (m.cookie.length > 0) this.stats.drop("stale_cookie");
      const cookie = this.admission.cookie(from, now);
      return this.small(from, encode({ type: "cookie", nonce: m.nonce, cookie }), got, out);
    }
    const again = this.registry.get(m.id);
    if (
      again && again.regNonce === m.nonce && sameAddr(again.public, from) && sameMember(again, m)
    ) {
      // A resend of a REGISTER we accepted (our answer was lost): answer again, no new work.
      this.registry.touch(again, now);
      return this.welcome(again, m.nonce, from, out);
    }
    if (!this.admission.withinRate(from, now)) {
      this.stats.drop("registration_rate");
      return this.warn(
        `rate:${from.host}`,
        `registration rate limit hit by ${from.host}`,
        now,
        out,
      );
    }
    // From here on the source address is proven: full-size replies are fine.
    if (!this.admission.keyProven(m)) {
      return refuse(ErrorCode.BAD_SIGNATURE, "bad signature", "bad_signature");
    }
    if (!validName(m.name)) return refuse(ErrorCode.BAD_NAME, `invalid name "${m.name}"`);
    if (!validName(m.room)) return refuse(ErrorCode.BAD_ROOM, `invalid room "${m.room}"`);
    // Before anything about ids, names or members: a stranger to a locked room learns nothing.
    const locked = this.admission.roomLock(this.registry, m, from, now);
    if (locked) {
      if (locked.warn) this.warn(...locked.warn, now, out);
      return refuse(locked.code, locked.text, "wrong_room_secret");
    }
    const keyHex = toHex(m.key);
    let rec = this.registry.get(m.id);
    // Ids are in every member list: holding one must not let another key take it over.
    if (rec && rec.keyHex !== keyHex) {
      return refuse(ErrorCode.ID_TAKEN, "session id is in use by another key", "id_taken");
    }
    if (rec && !sameMember(rec, m)) {
      this.remove(rec, now, out, "re-registered");
      rec = undefined;
    }
    const owner = this.registry.owner(m.room, m.name, now);
    if (owner && owner.key !== keyHex) {
      return refuse(
        ErrorCode.NAME_TAKEN,
        `name "${m.name}" is taken in room "${m.room}"`,
        "name_taken",
      );
    }
    // The same key under a new session id (restart, roaming): the new session replaces the old.
    if (owner?.holder && owner.holder.id !== m.id) {
      this.remove(owner.holder, now, out, "replaced by a new session");
    }
    const full = this.caps(m, keyHex, rec, owner === undefined, from, now);
    if (full) {
      if (full.warn) this.warn(...full.warn, now, out);
      return refuse(full.code, full.text);
    }
    if (rec) this.move(rec, m, from, now, out);
    else this.join(m, keyHex, from, now, out);
  }

  /**
   * Why a registration does not fit, or null. A member moving (`rec`) needs room at its new
   * source IP; a newcomer needs room on the server, in the room, for its IP and key, and,
   * when its name is not bound yet (`newName`), in the name table.
   */
  private caps(
    m: Register,
    keyHex: string,
    rec: Rec | undefined,
    newName: boolean,
    from: Addr,
    now: number,
  ): Refusal | null {
    if (rec) return this.admission.roomToMove(this.registry, rec.public, from);
    const full = this.admission.capacity(this.registry, m.room, keyHex, from);
    if (full || !newName) return full;
    this.registry.expireNames(now); // a name past its TTL must not take up room
    return this.admission.nameCapacity(this.registry, from);
  }

  /**
   * The announced local addresses worth passing on: LAN addresses (see isLanAddress) and at
   * most MAX_GLOBAL_V6_LOCALS global IPv6 ones (isGlobalV6), each once, at most MAX_LOCALS.
   * Public IPv4 never: a member must not aim a room's probes at the IPv4 internet.
   */
  private lanOnly(locals: Addr[]): Addr[] {
    if (locals.length === 0) return NO_LOCALS;
    const kept: Addr[] = [];
    let global6 = 0;
    for (const a of locals) {
      const g = !isLanAddress(a.host) && isGlobalV6(a.host);
      const ok = (isLanAddress(a.host) || (g && global6 < MAX_GLOBAL_V6_LOCALS)) &&
        kept.length < MAX_LOCALS && !kept.some((k) => sameAddr(k, a));
      if (!ok) {
        this.stats.localsRefused++;
        continue;
      }
      if (g) global6++;
      kept.push(a);
    }
    return kept.length > 0 ? kept : NO_LOCALS;
  }

  /** A new member: added, welcomed, announced to the room. */
  private join(m: Register, keyHex: string, from: Addr, now: number, out: ServerAction[]): void {
    const rec: Rec = {
      id: m.id,
      token: toHex(this.random(8)),
      name: m.name,
      room: m.room,
      keyHex,
      public: from,
      locals: this.lanOnly(m.locals),
      lastSeen: now,
      regNonce: m.nonce,
    };
    this.registry.add(rec, m.proof && proofVerifier(m.proof));
    this.stats.registered++;
    out.push({
      type: "log",
      level: "info",
      message: `${rec.name} joined ${rec.room} from ${addrKey(from)}`,
    });
    this.welcome(rec, m.nonce, from, out);
    this.announce(rec, out);
  }

  /** A member registering again (new nonce, maybe a new address): the room hears of a move. */
  private move(rec: Rec, m: Register, from: Addr, now: number, out: ServerAction[]): void {
    const moved = !sameAddr(rec.public, from);
    this.registry.relocate(rec, from);
    rec.locals = this.lanOnly(m.locals);
    rec.regNonce = m.nonce;
    this.registry.touch(rec, now);
    this.welcome(rec, m.nonce, from, out);
    // Peers must learn the new public address.
    if (moved) this.announce(rec, out);
  }

  /** REGISTER_OK (echoing `nonce`) and the rest of the member list, in pages. */
  private welcome(rec: Rec, nonce: string, from: Addr, out: ServerAction[]): void {
    const others = [...this.registry.members(rec.room)].filter((r) => r !== rec).map(memberOf);
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
    const m = memberOf(rec);
    for (const o of this.registry.members(rec.room)) {
      if (o === rec) continue;
      out.push({
        type: "send",
        to: o.public,
        bytes: encode({ type: "peer_joined", token: o.token, member: m }),
      });
    }
  }

  /**
   * The member `id`, if `token` is its registration token and it comes from the registered
   * address. A new address must be proven by a REGISTER with a cookie first.
   */
  private authed(id: Id, token: string, from: Addr, now: number): Rec | undefined {
    const r = this.registry.get(id);
    // Constant time: how much of a guess matches must not show in how long the answer takes.
    if (!r || !equalText(token, r.token)) {
      this.stats.drop("unauthenticated");
      return undefined;
    }
    if (!sameAddr(r.public, from)) {
      // A token alone would let its holder aim the room's hole punching at anyone.
      this.stats.drop("unproven_address");
      return undefined;
    }
    this.registry.touch(r, now);
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
   * CONNECT and RELAY, one path: route (the sender holds its token, the target is in its
   * room) → limit (the sender's CONNECT or relay allowance) → forward to the target (a RELAY
   * only with a HELLO, HELLO_ACK or SEALED payload).
   */
  private forward(m: Forwarded, got: number, from: Addr, now: number, out: ServerAction[]): void {
    const about = m.type === "connect" ? T.CONNECT : T.RELAY;
    const src = this.authed(m.from, m.token, from, now);
    if (!src) return this.unknown(from, about, m.token, got, out);
    const dst = this.registry.get(m.to);
    if (!dst || dst.room !== src.room) {
      return this.error(from, ErrorCode.NO_SUCH_PEER, about, m.to, out, m.token);
    }
    const allowed = m.type === "connect"
      ? (src.connects ??= new Bucket(CONNECT_RATE, CONNECT_BURST, now)).take(1, now)
      : (src.relay ??= new Bucket(
        this.cfg.relayBytesPerSec,
        this.cfg.relayBytesPerSec * RELAY_BURST_S,
        now,
      )).take(Math.max(RELAY_MIN_CHARGE, m.payload.length), now);
    if (!allowed) {
      this.stats.drop(`${m.type}_rate`);
      const what = `${m.type} rate limit hit by ${src.name} in ${src.room}`;
      return this.warn(`${m.type}:${src.id}`, what, now, out);
    }
    // Only peer traffic travels the relay (charged all the same: junk uses up the allowance).
    if (m.type === "relay" && !relayable(m.payload)) return this.stats.drop("relay_payload");
    let fwd: Message;
    if (m.type === "connect") {
      fwd = { type: "connect_fwd", token: dst.token, member: memberOf(src), nonce: m.nonce };
    } else {
      // A WebSocket member takes frames of MAX_DATAGRAM at most (its side of the path MTU
      // search then sees the probe lost and stays at one fragment per DATA).
      if (dst.public.tcp && m.payload.length + RELAYED_OVERHEAD > MAX_DATAGRAM) {
        return this.stats.drop("relay_too_big_for_ws");
      }
      this.stats.relayedPackets++;
      this.stats.relayedBytes += m.payload.length;
      fwd = { type: "relayed", token: dst.token, from: src.id, payload: m.payload };
    }
    out.push({ type: "send", to: dst.public, bytes: encode(fwd) });
  }

  /** Removes `r` and tells the rest of its room. */
  private remove(r: Rec, now: number, out: ServerAction[], why: string): void {
    this.registry.remove(r, now);
    out.push({ type: "log", level: "info", message: `${r.name} left ${r.room} (${why})` });
    for (const o of this.registry.members(r.room)) {
      const bytes = encode({ type: "peer_left", token: o.token, id: r.id, name: r.name });
      out.push({ type: "send", to: o.public, bytes });
    }
  }
}
