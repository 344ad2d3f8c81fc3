/**
 * The peer: registration with the server, one PathMachine and one Sender/Receiver per remote
 * peer, and the demultiplexing between them. Sans-IO: `handle` and `tick` take the time and
 * return actions; lib/net/peer_host.ts carries them out on a real socket.
 */
import { type Addr, addrKey, formatAddr, sameAddr } from "../wire/addr.ts";
import { equalBytes, toHex } from "../wire/bytes.ts";
import {
  decode,
  encode,
  ErrorCode,
  type Id,
  looksLikeP2p,
  MAGIC,
  type Member,
  type Message,
  NO_TOKEN,
  registerSigInput,
  T,
  VERSION,
} from "../wire/codec.ts";
import { DEFAULT_PATH_CONFIG, type PathAction, type PathConfig, PathMachine } from "./path.ts";
import {
  DEFAULT_DELIVERY_CONFIG,
  type DeliveryConfig,
  MAX_MESSAGE,
  type Received,
  Receiver,
  Sender,
  type TxEvent,
} from "./delivery.ts";
import type { PeerEvent } from "./events.ts";
import { type SecureConfig, type SecureDrop, SecureLayer } from "./secure.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { fingerprint, xPublicFromEd } from "../identity/identity.ts";
import { KnownPeers, type TrustStatus } from "../identity/known_peers.ts";

/** Pins peer keys by name (trust on first use); the CLI backs it with the known-peers file. */
export interface TrustStore {
  check(name: string, fingerprint: string): TrustStatus;
  pin(name: string, fingerprint: string): void;
}

/** An in-memory TrustStore, for tests and as the default. */
export function memoryTrust(): TrustStore {
  const k = new KnownPeers();
  return { check: (n, fp) => k.check(n, fp), pin: (n, fp) => k.pin(n, fp) };
}

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
  /** While relayed and without a session, how often to resend the handshake through the relay. */
  relayHelloMs: number;
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
  random: (n) => crypto.getRandomValues(new Uint8Array(n)),
  wall: () => Date.now(),
};

export type AgentAction =
  | { type: "send"; to: Addr; bytes: Uint8Array }
  | { type: "event"; event: PeerEvent }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string }
  /** Unrecoverable: print `message` and exit with `code` (2: the user must change something). */
  | { type: "fatal"; message: string; code: number };

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
}

interface Remote {
  member: Member;
  path: PathMachine;
  tx: Sender;
  rx: Receiver;
  fingerprint: string;
  /** False while the key differs from the pinned one and the user has not run /trust. */
  trusted: boolean;
  nextRelayHello: number;
  /** Sources that sent the peer's current handshake init (bounded: see onHello). */
  helloSources: Set<string>;
}

/**
 * Distinct sources one handshake init is answered from. Copies legitimately arrive from a few
 * (LAN, public, relay); a captured init replayed from many spoofed sources must not turn us
 * into a reflector.
 */
export const MAX_HELLO_SOURCES = 8;

/** Sealed payloads authenticate the 3-byte header of the datagram that carries them. */
const SEALED_AD = Uint8Array.of(MAGIC, VERSION, T.SEALED);
const HELLO_ACK_AD = Uint8Array.of(MAGIC, VERSION, T.HELLO_ACK);

const dec = new TextDecoder();
const enc = new TextEncoder();

export class PeerAgent {
  readonly id: Id;
  private reg: "idle" | "registering" | "registered" | "closed" = "idle";
  private everRegistered = false;
  private regStarted = 0;
  private nextRegister = 0;
  private lastServerAck = 0;
  private nextKeepalive = 0;
  private serverKeepaliveMs: number;
  private publicAddr: Addr | null = null;
  /** Registration token from the server; proves our later requests are ours. */
  private token = NO_TOKEN;
  /** Nonce of the current registration attempt; the server's answers must echo it. */
  private regNonce = NO_TOKEN;
  /** The server's cookie for this attempt: resends skip the first round trip (lossy links). */
  private regCookie: Uint8Array = new Uint8Array(0);
  private remotes = new Map<Id, Remote>();
  private byName = new Map<string, Id>();
  private msgNo = 0;
  /** Datagrams dropped, by reason. */
  readonly drops = new Map<string, number>();
  private out: AgentAction[] = [];
  private readonly secure: SecureLayer;
  private readonly trust: TrustStore;

