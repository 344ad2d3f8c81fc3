/**
 * The peer: demultiplexes datagrams between the registration with the server and one
 * PathMachine, Sender/Receiver and Noise session per remote peer, glues handshakes to paths,
 * and offers the chat API. Sans-IO: every entry point takes the time and appends actions to the
 * caller's array; `nextDeadline` says when `tick` next has work, so the host can sleep until
 * then. lib/net/peer_host.ts carries the actions out on a real socket.
 */
import { type Addr, addrKey, formatAddr, sameAddr } from "../wire/addr.ts";
import { toHex } from "../wire/bytes.ts";
import {
  decode,
  encode,
  ErrorCode,
  type Id,
  looksLikeP2p,
  MAGIC,
  type Member,
  type Message,
  type NatMapping,
  T,
  VERSION,
} from "../wire/codec.ts";
import { DEFAULT_PATH_CONFIG, type PathAction, type PathConfig, PathMachine } from "./path.ts";
import {
  coalesce,
  DEFAULT_DELIVERY_CONFIG,
  type DeliveryConfig,
  MAX_MESSAGE,
  type Received,
  Receiver,
  Sender,
  type TxEvent,
  unmerge,
} from "./delivery.ts";
import {
  dataSize,
  encodedWithin,
  fragsWithin,
  type MtuConfig,
  PeerMtu,
  probePad,
  RELAY_WRAP,
  RELAYED_WRAP,
} from "./pmtu.ts";
import { MTU_PROBE_MIN } from "../wire/sizes.ts";
import type { PeerEvent } from "./events.ts";
import { type SecureConfig, type SecureDrop, SecureLayer } from "./secure.ts";
import type { KeyPair } from "../crypto/keys.ts";
import type { RoomKeys } from "../crypto/room.ts";
import { memoryTrust, type TrustStore } from "../identity/known_peers.ts";
import { type AgentAction, earliest } from "./actions.ts";
import { Registration } from "./registration.ts";
import { checkMac1, mac1Key, withMac1 } from "./mac1.ts";
import { Bucket } from "../rate/bucket.ts";
import { type Remote, Roster } from "./roster.ts";
import { type BirthdayConfig, DEFAULT_BIRTHDAY_CONFIG } from "./birthday.ts";
import { HardNat } from "./hard_nat.ts";
import { DEFAULT_TCP_PUNCH_CONFIG, type TcpPunchConfig } from "./tcp_punch.ts";

export type { AgentAction } from "./actions.ts";

export interface AgentConfig {
  name: string;
  room: string;
  server: Addr;
  locals: Addr[];
  /** Our identity: the Ed25519 public key the server binds our name to, and its signer. */
  identity: {
    key: Uint8Array;
    sign: (msg: Uint8Array) => Uint8Array;
    /** X25519 static key pair for Noise, derived from the Ed25519 identity. */
    staticKey: KeyPair;
  };
  /**
   * A locked room's keys (lib/crypto/room.ts, from its secret): registrations prove the secret
   * to the server, handshakes are IKpsk1 with its psk. Absent for an open room.
   */
  roomKeys?: RoomKeys;
  /** Where peer keys are pinned; defaults to memory only. */
  trust?: TrustStore;
  /** Keepalive interval towards the server; the server may ask for a shorter one. */
  keepaliveMs: number;
  /** How long the first registration may go unanswered before we give up. */
  registerTimeoutMs: number;
  registerRetryMs: number;
  path: PathConfig;
  delivery: DeliveryConfig;
  /** Session lifetimes: rekey and expiry (lib/peer/secure.ts). */
  secure: Partial<SecureConfig>;
  /** Until a session is up, how often to resend the handshake through the relay. */
  relayHelloMs: number;
  /** Birthday punching towards peers behind NATs with random per-destination ports. */
  birthday: BirthdayConfig;
  /**
   * TCP hole punching after a failed punch window (lib/peer/tcp_punch.ts), through the host's
   * `tcp_open` connections; null: never (a host without TCP connections).
   */
  tcpPunch: TcpPunchConfig | null;
  /**
   * Handshake inits that need Diffie-Hellman work (copies of answered ones do not), per second
   * and burst: per claimed sender, and in all. Beyond them inits are dropped before any DH.
   */
  initRate: { perPeer: number; perPeerBurst: number; total: number; totalBurst: number };
  /** How often NAT_INFO is resent until the peer confirms it, and how many times at most. */
  natInfoRetryMs: number;
  natInfoTries: number;
  /**
   * The MTU of the link datagrams to `to` leave on (lib/net/link_mtu.ts), set by the host; for
   * the server's address, that of the transport it is reached over. DATA carries several
   * fragments only where this allows and a probe confirmed it (lib/peer/pmtu.ts).
   */
  linkMtu: (to: Addr) => number;
  /** Path MTU probing (lib/peer/pmtu.ts). */
  mtu: Partial<MtuConfig>;
  /** Randomness source (ids, nonces); injectable for tests. */
  random: (n: number) => Uint8Array;
  /** Wall clock in ms, only for handshake timestamps; injectable for tests. */
  wall: () => number;
}

export const DEFAULT_AGENT_CONFIG: Omit<
  AgentConfig,
  "name" | "room" | "server" | "locals" | "identity"
> = {
  keepaliveMs: 15_000,
  registerTimeoutMs: 5000,
  registerRetryMs: 300,
  path: DEFAULT_PATH_CONFIG,
  delivery: DEFAULT_DELIVERY_CONFIG,
  secure: {},
  relayHelloMs: 1000,
  birthday: DEFAULT_BIRTHDAY_CONFIG,
  tcpPunch: DEFAULT_TCP_PUNCH_CONFIG,
  // A peer needs a new init per rekey (2 min) or reconnect; a room of 64 joining at once is 63.
  initRate: { perPeer: 2, perPeerBurst: 8, total: 20, totalBurst: 80 },
  natInfoRetryMs: 1000,
  natInfoTries: 10,
  // Ethernet's: one fragment per DATA, unless the host knows its links better.
  linkMtu: () => 1500,
  mtu: {},
  random: (n) => crypto.getRandomValues(new Uint8Array(n)),
  wall: () => Date.now(),
};

