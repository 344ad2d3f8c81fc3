/**
 * Our registration with the server, as a clock-driven state machine: REGISTER (with the
 * address-proving cookie and the signature), its resends, the keepalive that holds it and our
 * NAT mapping, re-registration when the server forgets us, and the check that what claims to
 * come from the server carries our token or our registration's nonce.
 */
import { type Addr, formatAddr } from "../wire/addr.ts";
import {
  encode,
  ErrorCode,
  type Id,
  type Message,
  NO_TOKEN,
  registerSigInput,
  roomProofInput,
  T,
} from "../wire/codec.ts";
import type { AgentAction } from "./actions.ts";
import { proveRoom, type RoomKeys } from "../crypto/room.ts";
import { equalText } from "../wire/bytes.ts";

export interface RegistrationConfig {
  id: Id;
  name: string;
  room: string;
  server: Addr;
  locals: Addr[];
  identity: { key: Uint8Array; sign: (msg: Uint8Array) => Uint8Array };
  /** A locked room's keys: every signed REGISTER carries a proof of its secret. */
  roomKeys?: RoomKeys;
  /** Keepalive interval towards the server; the server may ask for a shorter one. */
  keepaliveMs: number;
  /** How long the first registration may go unanswered before we give up. */
  registerTimeoutMs: number;
  /** Resend interval while registering (lossy links lose REGISTERs and COOKIEs). */
  registerRetryMs: number;
}

type RegisterOk = Extract<Message, { type: "register_ok" }>;
type ServerError = Extract<Message, { type: "error" }>;

/** A drop reason for the caller's counters, or null when the message was taken. */
export type Verdict = string | null;

/** Errors to REGISTER that the user must act on (or that end the attempt): they end the peer. */
const FATAL: ReadonlySet<number> = new Set([
  ErrorCode.NAME_TAKEN,
  ErrorCode.BAD_NAME,
  ErrorCode.BAD_ROOM,
  ErrorCode.ROOM_FULL,
  ErrorCode.SERVER_FULL,
  ErrorCode.BAD_VERSION,
  ErrorCode.BAD_SIGNATURE,
  ErrorCode.WRONG_SECRET,
]);
/** Of those, the ones that are the user's mistake (exit status 2). */
const USER_MISTAKE: ReadonlySet<number> = new Set([
  ErrorCode.NAME_TAKEN,
  ErrorCode.BAD_NAME,
  ErrorCode.BAD_ROOM,
  ErrorCode.WRONG_SECRET,
]);

export class Registration {
  private state: "idle" | "registering" | "registered" | "closed" = "idle";
  private everRegistered = false;
  private regStarted = 0;
  private nextRegister = 0;
  private lastServerAck = 0;
  private nextKeepalive = 0;
  private serverKeepaliveMs: number;
  private publicAddr: Addr | null = null;
  /** Registration token from the server; proves our later requests are ours. */
  private tok = NO_TOKEN;
  /** Nonce of the current registration attempt; the server's answers must echo it. */
  private regNonce = NO_TOKEN;
  /** The server's cookie for this attempt: resends skip the first round trip (lossy links). */
  private regCookie: Uint8Array = new Uint8Array(0);

  constructor(private cfg: RegistrationConfig, private nonce: () => string) {
    this.serverKeepaliveMs = cfg.keepaliveMs;
  }

  get registered(): boolean {
    return this.state === "registered";
  }
  get closed(): boolean {
    return this.state === "closed";
  }
  get token(): string {
    return this.tok;
  }
  /** Our address as the server sees it, once registered. */
  get public(): Addr | null {
    return this.publicAddr;
  }

  start(now: number, out: AgentAction[]): void {
    this.begin();
    this.regStarted = now;
    this.register(now, out);
  }

  /**
   * Our traffic to the server now takes another way (UDP or WebSocket), so the server sees us
   * at a new address: register again at once rather than at the next unanswered keepalive.
   */
  restart(now: number, out: AgentAction[]): void {
    if (this.state === "closed" || this.state === "idle") return;
    // Never registered yet: the new way gets the whole registration timeout of its own.
    if (!this.everRegistered) this.regStarted = now;
    this.begin();
    this.register(now, out);
  }

  /** Leaves: tells the server (twice, in case one is lost) and stops. */
  leave(out: AgentAction[]): void {
    if (this.state === "closed") return;
    for (let i = 0; i < 2; i++) {
      this.send(out, { type: "leave", id: this.cfg.id, token: this.tok });
    }
    this.state = "closed";
  }

  tick(now: number, out: AgentAction[]): void {
    if (this.state === "registering") {
      if (!this.everRegistered && now - this.regStarted >= this.cfg.registerTimeoutMs) {
        this.state = "closed";
        out.push({
          type: "fatal",
          code: 1,
          message: `Cannot reach server ${formatAddr(this.cfg.server)}: no answer within ${
            Math.round(this.cfg.registerTimeoutMs / 1000)
          } s`,
        });
        return;
      }
      if (now >= this.nextRegister) this.register(now, out, this.regCookie);
    } else if (this.state === "registered") {
      const ka = this.keepaliveMs;
      if (now - this.lastServerAck > 3 * ka) {
        this.log(
          out,
          "warn",
          "lost contact with the server; re-registering (direct paths stay up)",
        );
        this.begin();
        this.register(now, out);
      } else if (now >= this.nextKeepalive) {
        this.nextKeepalive = now + ka;
        this.send(out, { type: "keepalive", id: this.cfg.id, token: this.tok });
      }
    }
  }

