/**
 * The peer: registration with the server, one PathMachine and one Sender/Receiver per remote
 * peer, and the demultiplexing between them. Sans-IO: `handle` and `tick` take the time and
 * return actions; lib/net/peer_host.ts carries them out on a real socket.
 */
import { type Addr, formatAddr, sameAddr } from "../wire/addr.ts";
import { toHex } from "../wire/bytes.ts";
import {
  decode,
  encode,
  ErrorCode,
  type Id,
  looksLikeP2p,
  type Member,
  type Message,
  registerSigInput,
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

export interface AgentConfig {
  name: string;
  room: string;
  server: Addr;
  locals: Addr[];
  /** Our identity: the Ed25519 public key the server binds our name to, and its signer. */
  identity: { key: Uint8Array; sign: (msg: Uint8Array) => Uint8Array };
  /** Keepalive interval towards the server; the server may ask for a shorter one. */
  keepaliveMs: number;
  /** How long the first registration may go unanswered before we give up. */
  registerTimeoutMs: number;
  registerRetryMs: number;
  path: PathConfig;
  delivery: DeliveryConfig;
  /** Randomness source (ids, nonces); injectable for tests. */
  random: (n: number) => Uint8Array;
}

export const DEFAULT_AGENT_CONFIG: Omit<
  AgentConfig,
  "name" | "room" | "server" | "locals" | "identity"
> = {
  keepaliveMs: 15_000,
  registerTimeoutMs: 5000,
  registerRetryMs: 1000,
  path: DEFAULT_PATH_CONFIG,
  delivery: DEFAULT_DELIVERY_CONFIG,
  random: (n) => crypto.getRandomValues(new Uint8Array(n)),
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
}

interface Remote {
  member: Member;
  path: PathMachine;
  tx: Sender;
  rx: Receiver;
}

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
  private token = "0000000000000000";
  private remotes = new Map<Id, Remote>();
  private byName = new Map<string, Id>();
  private msgNo = 0;
  /** Datagrams dropped, by reason. */
  readonly drops = new Map<string, number>();
  private out: AgentAction[] = [];

  constructor(readonly cfg: AgentConfig) {
    this.id = toHex(cfg.random(8));
    this.serverKeepaliveMs = cfg.keepaliveMs;
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

  start(now: number): AgentAction[] {
    this.reg = "registering";
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
    }));
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
        for (const r of this.remotes.values()) r.tx.send(no, bytes, false, now);
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
      if (now >= this.nextRegister) this.register(now);
    } else if (this.reg === "registered") {
      const ka = Math.min(this.cfg.keepaliveMs, this.serverKeepaliveMs);
      if (now - this.lastServerAck > 3 * ka) {
        this.log("warn", "lost contact with the server; re-registering (direct paths stay up)");
        this.reg = "registering";
        this.register(now);
      } else if (now >= this.nextKeepalive) {
        this.nextKeepalive = now + ka;
        this.send(this.cfg.server, { type: "keepalive", id: this.id, token: this.token });
      }
    }
    for (const r of this.remotes.values()) this.pathActions(r, r.path.tick(now));
    this.flush(now);
    return this.take();
  }

  /** Sends due fragments and reports finished messages, for every peer. */
  private flush(now: number): void {
    const ev: TxEvent[] = [];
    for (const r of this.remotes.values()) {
      for (const f of r.tx.tick(now, ev)) {
        this.toPeer(r, { type: "data", from: this.id, to: r.member.id, ...f });
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

  /** Sends to a peer on its direct path if it has one, else wrapped for the relay. */
  private toPeer(r: Remote, m: Message, via?: Addr | null): void {
    const addr = via === undefined ? r.path.sendAddr : via;
    if (addr) return this.send(addr, m);
    this.send(this.cfg.server, {
      type: "relay",
      from: this.id,
      token: this.token,
      to: r.member.id,
      payload: encode(m),
    });
  }

  private pathActions(r: Remote, acts: PathAction[]): void {
    for (const a of acts) {
      switch (a.type) {
        case "hello":
          this.send(a.to, { type: "hello", from: this.id, to: r.member.id, nonce: a.nonce });
          break;
        case "ack":
          this.send(a.to, {
            type: "hello_ack",
            from: this.id,
            to: r.member.id,
            nonce: a.nonce,
            observed: a.to,
          });
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

  private addRemote(m: Member, now: number): Remote {
    const old = this.byName.get(m.name);
    if (old && old !== m.id) this.removeRemote(old); // the same user came back with a new session
    const r: Remote = {
      member: m,
      path: new PathMachine(m, this.cfg.path, this.nonce),
      tx: new Sender(this.cfg.delivery),
      rx: new Receiver(),
    };
    this.remotes.set(m.id, r);
    this.byName.set(m.name, m.id);
    this.emit({ type: "peer", name: m.name, state: "joined" });
    this.pathActions(r, r.path.start(now));
    return r;
  }

  private learn(m: Member, now: number): Remote {
    const r = this.remotes.get(m.id);
    if (!r) return this.addRemote(m, now);
    if (!sameAddr(r.member.public, m.public) || r.member.locals.length !== m.locals.length) {
      r.member = m;
      r.path.setMember(m);
    }
    return r;
  }

  private removeRemote(id: Id): void {
    const r = this.remotes.get(id);
    if (!r) return;
    this.remotes.delete(id);
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
    else this.fromPeer(d.value, from, now, false);
    this.flush(now);
    return this.take();
  }

  private fromServer(m: Message, now: number): void {
    switch (m.type) {
      case "cookie":
        if (this.reg !== "registering") return this.drop("unexpected_cookie");
        return this.register(now, m.cookie);
      case "register_ok": {
        if (m.id !== this.id) return this.drop("wrong_id");
        this.token = m.token;
        const first = !this.everRegistered;
        if (this.reg !== "registered") {
          this.log("info", first ? "registered" : "registered again");
        }
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
        this.pathActions(r, r.path.onConnectFwd(m.member, now));
        return;
      }
      case "relayed": {
        const r = this.remotes.get(m.from);
        if (!r) return this.drop("unknown_peer");
        const inner = decode(m.payload);
        if (!inner.ok) return this.drop(inner.reason);
        if (inner.value.type !== "data" && inner.value.type !== "data_ack") {
          return this.drop("relayed_type");
        }
        if (inner.value.from !== m.from) return this.drop("relayed_spoof");
        return this.fromPeer(inner.value, this.cfg.server, now, true);
      }
      case "error":
        return this.serverError(m, now);
      default:
        // A server address that also speaks peer messages (e.g. a peer on the server host).
        this.fromPeer(m, this.cfg.server, now, false);
    }
  }

  private serverError(m: Extract<Message, { type: "error" }>, now: number): void {
    switch (m.code) {
      case ErrorCode.UNKNOWN_PEER:
        // The server forgot us (restart, or we were timed out): register again at once.
        if (this.reg === "registered") {
          this.log("warn", "the server does not know us; re-registering");
          this.reg = "registering";
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

  private fromPeer(m: Message, from: Addr, now: number, relayed: boolean): void {
    if (!("to" in m) || !("from" in m) || typeof m.from !== "string") {
      return this.drop("unexpected");
    }
    if (m.to !== this.id) return this.drop("not_for_us");
    const r = this.remotes.get(m.from);
    if (!r) return this.drop("unknown_peer");
    switch (m.type) {
      case "hello":
        return this.pathActions(r, r.path.onHello(from, m.nonce, now));
      case "hello_ack":
        return this.pathActions(r, r.path.onAck(from, m.nonce, now));
      case "data": {
        const ready: Received[] = [];
        if (r.rx.onData(m, ready)) {
          // ACK the way the data came, so a one-way path problem cannot strand it.
          this.toPeer(r, {
            type: "data_ack",
            from: this.id,
            to: r.member.id,
            seq: m.seq,
            frag: m.frag,
          }, relayed ? null : from);
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
        this.drop("unexpected");
    }
  }

  get public(): Addr | null {
    return this.publicAddr;
  }
}