export interface PeerInfo {
  name: string;
  id: Id;
  path: PathMachine["kind"];
  addr: string | null;
  rttMs: number | null;
  fingerprint: string;
  /** Whether the peer's key is accepted (pinned or first seen); untrusted peers get no traffic. */
  trusted: boolean;
  /** Whether an encrypted session is up. */
  secure: boolean;
  /**
   * What carries the path (set by the host): "udp", or for `relay` the server's transport; the
   * agent sets "tcp" for a direct path over a TCP connection (TCP punching).
   */
  transport?: "udp" | "ws" | "tcp";
  /** Fragments one DATA carries on the route in use (lib/peer/pmtu.ts): 1 until probed more. */
  dataFrags: number;
}

/**
 * Distinct sources one handshake init is answered from. Copies legitimately arrive from a few
 * (LAN, public, relay); a captured init replayed from many spoofed sources must not turn us
 * into a reflector.
 */
export const MAX_HELLO_SOURCES = 8;
/** How long a source counts against MAX_HELLO_SOURCES after its last handshake init. */
export const HELLO_SOURCE_TTL_MS = 60_000;

/** While a handshake goes unanswered, every this many relayed hellos also carry a CONNECT. */
export const RELAY_HELLOS_PER_CONNECT = 3;

/** Sealed payloads authenticate the 3-byte header of the datagram that carries them. */
const SEALED_AD = Uint8Array.of(MAGIC, VERSION, T.SEALED);
const HELLO_ACK_AD = Uint8Array.of(MAGIC, VERSION, T.HELLO_ACK);

const dec = new TextDecoder();

/** The way a peer's DATA goes now: its direct path's address and socket, or the relay. */
function routeKey(r: Remote): string {
  const to = r.path.sendAddr;
  return to ? `${addrKey(to)}/${r.path.via}` : "relay";
}

/** A peer's route key and what it was made from: rebuilt only when the path changes. */
interface RouteSeen {
  to: Addr | null;
  via: number;
  key: string;
}
const enc = new TextEncoder();

export class PeerAgent {
  /** Our session id at the server; a new one if the server says another key holds it. */
  id: Id;
  /** Datagrams dropped, by reason. */
  readonly drops = new Map<string, number>();
  /** When an authentic message from the server last arrived (-Infinity: never). */
  serverHeardAt = -Infinity;
  private msgNo = 0;
  /** The caller's action array for the call in progress. */
  private out: AgentAction[] = [];
  private reg: Registration;
  private readonly roster: Roster;
  private secure: SecureLayer;
  /** Our mac1 key: what a HELLO to us must be MACed with. */
  private readonly mac1: Uint8Array;
  /** Inits that need DH work, over all peers (see AgentConfig.initRate). */
  private readonly inits: Bucket;
  private readonly peerInits = new Map<Id, Bucket>();
  private readonly hard: HardNat;
  /** Where each peer's DATA_ACKs go: the way its latest DATA came (null: the relay). */
  /** Relayed hellos sent to each peer while no session is up (see relayHello). */
  private readonly relayHellos = new WeakMap<Remote, number>();
  private readonly ackRoutes = new WeakMap<Remote, { to: Addr | null; via: number }>();
  /** The route each peer's DATA took last (see flush): a change starts the Sender over. */
  private readonly dataRoutes = new WeakMap<Remote, RouteSeen>();
  /** Each peer's path MTU searches, made when it first has several fragments to send. */
  private readonly mtu = new WeakMap<Remote, PeerMtu>();

  constructor(readonly cfg: AgentConfig) {
    this.id = toHex(cfg.random(8));
    this.reg = new Registration({ ...cfg, id: this.id }, this.nonce);
    this.roster = new Roster(cfg.trust ?? memoryTrust(), (m) => ({
      path: new PathMachine(m, cfg.path, this.nonce),
      tx: new Sender(cfg.delivery),
      rx: new Receiver(),
    }));
    this.secure = this.newSecure();
    this.mac1 = mac1Key(cfg.identity.staticKey.publicKey);
    this.inits = new Bucket(cfg.initRate.total, cfg.initRate.totalBurst, 0);
    this.hard = new HardNat(cfg, {
      selfId: () => this.id,
      toPeer: (r, m, now, to, via) => this.toPeer(r, m, now, to, via),
      pathActions: (r, acts, now) => this.pathActions(r, acts, now),
      push: (a) => this.out.push(a),
      log: (level, message) => this.log(level, message),
      drop: (reason) => this.drop(reason),
      hasSession: (r) => this.secure.hasSession(r.member.id),
      remotes: () => this.roster.all(),
      nonce: this.nonce,
    });
  }

  private newSecure(): SecureLayer {
    return new SecureLayer(
      {
        staticKey: this.cfg.identity.staticKey,
        sessionId: this.id,
        roomPsk: this.cfg.roomKeys?.psk,
      },
      this.cfg.secure,
      this.cfg.random,
    );
  }

  /**
   * Another key registered our session id first (ids are public: someone raced us for it after
   * a server restart, say). Start over under a fresh id: peers see us leave and come back.
   */
  private newId(now: number): void {
    for (const r of [...this.roster.all()]) this.removeRemote(r.member.id);
    this.id = toHex(this.cfg.random(8));
    this.reg = new Registration({ ...this.cfg, id: this.id }, this.nonce);
    this.secure = this.newSecure();
    this.log("warn", "our session id is held by another key; registering under a new one");
    this.reg.start(now, this.out);
  }