  /** When `tick` next has work: a resend, the registration timeout, a keepalive, lost contact. */
  nextDeadline(): number | null {
    if (this.state === "registering") {
      const giveUp = this.everRegistered ? Infinity : this.regStarted + this.cfg.registerTimeoutMs;
      return Math.min(giveUp, this.nextRegister);
    }
    if (this.state === "registered") {
      // Strictly more than three keepalive intervals without an answer: lost contact.
      return Math.min(this.lastServerAck + 3 * this.keepaliveMs + 1, this.nextKeepalive);
    }
    return null;
  }

  /**
   * Whether `m`, which claims to come from the server, is authentic: what the server tells us
   * carries our token or echoes our registration's nonce, so whoever forges the server's address
   * (to invent or remove members, say) is dropped here.
   */
  authentic(m: Message): Verdict {
    if (
      "token" in m && m.type !== "register_ok" && m.type !== "error" &&
      !equalText(m.token, this.tok)
    ) {
      return "server_token";
    }
    if ((m.type === "cookie" || m.type === "register_ok") && !equalText(m.nonce, this.regNonce)) {
      return "server_nonce";
    }
    return null;
  }

  onCookie(cookie: Uint8Array, now: number, out: AgentAction[]): Verdict {
    if (this.state !== "registering") return "unexpected_cookie";
    this.regCookie = cookie;
    this.register(now, out, cookie);
    return null;
  }

  /** Returns a drop reason, or "first"/"again" when registered by this message. */
  onRegisterOk(m: RegisterOk, now: number, out: AgentAction[]): "first" | "again" | string {
    if (m.id !== this.cfg.id) return "wrong_id";
    if (this.state !== "registering") return "unexpected_register_ok";
    this.tok = m.token;
    const first = !this.everRegistered;
    this.log(out, "info", first ? "registered" : "registered again");
    this.state = "registered";
    this.everRegistered = true;
    this.serverKeepaliveMs = m.keepaliveMs || this.cfg.keepaliveMs;
    this.lastServerAck = now;
    this.nextKeepalive = now + this.keepaliveMs;
    this.publicAddr = m.public;
    return first ? "first" : "again";
  }

  onKeepaliveAck(m: Extract<Message, { type: "keepalive_ack" }>, now: number): Verdict {
    if (m.id !== this.cfg.id) return "wrong_id";
    this.lastServerAck = now;
    this.publicAddr = m.public;
    return null;
  }

  /**
   * Whether an ERROR is authentic: answers to our KEEPALIVE, CONNECT or RELAY echo its token,
   * answers to REGISTER its nonce; anything else is forged.
   */
  authenticError(m: ServerError): Verdict {
    const aboutUs = equalText(m.token, this.tok) && this.tok !== NO_TOKEN;
    const aboutRegister = equalText(m.token, this.regNonce) && this.state === "registering";
    if ((m.code === ErrorCode.UNKNOWN_PEER || m.code === ErrorCode.NO_SUCH_PEER) && !aboutUs) {
      return "server_token";
    }
    // A server that cannot parse our REGISTER cannot echo its nonce: the version error is taken
    // as it is, but only before we ever registered (later it could only be a forgery).
    const versionHint = m.code === ErrorCode.BAD_VERSION && !this.everRegistered;
    if (m.about === T.REGISTER && !aboutRegister && !versionHint) return "server_nonce";
    return null;
  }

  /** An authentic ERROR about our registration (not NO_SUCH_PEER, which is about a peer). */
  onError(m: ServerError, now: number, out: AgentAction[]): Verdict {
    if (m.code === ErrorCode.UNKNOWN_PEER) {
      // The server forgot us (restart, or we were timed out): register again at once.
      if (this.state === "registered") {
        this.log(out, "warn", "the server does not know us; re-registering");
        this.begin();
        this.register(now, out);
      }
      return null;
    }
    if (!FATAL.has(m.code)) return "error_code";
    if (this.state !== "registering") return "stale_error";
    this.state = "closed";
    const why = m.text ||
      (m.code === ErrorCode.BAD_VERSION ? "the server speaks another protocol version" : "refused");
    out.push({
      type: "fatal",
      code: USER_MISTAKE.has(m.code) ? 2 : 1,
      message: `Cannot join room "${this.cfg.room}": ${why}`,
    });
    return null;
  }

  private get keepaliveMs(): number {
    return Math.min(this.cfg.keepaliveMs, this.serverKeepaliveMs);
  }

  /** A new registration attempt, with a fresh nonce (resends within it keep the nonce). */
  private begin(): void {
    this.state = "registering";
    this.regNonce = this.nonce();
    this.regCookie = new Uint8Array(0);
  }

  /** Sends REGISTER; without a cookie first, the server then asks us to prove our address. */
  private register(now: number, out: AgentAction[], cookie: Uint8Array = new Uint8Array(0)): void {
    this.nextRegister = now + this.cfg.registerRetryMs;
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id: this.cfg.id,
      nonce: this.regNonce,
      name: this.cfg.name,
      room: this.cfg.room,
      locals: this.cfg.locals,
      key: this.cfg.identity.key,
      cookie,
      sig: new Uint8Array(0),
    };
    if (cookie.length > 0) {
      // The proof is bound to this cookie and registration; the signature then covers it.
      if (this.cfg.roomKeys) m.proof = proveRoom(this.cfg.roomKeys, roomProofInput(m));
      m.sig = this.cfg.identity.sign(registerSigInput(m));
    }
    this.send(out, m);
  }

  private send(out: AgentAction[], m: Message): void {
    out.push({ type: "send", to: this.cfg.server, bytes: encode(m) });
  }

  private log(out: AgentAction[], level: "info" | "warn", message: string): void {
    out.push({ type: "log", level, message });
  }
}