  constructor(readonly cfg: AgentConfig) {
    this.id = toHex(cfg.random(8));
    this.serverKeepaliveMs = cfg.keepaliveMs;
    this.secure = new SecureLayer(
      { staticKey: cfg.identity.staticKey, sessionId: this.id },
      cfg.secure,
      cfg.random,
    );
    this.trust = cfg.trust ?? memoryTrust();
  }

  /** Drop counters of the agent and of its encryption layer, by reason. */
  stats(): Record<string, number> {
    const all: Record<string, number> = {};
    for (const [k, v] of this.drops) all[k] = v;
    for (const [k, v] of this.secure.drops) all[`secure_${k}`] = v;
    return all;
  }

  private nonce = (): string => toHex(this.cfg.random(8));

  private take(): AgentAction[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  private send(to: Addr, m: Message): void {
    this.out.push({ type: "send", to, bytes: encode(m) });
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

  /** A new registration attempt, with a fresh nonce (resends within it keep the nonce). */
  private beginRegistration(): void {
    this.reg = "registering";
    this.regNonce = this.nonce();
    this.regCookie = new Uint8Array(0);
  }

  start(now: number): AgentAction[] {
    this.beginRegistration();
    this.regStarted = now;
    this.register(now);
    return this.take();
  }

  /** Sends REGISTER; without a cookie first, the server then asks us to prove our address. */
  private register(now: number, cookie: Uint8Array = new Uint8Array(0)): void {
    this.nextRegister = now + this.cfg.registerRetryMs;
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id: this.id,
      nonce: this.regNonce,
      name: this.cfg.name,
      room: this.cfg.room,
      locals: this.cfg.locals,
      key: this.cfg.identity.key,
      cookie,
      sig: new Uint8Array(0),
    };
    if (cookie.length > 0) m.sig = this.cfg.identity.sign(registerSigInput(m));
    this.send(this.cfg.server, m);
  }

  /** Leaves: tells the server (twice, in case one is lost) and stops. */
  leave(): AgentAction[] {
    if (this.reg !== "closed") {
      for (let i = 0; i < 2; i++) {
        this.send(this.cfg.server, { type: "leave", id: this.id, token: this.token });
      }
      this.reg = "closed";
    }
    return this.take();
  }

  /** Messages not yet acknowledged or given up on, over all peers. */
  get pending(): number {
    let n = 0;
    for (const r of this.remotes.values()) n += r.tx.pending;
    return n;
  }

  get registered(): boolean {
    return this.reg === "registered";
  }

  peers(): PeerInfo[] {
    return [...this.remotes.values()].map((r) => ({
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
    }));
  }

  /**
   * Accepts `name`'s current key after it changed from the pinned one (`/trust NAME`): pins it
   * and starts connecting.
   */
  trustPeer(name: string, now: number): AgentAction[] {
    const id = this.byName.get(name);
    const r = id ? this.remotes.get(id) : undefined;
    if (!r) {
      this.emit({ type: "error", message: `Cannot trust ${name}: no such peer in the room` });
    } else if (r.trusted) {
      this.emit({ type: "error", message: `${name} is already trusted (${r.fingerprint})` });
    } else {
      this.trust.pin(r.member.name, r.fingerprint);
      this.accept(r, now);
      this.log("warn", `now trusting ${name} with key ${r.fingerprint}`);
    }
    return this.take();
  }

  /** Sends `text` to everyone in the room. */
  say(text: string, now: number): AgentAction[] {
    const bytes = this.checkSize(text);
    if (bytes) {
      if (this.remotes.size === 0) {
        this.emit({
          type: "error",
          message: `Cannot send: nobody else is in room "${this.cfg.room}"`,
        });
      } else {
        const no = ++this.msgNo;
        for (const r of this.remotes.values()) if (r.trusted) r.tx.send(no, bytes, false, now);
        this.flush(now);
      }
    }
    return this.take();
  }

  /** Sends `text` to one peer. */
  msg(name: string, text: string, now: number): AgentAction[] {
    const bytes = this.checkSize(text);
    const id = this.byName.get(name);
    const r = id ? this.remotes.get(id) : undefined;
    if (bytes && !r) {
      this.emit({ type: "error", message: `Cannot send to ${name}: no such peer in the room` });
    } else if (bytes && r && !r.trusted) {
      this.emit({
        type: "error",
        message: `Cannot send to ${name}: its key changed; check it, then /trust ${name}`,
      });
    } else if (bytes && r) {
      r.tx.send(++this.msgNo, bytes, true, now);
      this.flush(now);
    }
    return this.take();
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

  tick(now: number): AgentAction[] {
    if (this.reg === "closed") return this.take();
    if (this.reg === "registering") {
      if (!this.everRegistered && now - this.regStarted >= this.cfg.registerTimeoutMs) {
        this.reg = "closed";
        this.out.push({
          type: "fatal",
          code: 1,
          message: `Cannot reach server ${formatAddr(this.cfg.server)}: no answer within ${
            Math.round(this.cfg.registerTimeoutMs / 1000)
          } s`,
        });
        return this.take();
      }
      if (now >= this.nextRegister) this.register(now, this.regCookie);
    } else if (this.reg === "registered") {
      const ka = Math.min(this.cfg.keepaliveMs, this.serverKeepaliveMs);
      if (now - this.lastServerAck > 3 * ka) {
        this.log("warn", "lost contact with the server; re-registering (direct paths stay up)");
        this.beginRegistration();
        this.register(now);
      } else if (now >= this.nextKeepalive) {
        this.nextKeepalive = now + ka;
        this.send(this.cfg.server, { type: "keepalive", id: this.id, token: this.token });
      }
    }
    for (const r of this.remotes.values()) {
      if (r.trusted) this.pathActions(r, r.path.tick(now), now);
    }
    this.secureTick(now);
    this.flush(now);
    return this.take();
  }

  /** Rekeys due sessions; without a direct path, handshakes go through the relay. */
  private secureTick(now: number): void {
    for (const id of this.secure.tick(now).rekey) {
      const r = this.remotes.get(id);
      if (!r) continue;
      this.secure.restartHandshake(id);
      const addr = r.path.sendAddr;
      if (addr) this.sendHello(r, addr, this.nonce(), now);
      else this.relayHello(r, now);
    }
    for (const r of this.remotes.values()) {
      if (!r.trusted || r.path.sendAddr || this.secure.hasSession(r.member.id)) continue;
      if (r.path.kind !== "relay" && r.tx.pending === 0) continue;
      if (now >= r.nextRelayHello) this.relayHello(r, now);
    }
  }

  private relayHello(r: Remote, now: number): void {
    r.nextRelayHello = now + this.cfg.relayHelloMs;
    this.toRelay(r, this.hello(r, this.nonce(), now));
  }

  private hello(r: Remote, nonce: string, now: number): Message {
    const init = this.secure.handshakeInit(r.member.id, now, this.cfg.wall());
    return { type: "hello", from: this.id, to: r.member.id, nonce, init };
  }

  private sendHello(r: Remote, to: Addr, nonce: string, now: number): void {
    this.send(to, this.hello(r, nonce, now));
  }

  /** Encrypts `m` for the peer; null without a session (the caller then waits for one). */
  private seal(r: Remote, ad: Uint8Array, m: Message, now: number): Uint8Array | null {
    return this.secure.seal(r.member.id, ad, encode(m), now);
  }

  /** Sends due fragments and reports finished messages, for every peer. */
  private flush(now: number): void {
    const ev: TxEvent[] = [];
    for (const r of this.remotes.values()) {
      // Without a session nothing can be sent; the fragments stay due and go once it is up.
      if (!this.secure.hasSession(r.member.id)) continue;
      for (const f of r.tx.tick(now, ev)) {
        this.toPeer(r, { type: "data", from: this.id, to: r.member.id, ...f }, now);
      }
      this.txEvents(r, ev);
    }
  }

  private txEvents(r: Remote, ev: TxEvent[]): void {
    for (const e of ev) {
      this.emit({ type: e.type, to: r.member.name, id: this.msgId(this.id, e.msgNo) });
    }
    ev.length = 0;
  }

  private msgId(sender: Id, no: number): string {
    return `${sender.slice(0, 8)}-${no}`;
  }

  /**
   * Seals `m` and sends it to the peer on its direct path if it has one (or `via`), else
   * wrapped for the relay. Dropped without a session.
   */
  private toPeer(r: Remote, m: Message, now: number, via?: Addr | null): void {
    const body = this.seal(r, SEALED_AD, m, now);
    if (!body) return this.drop("no_session");
    const sealed: Message = { type: "sealed", body };
    const addr = via === undefined ? r.path.sendAddr : via;
    if (addr) this.send(addr, sealed);
    else this.toRelay(r, sealed);
  }

  private toRelay(r: Remote, m: Message): void {
    this.send(this.cfg.server, {
      type: "relay",
      from: this.id,
      token: this.token,
      to: r.member.id,
      payload: encode(m),
    });
  }

  private pathActions(r: Remote, acts: PathAction[], now: number): void {
    for (const a of acts) {
      switch (a.type) {
        case "hello":
          // In an established session a probe is a sealed PING; otherwise it is a handshake
          // init, so a peer that lost our session still answers and the path heals.
          if (r.path.sendAddr && this.secure.hasSession(r.member.id)) {
            this.toPeer(
              r,
              { type: "ping", from: this.id, to: r.member.id, nonce: a.nonce },
              now,
              a.to,
            );
          } else {
            this.sendHello(r, a.to, a.nonce, now);
          }
          break;
        case "ack":
          this.toPeer(
            r,
            {
              type: "pong",
              from: this.id,
              to: r.member.id,
              nonce: a.nonce,
              observed: a.to,
            },
            now,
            a.to,
          );
          break;
        case "connect":
          this.send(this.cfg.server, {
            type: "connect",
            from: this.id,
            token: this.token,
            to: r.member.id,
            nonce: a.nonce,
          });
          break;
        case "path":
          if (a.kind === "connecting") break;
          this.emit({
            type: "path",
            peer: r.member.name,
            path: a.kind,
            addr: formatAddr(a.addr ?? this.cfg.server),
            rtt_ms: a.rttMs,
          });
          break;
      }
    }
  }

  /** A key we accept: hand it to the encryption layer and start finding a path. */
  private accept(r: Remote, now: number): void {
    r.trusted = true;
    this.secure.addPeer(r.member.id, xPublicFromEd(r.member.key)!);
    this.pathActions(r, r.path.start(now), now);
  }

  private addRemote(m: Member, now: number): Remote | null {
    const x = xPublicFromEd(m.key);
    if (!x) {
      this.log("warn", `ignoring ${m.name}: the server announced an unusable key`);
      this.drop("bad_member_key");
      return null;
    }
    const old = this.byName.get(m.name);
    if (old && old !== m.id) this.removeRemote(old); // the same user came back with a new session
    const fp = fingerprint(m.key);
    const r: Remote = {
      member: m,
      path: new PathMachine(m, this.cfg.path, this.nonce),
      tx: new Sender(this.cfg.delivery),
      rx: new Receiver(),
      fingerprint: fp,
      trusted: false,
      nextRelayHello: 0,
      helloSources: new Set(),
    };
    this.remotes.set(m.id, r);
    this.byName.set(m.name, m.id);
    this.emit({ type: "peer", name: m.name, state: "joined", fingerprint: fp });
    const status = this.trust.check(m.name, fp);
    if (status === "changed") {
      // Someone else holds the name now, or the user made a new identity: refuse until told.
      this.emit({ type: "key_changed", peer: m.name, fingerprint: fp });
      // The key_changed event is the loud part (red in the chat, on stdout with --json).
      this.log(
        "info",
        `WARNING: ${m.name}'s key is now ${fp}, not the one pinned earlier. It may be ` +
          `someone else. Nothing is sent to or accepted from ${m.name}; if you have checked ` +
          `the new fingerprint with them, type /trust ${m.name}`,
      );
      return r;
    }
    if (status === "new") this.trust.pin(m.name, fp);
    this.accept(r, now);
    return r;
  }

  private learn(m: Member, now: number): Remote | null {
    const r = this.remotes.get(m.id);
    if (!r) return this.addRemote(m, now);
    if (!equalBytes(r.member.key, m.key) || r.member.name !== m.name) {
      // A session id is bound to one name and key at the server; anything else is a forgery
      // (a renamed member would dodge the name's pinned key) or a bug.
      this.drop("member_mismatch");
      return r;
    }
    const moved = !sameAddr(r.member.public, m.public) ||
      r.member.locals.length !== m.locals.length ||
      r.member.locals.some((a, i) => !sameAddr(a, m.locals[i]!));
    if (moved) {
      // Only the addresses change; name and key stay the ones checked against the pin.
      r.member = { ...r.member, public: m.public, locals: m.locals };
      r.path.setMember(r.member);
    }
    return r;
  }

  private removeRemote(id: Id): void {
    const r = this.remotes.get(id);
    if (!r) return;
    this.remotes.delete(id);
    this.secure.removePeer(id);
    if (this.byName.get(r.member.name) === id) this.byName.delete(r.member.name);
    const ev: TxEvent[] = [];
    r.tx.abandon(ev);
    this.txEvents(r, ev);
    this.emit({ type: "peer", name: r.member.name, state: "left" });
  }

  handle(b: Uint8Array, from: Addr, now: number): AgentAction[] {
    if (this.reg === "closed") return this.take();
    if (!looksLikeP2p(b)) {
      this.drop("unknown_protocol");
      return this.take();
    }
    const d = decode(b);
    if (!d.ok) {
      this.drop(d.reason);
      return this.take();
    }
    const fromServer = sameAddr(from, this.cfg.server);
    if (fromServer) this.fromServer(d.value, now);
    else this.fromPeer(d.value, from, now, null);
    this.flush(now);
    return this.take();
  }

  private fromServer(m: Message, now: number): void {
    // What the server tells us carries our token, or echoes our registration's nonce: anyone
    // else who forges the server's address (to invent or remove members, say) is dropped here.
    if ("token" in m && m.type !== "register_ok" && m.type !== "error" && m.token !== this.token) {
      return this.drop("server_token");
    }
    if ((m.type === "cookie" || m.type === "register_ok") && m.nonce !== this.regNonce) {
      return this.drop("server_nonce");
    }
    switch (m.type) {
      case "cookie":
        if (this.reg !== "registering") return this.drop("unexpected_cookie");
        this.regCookie = m.cookie;
        return this.register(now, m.cookie);
      case "register_ok": {
        if (m.id !== this.id) return this.drop("wrong_id");
        if (this.reg !== "registering") return this.drop("unexpected_register_ok");
        this.token = m.token;
        const first = !this.everRegistered;
        this.log("info", first ? "registered" : "registered again");
        this.reg = "registered";
        this.everRegistered = true;
        this.serverKeepaliveMs = m.keepaliveMs || this.cfg.keepaliveMs;
        this.lastServerAck = now;
        this.nextKeepalive = now + Math.min(this.cfg.keepaliveMs, this.serverKeepaliveMs);
        this.publicAddr = m.public;
        if (first) {
          this.emit({
            type: "ready",
            name: this.cfg.name,
            room: this.cfg.room,
            public: formatAddr(m.public),
            local: this.cfg.locals.map(formatAddr),
          });
        }
        for (const mem of m.members) if (mem.id !== this.id) this.learn(mem, now);
        return;
      }
      case "members":
        if (this.reg !== "registered") return this.drop("unexpected");
        for (const mem of m.members) if (mem.id !== this.id) this.learn(mem, now);
        return;
      case "keepalive_ack":
        if (m.id !== this.id) return this.drop("wrong_id");
        this.lastServerAck = now;
        this.publicAddr = m.public;
        return;
      case "peer_joined":
        if (this.reg !== "registered" || m.member.id === this.id) return;
        this.learn(m.member, now);
        return;
      case "peer_left":
        return this.removeRemote(m.id);
      case "connect_fwd": {
        if (this.reg !== "registered" || m.member.id === this.id) return;
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
      case "error":
        return this.serverError(m, now);
      default:
        // A server address that also speaks peer messages (e.g. a peer on the server host).
        this.fromPeer(m, this.cfg.server, now, null);
    }
  }

  private serverError(m: Extract<Message, { type: "error" }>, now: number): void {
    // Answers to our KEEPALIVE, CONNECT or RELAY echo its token, answers to REGISTER its
    // nonce; anything else is forged.
    const aboutUs = m.token === this.token && this.token !== NO_TOKEN;
    const aboutRegister = m.token === this.regNonce && this.reg === "registering";
    if ((m.code === ErrorCode.UNKNOWN_PEER || m.code === ErrorCode.NO_SUCH_PEER) && !aboutUs) {
      return this.drop("server_token");
    }
    // A server that cannot parse our REGISTER cannot echo its nonce: the version error is taken
    // as it is, but only before we ever registered (later it could only be a forgery).
    const versionHint = m.code === ErrorCode.BAD_VERSION && !this.everRegistered;
    if (m.about === T.REGISTER && !aboutRegister && !versionHint) {
      return this.drop("server_nonce");
    }
    switch (m.code) {
      case ErrorCode.UNKNOWN_PEER:
        // The server forgot us (restart, or we were timed out): register again at once.
        if (this.reg === "registered") {
          this.log("warn", "the server does not know us; re-registering");
          this.beginRegistration();
          this.register(now);
        }
        return;
      case ErrorCode.NO_SUCH_PEER: {
        const r = this.remotes.get(m.text);
        // Only forget a peer the server no longer knows if we cannot reach it ourselves.
        if (r && r.path.sendAddr === null) this.removeRemote(m.text);
        return;
      }
      case ErrorCode.NAME_TAKEN:
      case ErrorCode.BAD_NAME:
      case ErrorCode.BAD_ROOM:
      case ErrorCode.ROOM_FULL:
      case ErrorCode.SERVER_FULL:
      case ErrorCode.BAD_VERSION:
      case ErrorCode.BAD_SIGNATURE:
        if (this.reg !== "registering") return this.drop("stale_error");
        this.reg = "closed";
        this.out.push({
          type: "fatal",
          code: m.code === ErrorCode.NAME_TAKEN || m.code === ErrorCode.BAD_NAME ||
              m.code === ErrorCode.BAD_ROOM
            ? 2
            : 1,
          message: `Cannot join room "${this.cfg.room}": ${
            m.text || (m.code === ErrorCode.BAD_VERSION
              ? "the server speaks another protocol version"
              : "refused")
          }`,
        });
        return;
      default:
        this.drop("error_code");
    }
  }

  /**
   * Peer traffic, direct or (with `relayedFrom`, the sender the server vouches for) relayed.
   * Only handshakes travel in the clear; everything else must open in a session.
   */
  private fromPeer(m: Message, from: Addr, now: number, relayedFrom: Id | null): void {
    switch (m.type) {
      case "hello":
        return this.onHello(m, from, now, relayedFrom);
      case "hello_ack":
        return this.onHelloAck(m, from, now, relayedFrom);
      case "sealed":
        return this.onSealed(m.body, from, now, relayedFrom);
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
    const r = this.remotes.get(from);
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
  ): void {
    // Noise authenticates the initiator's static key against the one the server announced.
    const got = this.proven(m, relayedFrom, () => this.secure.onHandshakeInit(m.init, now));
    if (!got) return;
    const [r, res] = got;
    if (res.fresh) r.helloSources.clear();
    const src = relayedFrom === null ? addrKey(from) : "relay";
    if (!r.helloSources.has(src)) {
      if (r.helloSources.size >= MAX_HELLO_SOURCES) return this.drop("hello_sources");
      r.helloSources.add(src);
    }
    const ack = (to: Addr | null, nonce: string) => {
      const pong: Message = { type: "pong", from: this.id, to: r.member.id, nonce, observed: from };
      const sealed = this.seal(r, HELLO_ACK_AD, pong, now)!;
      const reply: Message = {
        type: "hello_ack",
        from: this.id,
        to: r.member.id,
        resp: res.reply,
        sealed,
      };
      if (to) this.send(to, reply);
      else this.toRelay(r, reply);
    };
    if (relayedFrom !== null) return ack(null, m.nonce);
    for (const a of r.path.onHello(from, m.nonce, now)) {
      if (a.type === "ack") ack(a.to, a.nonce);
      else this.pathActions(r, [a], now);
    }
  }

  private onHelloAck(
    m: Extract<Message, { type: "hello_ack" }>,
    from: Addr,
    now: number,
    relayedFrom: Id | null,
  ): void {
    const got = this.proven(m, relayedFrom, () => this.secure.onHandshakeResp(m.resp, now));
    if (!got) return;
    const [r, res] = got;
    // The nonce is sealed, so nobody who merely saw our HELLO can confirm a path for it.
    const inner = this.openInner(HELLO_ACK_AD, m.sealed, now, r.member.id);
    if (!inner || inner.type !== "pong") return this.drop("hello_ack_inner");
    if (relayedFrom === null) this.onPong(r, inner, from, now);
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
  private onPong(r: Remote, m: Extract<Message, { type: "pong" }>, from: Addr, now: number) {
    if (r.path.classify(from) === "lan" && !this.cfg.locals.some((l) => sameAddr(l, m.observed))) {
      return this.drop("lan_not_seen_locally");
    }
    this.pathActions(r, r.path.onAck(from, m.nonce, now), now);
  }

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

  private onSealed(body: Uint8Array, from: Addr, now: number, relayedFrom: Id | null): void {
    const m = this.openInner(SEALED_AD, body, now, relayedFrom);
    if (!m) return;
    const r = this.remotes.get(m.from as Id);
    if (!r) return this.drop("unknown_peer");
    const relayed = relayedFrom !== null;
    switch (m.type) {
      case "ping":
        if (!relayed) this.pathActions(r, r.path.onHello(from, m.nonce, now), now);
        return;
      case "pong":
        if (!relayed) this.onPong(r, m, from, now);
        return;
      case "data": {
        const ready: Received[] = [];
        if (r.rx.onData(m, ready)) {
          // ACK the way the data came, so a one-way path problem cannot strand it.
          this.toPeer(
            r,
            {
              type: "data_ack",
              from: this.id,
              to: r.member.id,
              seq: m.seq,
              frag: m.frag,
            },
            now,
            relayed ? null : from,
          );
        }
        for (const x of ready) {
          this.emit({
            type: "message",
            from: r.member.name,
            to: x.direct ? this.cfg.name : "room",
            text: dec.decode(x.bytes),
            id: this.msgId(r.member.id, x.msgNo),
          });
        }
        return;
      }
      case "data_ack": {
        const ev: TxEvent[] = [];
        r.tx.onAck(m.seq, m.frag, ev);
        this.txEvents(r, ev);
        return;
      }
      default:
        this.drop("inner_type");
    }
  }

  get public(): Addr | null {
    return this.publicAddr;
  }
}