  // --- The host's entry points ---------------------------------------------------------------

  start(now: number, out: AgentAction[]): void {
    this.with(out, () => this.reg.start(now, out));
  }

  /** A datagram from socket `via` (0: the main one). */
  handle(b: Uint8Array, from: Addr, now: number, out: AgentAction[], via = 0): void {
    this.with(out, () => {
      if (this.reg.closed) return;
      if (!looksLikeP2p(b)) return this.drop("unknown_protocol");
      const d = decode(b);
      if (!d.ok) return this.drop(d.reason);
      if (sameAddr(from, this.cfg.server)) {
        // The server talks to our main socket only.
        if (via !== 0) return this.drop("server_on_extra_socket");
        this.fromServer(d.value, now);
      } else {
        this.fromPeer(d.value, from, now, null, via);
      }
      this.flush(now);
    });
  }

  /** Does whatever is due at `now`; call it at (or after) `nextDeadline`. */
  tick(now: number, out: AgentAction[]): void {
    this.with(out, () => {
      if (this.reg.closed) return;
      this.reg.tick(now, out);
      if (this.reg.closed) return;
      for (const r of this.roster.all()) {
        if (!r.trusted) continue;
        this.pathActions(r, r.path.tick(now), now);
        this.hard.tick(r, now);
        r.rx.tick(now);
      }
      this.secureTick(now);
      this.flush(now);
    });
  }

  /**
   * The earliest time `tick` has work, or null for "only when a datagram or the user arrives".
   * An idle peer with direct paths wakes only for its keepalives (and rekeys).
   */
  nextDeadline(now: number): number | null {
    if (this.reg.closed) return null;
    let at = earliest(this.reg.nextDeadline(), this.secure.nextDeadline(now));
    for (const r of this.roster.all()) {
      if (!r.trusted) continue;
      at = earliest(at, r.path.nextDeadline());
      const session = this.secure.hasSession(r.member.id);
      // Without a session fragments wait for one (`flush` skips them), so they set no deadline.
      if (session) at = earliest(at, r.tx.nextDeadline());
      else if (this.wantsRelayHello(r)) at = earliest(at, r.nextRelayHello);
      at = earliest(at, this.hard.nextDeadline(r));
      at = earliest(at, r.rx.nextDeadline());
      if (session) at = earliest(at, r.tx.floorDeadline());
      if (session) at = earliest(at, this.mtu.get(r)?.current?.nextDeadline() ?? null);
    }
    return at;
  }

  /**
   * What we know of our own NAT: its mapping behaviour (from discovery) and addresses our
   * gateway mapped for us. Told to every peer (sealed NAT_INFO), now and whenever it changes.
   */
  setNat(nat: { mapping: NatMapping; mapped: Addr[] }, now: number, out: AgentAction[]): void {
    this.with(out, () => {
      this.hard.setNat(nat, now);
      this.flush(now);
    });
  }

  /**
   * Server traffic now takes another transport (lib/peer/server_link.ts): register again from
   * the new address. `udpLost`: UDP stopped getting through, so direct UDP paths are gone too.
   */
  transportChanged(udpLost: boolean, now: number, out: AgentAction[]): void {
    this.with(out, () => {
      this.reg.restart(now, out);
      if (udpLost) {
        for (const r of this.roster.all()) {
          // A path over a TCP connection (TCP punching) does not depend on UDP. The route to
          // the server may be what broke while the peer is still reachable: probe each UDP
          // path at once and give up only those that do not answer (PathMachine.suspect).
          if (r.trusted && !r.path.addr?.tcp) this.pathActions(r, r.path.suspect(now), now);
        }
      }
      this.flush(now);
    });
  }

  /**
   * A TCP connection the agent asked for (`tcp_open`) came up, or failed or closed (each
   * connection reports `closed` once, last; not after a `tcp_close`).
   */
  onTcp(via: number, state: "open" | "closed", now: number, out: AgentAction[]): void {
    this.with(out, () => {
      if (this.reg.closed) return;
      this.hard.onTcp(via, state, now);
      this.flush(now);
    });
  }

  /** Leaves: tells the server and stops. */
  leave(out: AgentAction[]): void {
    this.with(out, () => this.reg.leave(out));
  }

  /** Birthday attempts so far, and how each ended, for /peers and tests. */
  birthdays(): { peer: string; role: string; probes: number; active: boolean }[] {
    return this.hard.attempts();
  }

  // --- The chat API ----------------------------------------------------------------------------

  /** Sends `text` to everyone in the room. */
  say(text: string, now: number, out: AgentAction[]): void {
    this.with(out, () => {
      const bytes = this.checkSize(text);
      if (!bytes) return;
      if (this.roster.size === 0) {
        return this.emit({
          type: "error",
          message: `Cannot send: nobody else is in room "${this.cfg.room}"`,
        });
      }
      const no = ++this.msgNo;
      for (const r of this.roster.all()) if (r.trusted) r.tx.send(no, bytes, false, now);
      this.flush(now);
    });
  }

  /** Sends `text` to one peer. */
  msg(name: string, text: string, now: number, out: AgentAction[]): void {
    this.with(out, () => {
      const bytes = this.checkSize(text);
      if (!bytes) return;
      const r = this.roster.named(name);
      if (!r) {
        return this.emit({
          type: "error",
          message: `Cannot send to ${name}: no such peer in the room`,
        });
      }
      if (!r.trusted) {
        return this.emit({
          type: "error",
          message: `Cannot send to ${name}: its key changed; check it, then /trust ${name}`,
        });
      }
      r.tx.send(++this.msgNo, bytes, true, now);
      this.flush(now);
    });
  }

  /**
   * Accepts `name`'s current key after it changed from the pinned one (`/trust NAME`): pins it
   * and starts connecting.
   */
  trustPeer(name: string, now: number, out: AgentAction[]): void {
    this.with(out, () => {
      const r = this.roster.named(name);
      if (!r) {
        this.emit({ type: "error", message: `Cannot trust ${name}: no such peer in the room` });
      } else if (r.trusted) {
        this.emit({ type: "error", message: `${name} is already trusted (${r.fingerprint})` });
      } else {
        this.roster.pin(r);
        this.connect(r, now);
        this.log("warn", `now trusting ${name} with key ${r.fingerprint}`);
      }
    });
  }

  peers(): PeerInfo[] {
    return [...this.roster.all()].map((r) => ({
      name: r.member.name,
      id: r.member.id,
      path: r.path.kind,
      addr: r.path.kind === "relay"
        ? formatAddr(this.cfg.server)
        : r.path.addr
        ? formatAddr(r.path.addr)
        : null,
      rttMs: r.path.rttMs,
      fingerprint: r.fingerprint,
      trusted: r.trusted,
      secure: this.secure.hasSession(r.member.id),
      ...(r.path.kind !== "relay" && r.path.addr?.tcp ? { transport: "tcp" as const } : {}),
      dataFrags: this.mtu.get(r)?.current?.frags ?? 1,
    }));
  }

  /** Drop counters of the agent and of its encryption layer, by reason. */
  stats(): Record<string, number> {
    const all: Record<string, number> = {};
    for (const [k, v] of this.drops) all[k] = v;
    for (const [k, v] of this.secure.drops) all[`secure_${k}`] = v;
    for (const r of this.roster.all()) {
      for (const [k, v] of r.rx.drops) all[`rx_${k}`] = (all[`rx_${k}`] ?? 0) + v;
    }
    return all;
  }

  /**
   * What the transport did, over all peers (for /stats): DATA sent and resent and why, window
   * cuts, duplicates received, DATA_ACKs sent, path MTU probes and black holes.
   */
  counters(): Record<string, number> {
    const c = {
      data_sent: 0,
      data_retransmitted: 0,
      fast_retransmits: 0,
      timeouts: 0,
      window_cuts: 0,
      duplicates_received: 0,
      acks_sent: 0,
      mtu_probes: 0,
      mtu_acks: 0,
      mtu_black_holes: 0,
    };
    for (const r of this.roster.all()) {
      const t = r.tx.stats;
      c.data_sent += t.sent;
      c.data_retransmitted += t.retransmitted;
      c.fast_retransmits += t.fastRetransmits;
      c.timeouts += t.timeouts;
      c.window_cuts += t.windowCuts;
      c.duplicates_received += r.rx.duplicates;
      c.acks_sent += r.rx.acksSent;
      const m = this.mtu.get(r)?.stats();
      c.mtu_probes += m?.probes ?? 0;
      c.mtu_acks += m?.acks ?? 0;
      c.mtu_black_holes += m?.blackHoles ?? 0;
    }
    return c;
  }

  /** Messages not yet acknowledged or given up on, over all peers. */
  get pending(): number {
    let n = 0;
    for (const r of this.roster.all()) n += r.tx.pending;
    return n;
  }

  get registered(): boolean {
    return this.reg.registered;
  }

  get public(): Addr | null {
    return this.reg.public;
  }

  // --- Plumbing --------------------------------------------------------------------------------

  private with(out: AgentAction[], fn: () => void): void {
    this.out = out;
    try {
      fn();
    } finally {
      this.out = [];
    }
  }

  private nonce = (): string => toHex(this.cfg.random(8));

  private send(to: Addr, m: Message, via = 0): void {
    this.sendBytes(to, encode(m), via);
  }
  private sendBytes(to: Addr, bytes: Uint8Array, via = 0): void {
    this.out.push(via === 0 ? { type: "send", to, bytes } : { type: "send", to, bytes, via });
  }
  private emit(event: PeerEvent): void {
    this.out.push({ type: "event", event });
  }
  private log(level: "debug" | "info" | "warn", message: string): void {
    this.out.push({ type: "log", level, message });
  }
  private drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }
  private verdict(reason: string | null): void {
    if (reason !== null) this.drop(reason);
  }

  private checkSize(text: string): Uint8Array | null {
    const bytes = enc.encode(text);
    if (bytes.length <= MAX_MESSAGE) return bytes;
    this.emit({
      type: "error",
      message: `Cannot send: message is ${bytes.length} bytes, the limit is ${MAX_MESSAGE}`,
    });
    return null;
  }

  private msgId(sender: Id, no: number): string {
    return `${sender.slice(0, 8)}-${no}`;
  }

  // --- The roster ------------------------------------------------------------------------------

  private learn(m: Member, now: number): Remote | null {
    const l = this.roster.learn(m);
    switch (l.kind) {
      case "bad_key":
        this.log("warn", `ignoring ${m.name}: the server announced an unusable key`);
        this.drop("bad_member_key");
        return null;
      case "mismatch":
        this.drop("member_mismatch");
        return this.roster.get(m.id) ?? null;
      case "known":
        if (l.moved) l.remote.path.setMember(l.remote.member);
        return l.remote;
      case "new": {
        if (l.replaced) this.forget(l.replaced);
        const r = l.remote;
        this.emit({ type: "peer", name: m.name, state: "joined", fingerprint: r.fingerprint });
        if (l.status === "changed") {
          // Someone else holds the name now, or the user made a new identity: refuse until told.
          this.emit({ type: "key_changed", peer: m.name, fingerprint: r.fingerprint });
          // The key_changed event is the loud part (red in the chat, on stdout with --json).
          this.log(
            "info",
            `WARNING: ${m.name}'s key is now ${r.fingerprint}, not the one pinned earlier. It ` +
              `may be someone else. Nothing is sent to or accepted from ${m.name}; if you have ` +
              `checked the new fingerprint with them, type /trust ${m.name}`,
          );
        } else {
          this.connect(r, now);
        }
        return r;
      }
    }
  }

  /** A key we accept: hand it to the encryption layer and start finding a path. */
  private connect(r: Remote, now: number): void {
    this.secure.addPeer(r.member.id, r.xPublic);
    this.pathActions(r, r.path.start(now), now);
  }

  private removeRemote(id: Id): void {
    const r = this.roster.remove(id);
    if (r) this.forget(r);
  }

  /** A remote just taken off the roster: end its session, report its messages and its leaving. */
  private forget(r: Remote): void {
    this.peerInits.delete(r.member.id);
    this.hard.forget(r);
    this.secure.removePeer(r.member.id);
    const ev: TxEvent[] = [];
    r.tx.abandon(ev);
    this.txEvents(r, ev);
    this.emit({ type: "peer", name: r.member.name, state: "left" });
  }

  // --- From the server -------------------------------------------------------------------------

  private fromServer(m: Message, now: number): void {
    const forged = this.reg.authentic(m);
    if (forged) return this.drop(forged);
    // Token- or nonce-checked: proof that the way to the server works (errors are checked below).
    if (m.type !== "error") this.serverHeardAt = now;
    switch (m.type) {
      case "cookie":
        return this.verdict(this.reg.onCookie(m.cookie, now, this.out));
      case "register_ok": {
        const got = this.reg.onRegisterOk(m, now, this.out);
        if (got !== "first" && got !== "again") return this.drop(got);
        if (got === "first") {
          this.emit({
            type: "ready",
            name: this.cfg.name,
            room: this.cfg.room,
            public: formatAddr(m.public),
            local: this.cfg.locals.map(formatAddr),
            locked: this.cfg.roomKeys !== undefined,
          });
        }
        for (const mem of m.members) if (mem.id !== this.id) this.learn(mem, now);
        return;
      }
      case "members":
        if (!this.reg.registered) return this.drop("unexpected");
        for (const mem of m.members) if (mem.id !== this.id) this.learn(mem, now);
        return;
      case "keepalive_ack":
        return this.verdict(this.reg.onKeepaliveAck(m, now));
      case "peer_joined":
        if (!this.reg.registered || m.member.id === this.id) return;
        this.learn(m.member, now);
        return;
      case "peer_left":
        return this.removeRemote(m.id);
      case "connect_fwd": {
        if (!this.reg.registered || m.member.id === this.id) return;
        const r = this.learn(m.member, now);
        if (r?.trusted) this.pathActions(r, r.path.onConnectFwd(m.member, now), now);
        return;
      }
      case "relayed": {
        const inner = decode(m.payload);
        if (!inner.ok) return this.drop(inner.reason);
        const t = inner.value.type;
        if (t !== "hello" && t !== "hello_ack" && t !== "sealed") return this.drop("relayed_type");
        return this.fromPeer(inner.value, this.cfg.server, now, m.from);
      }
      case "error": {
        const forgedError = this.reg.authenticError(m);
        if (forgedError) return this.drop(forgedError);
        this.serverHeardAt = now;
        if (m.code === ErrorCode.ID_TAKEN && m.about === T.REGISTER) return this.newId(now);
        if (m.code !== ErrorCode.NO_SUCH_PEER) {
          return this.verdict(this.reg.onError(m, now, this.out));
        }
        const r = this.roster.get(m.text);
        // Only forget a peer the server no longer knows if we cannot reach it ourselves.
        if (r && r.path.sendAddr === null) this.removeRemote(m.text);
        return;
      }
      default:
        // A server address that also speaks peer messages (e.g. a peer on the server host).
        this.fromPeer(m, this.cfg.server, now, null);
    }
  }

  // --- From peers: handshakes ------------------------------------------------------------------

  /**
   * Peer traffic, direct or (with `relayedFrom`, the sender the server vouches for) relayed.
   * Only handshakes travel in the clear; everything else must open in a session.
   */
  private fromPeer(
    m: Message,
    from: Addr,
    now: number,
    relayedFrom: Id | null,
    via = 0,
  ): void {
    switch (m.type) {
      case "hello":
        return this.onHello(m, from, now, relayedFrom, via);
      case "hello_ack":
        return this.onHelloAck(m, from, now, relayedFrom, via);
      case "sealed":
        return this.onSealed(m.body, from, now, relayedFrom, via);
      case "data":
      case "data_ack":
      case "ping":
      case "pong":
        return this.drop("plaintext");
      default:
        return this.drop("unexpected");
    }
  }

  /** The remote a cleartext handshake claims to come from, if it may talk to us. */
  private claimed(from: Id, to: Id, relayedFrom: Id | null): Remote | null {
    if (to !== this.id) return this.drop("not_for_us"), null;
    if (relayedFrom !== null && relayedFrom !== from) return this.drop("relayed_spoof"), null;
    const r = this.roster.get(from);
    if (!r) return this.drop("unknown_peer"), null;
    if (!r.trusted) return this.drop("untrusted"), null;
    return r;
  }

  /**
   * A handshake message's claimed sender, once `step` (the Noise step) proved it: the peer the
   * handshake authenticates must be the one the cleartext `from` names.
   */
  private proven<R extends { ok: true; peerId: string }>(
    m: { from: Id; to: Id },
    relayedFrom: Id | null,
    step: () => R | SecureDrop,
  ): [Remote, R] | null {
    const r = this.claimed(m.from, m.to, relayedFrom);
    if (!r) return null;
    const res = step();
    if (!res.ok) return null;
    if (res.peerId !== r.member.id) return this.drop("hello_spoof"), null;
    return [r, res];
  }

  private onHello(
    m: Extract<Message, { type: "hello" }>,
    from: Addr,
    now: number,
    relayedFrom: Id | null,
    via: number,
  ): void {
    // Cheap checks first: a HELLO that does not even know our key costs one HMAC; one that
    // needs DH work is rate-limited per claimed sender and in all before any is spent.
    if (!checkMac1(m, this.mac1)) return this.drop("bad_mac1");
    const claimed = this.claimed(m.from, m.to, relayedFrom);
    if (!claimed) return;
    if (!this.secure.isAnsweredInit(m.init, now) && !this.mayRunInit(claimed.member.id, now)) {
      return;
    }
    // Noise authenticates the initiator's static key against the one the server announced.
    const got = this.proven(m, relayedFrom, () => this.secure.onHandshakeInit(m.init, now));
    if (!got) return;
    const [r, res] = got;
    // Distinct sources are bounded over time, not per init: a member minting fresh inits
    // must not reset the bound and turn us into a reflector towards addresses it picks.
    const src = relayedFrom === null ? addrKey(from) : "relay";
    for (const [k, seen] of r.helloSources) {
      if (now - seen > HELLO_SOURCE_TTL_MS) r.helloSources.delete(k);
    }
    if (!r.helloSources.has(src) && r.helloSources.size >= MAX_HELLO_SOURCES) {
      return this.drop("hello_sources");
    }
    r.helloSources.set(src, now);
    const ack = (to: Addr | null, nonce: string, ackVia: number) => {
      const pong: Message = { type: "pong", from: this.id, to: r.member.id, nonce, observed: from };
      const sealed = this.seal(r, HELLO_ACK_AD, pong, now);
      // The layer just made or confirmed this session; never answer with a broken datagram.
      if (!sealed) return this.drop("no_session");
      const reply: Message = {
        type: "hello_ack",
        from: this.id,
        to: r.member.id,
        resp: res.reply,
        sealed,
      };
      if (to) this.send(to, reply, ackVia);
      else this.toRelay(r, reply);
    };
    if (relayedFrom !== null) return ack(null, m.nonce, 0);
    for (const a of r.path.onHello(from, m.nonce, now, via)) {
      if (a.type === "ack") ack(a.to, a.nonce, a.via);
      else this.pathActions(r, [a], now);
    }
  }

  private onHelloAck(
    m: Extract<Message, { type: "hello_ack" }>,
    from: Addr,
    now: number,
    relayedFrom: Id | null,
    via: number,
  ): void {
    const got = this.proven(m, relayedFrom, () => this.secure.onHandshakeResp(m.resp, now));
    if (!got) return;
    const [r, res] = got;
    // The nonce is sealed, so nobody who merely saw our HELLO can confirm a path for it.
    const inner = this.openInner(HELLO_ACK_AD, m.sealed, now, r.member.id);
    if (!inner || inner.type !== "pong") return this.drop("hello_ack_inner");
    if (relayedFrom === null) this.onPong(r, inner, from, now, via);
    if (res.fresh) {
      // A first packet in the new session, so the responder switches to it now rather than
      // with our next message (it keeps the old one until then).
      this.toPeer(r, { type: "ping", from: this.id, to: r.member.id, nonce: this.nonce() }, now);
    }
  }

  /**
   * An answer to one of our probes. A `lan` path needs the peer to have seen us at one of our
   * own local addresses: otherwise a host that merely holds the peer's private address on our
   * LAN could forward our probes, win the path (LAN beats direct) and then drop everything.
   */
  private onPong(
    r: Remote,
    m: Extract<Message, { type: "pong" }>,
    from: Addr,
    now: number,
    via: number,
  ) {
    if (r.path.classify(from) === "lan" && !this.cfg.locals.some((l) => sameAddr(l, m.observed))) {
      return this.drop("lan_not_seen_locally");
    }
    const rtt = this.hard.birthdayAnswer(r, m.nonce, from, via, now);
    // An authenticated answer to one of the easy side's birthday probes: that port is the way.
    if (rtt !== null) return this.pathActions(r, r.path.adopt(from, 0, rtt, now), now);
    this.pathActions(r, r.path.onAck(from, m.nonce, now, via), now);
  }

  // --- From peers: sealed traffic --------------------------------------------------------------

  /** Opens a sealed body and decodes its plaintext; checks who it is from and for. */
  private openInner(ad: Uint8Array, body: Uint8Array, now: number, expect: Id | null) {
    const o = this.secure.open(ad, body, now);
    if (!o.ok) return null;
    if (expect !== null && o.peerId !== expect) return this.drop("sealed_spoof"), null;
    const d = decode(o.plaintext);
    if (!d.ok) return this.drop(`inner_${d.reason}`), null;
    const v = d.value;
    if (!("from" in v) || v.from !== o.peerId || !("to" in v) || v.to !== this.id) {
      return this.drop("inner_ids"), null;
    }
    return v;
  }

  private onSealed(
    body: Uint8Array,
    from: Addr,
    now: number,
    relayedFrom: Id | null,
    via: number,
  ): void {
    const m = this.openInner(SEALED_AD, body, now, relayedFrom);
    if (!m) return;
    const r = this.roster.get(m.from as Id);
    if (!r) return this.drop("unknown_peer");
    const relayed = relayedFrom !== null;
    switch (m.type) {
      case "ping":
        if (!relayed) this.pathActions(r, r.path.onHello(from, m.nonce, now, via), now);
        return;
      case "pong":
        if (!relayed) this.onPong(r, m, from, now, via);
        return;
      case "nat_info":
        return this.hard.onNatInfo(r, m, now);
      case "data": {
        // Relayed although we hold a direct path: the peer's side of it may be gone.
        if (relayed && r.path.sendAddr) this.pathActions(r, r.path.suspect(now), now);
        const ready: Received[] = [];
        // A DATA of several fragments (where the sender probed the path) is taken as each.
        const frags = unmerge(m);
        if (!frags) return this.drop("rx_oversize");
        let took = false;
        for (const f of frags) took = r.rx.onData(f, ready, now) || took;
        // ACK the way the data came, so a one-way path problem cannot strand it; `flush`
        // sends the DATA_ACK when the receiver says one is due.
        if (took) this.ackRoutes.set(r, { to: relayed ? null : from, via });
        return this.showMessages(r, ready);
      }
      case "floor": {
        // The sender gave up on what lies below: show what waited behind it.
        const ready: Received[] = [];
        r.rx.onFloor(m.floor, ready);
        return this.showMessages(r, ready);
      }
      case "data_ack": {
        const ev: TxEvent[] = [];
        r.tx.onAcks(m, ev, now);
        this.mtu.get(r)?.onProgress(r.tx.stats.timeouts);
        this.txEvents(r, ev);
        return;
      }
      case "mtu_probe": {
        // Answered the way it came, with what our own link takes on that way.
        const limit = relayed
          ? encodedWithin(this.cfg.linkMtu(this.cfg.server), this.cfg.server.host, RELAYED_WRAP)
          : from.tcp
          ? dataSize(1)
          : encodedWithin(this.cfg.linkMtu(from), from.host, 0);
        const ack: Message = {
          type: "mtu_ack",
          from: this.id,
          to: r.member.id,
          id: m.id,
          size: MTU_PROBE_MIN + m.pad,
          limit: Math.max(dataSize(1), limit),
        };
        return this.toPeer(r, ack, now, relayed ? null : from, via);
      }
      case "mtu_ack": {
        const pm = this.mtu.get(r);
        if (!pm?.onAck(m.id, m.size, m.limit, now)) return this.drop("mtu_ack_unknown");
        // Timeouts before the size went up say nothing about it (see MtuSearch.onTimeouts).
        pm.onProgress(r.tx.stats.timeouts);
        return;
      }
      default:
        this.drop("inner_type");
    }
  }

  private showMessages(r: Remote, ready: Received[]): void {
    for (const x of ready) {
      this.emit({
        type: "message",
        from: r.member.name,
        to: x.direct ? this.cfg.name : "room",
        text: dec.decode(x.bytes),
        id: this.msgId(r.member.id, x.msgNo),
      });
    }
  }

  // --- Sending ---------------------------------------------------------------------------------

  /** Rekeys due sessions; without a direct path, handshakes go through the relay. */
  private secureTick(now: number): void {
    for (const id of this.secure.tick(now).rekey) {
      const r = this.roster.get(id);
      if (!r) continue;
      this.secure.restartHandshake(id);
      const addr = r.path.sendAddr;
      if (addr) this.sendHello(r, addr, this.nonce(), now);
      else this.relayHello(r, now);
    }
    for (const r of this.roster.all()) {
      if (this.wantsRelayHello(r) && now >= r.nextRelayHello) this.relayHello(r, now);
    }
  }

  /**
   * No session and no direct path: offer the handshake through the relay too (the same init
   * the direct probes carry), so messages and NAT_INFO flow at once, whatever the NATs.
   */
  private wantsRelayHello(r: Remote): boolean {
    return r.trusted && !r.path.sendAddr && !this.secure.hasSession(r.member.id);
  }

  private relayHello(r: Remote, now: number): void {
    r.nextRelayHello = now + this.cfg.relayHelloMs;
    this.toRelay(r, this.hello(r, this.nonce(), now));
    // Still no session after a few: the peer may have missed the server's PEER_JOINED for us
    // (lost on a lossy link) and drops relayed hellos from a member it does not know. A CONNECT
    // makes the server forward our member record to it (CONNECT_FWD), which it learns us from.
    const n = (this.relayHellos.get(r) ?? 0) + 1;
    this.relayHellos.set(r, n);
    if (n % RELAY_HELLOS_PER_CONNECT === 0) {
      this.send(this.cfg.server, {
        type: "connect",
        from: this.id,
        token: this.reg.token,
        to: r.member.id,
        nonce: this.nonce(),
      });
    }
  }

  private hello(r: Remote, nonce: string, now: number): Message {
    const init = this.secure.handshakeInit(r.member.id, now, this.cfg.wall());
    return withMac1({ type: "hello", from: this.id, to: r.member.id, nonce, init }, r.mac1);
  }

  /** Takes one init's worth from the sender's and the total bucket; counts a drop if empty. */
  private mayRunInit(id: Id, now: number): boolean {
    const cfg = this.cfg.initRate;
    let b = this.peerInits.get(id);
    if (!b) {
      b = new Bucket(cfg.perPeer, cfg.perPeerBurst, now);
      this.peerInits.set(id, b);
    }
    if (!b.take(1, now)) return this.drop("init_rate_peer"), false;
    if (!this.inits.take(1, now)) return this.drop("init_rate"), false;
    return true;
  }

  private sendHello(r: Remote, to: Addr, nonce: string, now: number, via = 0): void {
    this.send(to, this.hello(r, nonce, now), via);
  }

  /** Encrypts `m` for the peer; null without a session (the caller then waits for one). */
  private seal(r: Remote, ad: Uint8Array, m: Message, now: number): Uint8Array | null {
    return this.secure.seal(r.member.id, ad, encode(m), now);
  }

  /** Sends due DATA_ACKs and fragments and reports finished messages, for every peer. */
  private flush(now: number): void {
    const ev: TxEvent[] = [];
    for (const r of this.roster.all()) {
      for (let a = r.rx.pollAck(now); a; a = r.rx.pollAck(now)) {
        const route = this.ackRoutes.get(r) ?? { to: undefined, via: 0 };
        const ack: Message = { type: "data_ack", from: this.id, to: r.member.id, ...a };
        this.toPeer(r, ack, now, route.to, route.via);
      }
      // Without a session nothing can be sent; the fragments stay due and go once it is up.
      if (!this.secure.hasSession(r.member.id)) continue;
      this.hard.flush(r, now);
      // The size is chosen before the tick (which numbers transmissions by DATA); the search
      // itself starts once there are several fragments due at once.
      // Compared by identity first: flush runs per datagram, and builds no key then.
      const was = this.dataRoutes.get(r);
      if (!was || was.to !== r.path.sendAddr || was.via !== r.path.via) {
        const key = routeKey(r);
        if (was && was.key !== key) r.tx.newPath();
        this.dataRoutes.set(r, { to: r.path.sendAddr, via: r.path.via, key });
      }
      let search = this.mtuSearch(r, false, now);
      const due = r.tx.tick(now, ev, search?.frags ?? 1);
      search ??= due.length > 1 ? this.mtuSearch(r, true, now) : null;
      if (search) {
        search.onTimeouts(r.tx.stats.timeouts, now);
        const p = search.poll(now);
        if (p) {
          const probe: Message = {
            type: "mtu_probe",
            from: this.id,
            to: r.member.id,
            id: p.id,
            pad: probePad(p.frags),
          };
          this.toPeer(r, probe, now);
        }
      }
      for (const f of coalesce(due, search?.frags ?? 1)) {
        this.toPeer(r, { type: "data", from: this.id, to: r.member.id, ...f }, now);
      }
      this.txEvents(r, ev);
      // After the tick: a give-up in it may have moved the floor past what DATA told.
      const floor = r.tx.floorNotice(now);
      if (floor !== null) {
        this.toPeer(r, { type: "floor", from: this.id, to: r.member.id, floor }, now);
      }
    }
  }

  /**
   * The MTU search of the route the peer's DATA takes now, made once it has several fragments
   * to send at once (before that one per DATA is all it could use); null until then.
   */
  private mtuSearch(r: Remote, create: boolean, now: number) {
    let pm = this.mtu.get(r);
    if (!pm) {
      if (!create) return null;
      this.mtu.set(r, pm = new PeerMtu(this.cfg.mtu));
    }
    const to = r.path.sendAddr;
    const timeouts = r.tx.stats.timeouts;
    if (!to) {
      const server = this.cfg.server;
      const c = encodedWithin(this.cfg.linkMtu(server), server.host, RELAY_WRAP);
      return pm.route(null, fragsWithin(c), timeouts, now);
    }
    const ceiling = to.tcp ? 1 : fragsWithin(encodedWithin(this.cfg.linkMtu(to), to.host, 0));
    return pm.route(this.dataRoutes.get(r)?.key ?? routeKey(r), ceiling, timeouts, now);
  }

  private txEvents(r: Remote, ev: TxEvent[]): void {
    for (const e of ev) {
      this.emit({ type: e.type, to: r.member.name, id: this.msgId(this.id, e.msgNo) });
    }
    ev.length = 0;
  }

  /**
   * Seals `m` and sends it to the peer on its direct path if it has one (or `via`), else
   * wrapped for the relay. Dropped without a session.
   */
  private toPeer(r: Remote, m: Message, now: number, to?: Addr | null, via = 0): void {
    // The SEALED datagram in one buffer, as encode() would write it: its 3-byte header, which
    // is also the body's AD, then the body sealed in place behind it.
    const sealed = this.secure.seal(r.member.id, SEALED_AD, encode(m), now, SEALED_AD.length);
    if (!sealed) return this.drop("no_session");
    sealed.set(SEALED_AD);
    const addr = to === undefined ? r.path.sendAddr : to;
    if (addr) return this.sendBytes(addr, sealed, to === undefined ? r.path.via : via);
    if (m.type === "data" && r.path.kind === "connecting") {
      // Relay first, said out loud: messages go through the relay until a direct path is up.
      this.pathActions(r, r.path.relayed(), now);
    }
    this.toRelay(r, sealed);
  }

  /** Wraps `m` (or a datagram already encoded) for the relay to the peer. */
  private toRelay(r: Remote, m: Message | Uint8Array): void {
    this.send(this.cfg.server, {
      type: "relay",
      from: this.id,
      token: this.reg.token,
      to: r.member.id,
      payload: m instanceof Uint8Array ? m : encode(m),
    });
  }

  private pathActions(r: Remote, acts: PathAction[], now: number): void {
    for (const a of acts) {
      switch (a.type) {
        case "hello":
          // In an established session a probe is a sealed PING; otherwise it is a handshake
          // init, so a peer that lost our session still answers and the path heals.
          // Probes from a birthday socket are always sealed: a session exists by then.
          if ((r.path.sendAddr || a.via !== 0) && this.secure.hasSession(r.member.id)) {
            const ping: Message = { type: "ping", from: this.id, to: r.member.id, nonce: a.nonce };
            this.toPeer(r, ping, now, a.to, a.via);
          } else {
            this.sendHello(r, a.to, a.nonce, now, a.via);
          }
          break;
        case "ack": {
          const pong: Message = {
            type: "pong",
            from: this.id,
            to: r.member.id,
            nonce: a.nonce,
            observed: a.to,
          };
          this.toPeer(r, pong, now, a.to, a.via);
          break;
        }
        case "punch_failed":
          this.hard.onPunchFailed(r, now);
          break;
        case "connect":
          this.send(this.cfg.server, {
            type: "connect",
            from: this.id,
            token: this.reg.token,
            to: r.member.id,
            nonce: a.nonce,
          });
          break;
        case "path":
          if (a.kind === "connecting") break;
          this.hard.pathChanged(r, a.kind);
          this.emit({
            type: "path",
            peer: r.member.name,
            path: a.kind,
            addr: formatAddr(a.addr ?? this.cfg.server),
            rtt_ms: a.rttMs,
            // A direct path over a TCP connection (TCP punching).
            ...(a.addr?.tcp ? { transport: "tcp" as const } : {}),
          });
          break;
      }
    }
  }
}
