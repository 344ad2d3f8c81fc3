/**
 * Who may register: proof of the source address (cookies), proof of the key (signature), the
 * per-source registration rate, proof of a locked room's secret, and the capacity caps (peers,
 * rooms, members per room, live registrations per source IP and per key, bound names in all
 * and per source IP). It answers yes or a refusal and changes nothing in the registry.
 */
import { verifyStrict } from "../crypto/ed25519.ts";
import { proofVerifier, roomProofValid } from "../crypto/room.ts";
import type { Addr } from "../wire/addr.ts";
import { equalBytes } from "../wire/bytes.ts";
import { ErrorCode, type Message, registerSigInput, roomProofInput } from "../wire/codec.ts";
import type { ServerConfig } from "./config.ts";
import { Cookies } from "./cookie.ts";
import { limitKey } from "./ip.ts";
import { PerMinute } from "./limits.ts";
import type { Registry } from "./registry.ts";

type Register = Extract<Message, { type: "register" }>;

/** Why a registration is refused: the ERROR to send, and a line for the operator, if any. */
export interface Refusal {
  code: ErrorCode;
  text: string;
  /** Rate-limited log line: its key and text. */
  warn?: [key: string, message: string];
}

export class Admission {
  private cookies: Cookies;
  private perMinute: PerMinute;

  constructor(private cfg: ServerConfig, secret: Uint8Array) {
    this.cookies = new Cookies(secret);
    this.perMinute = new PerMinute(cfg.registrationsPerMinute);
  }

  /** The cookie `from` must echo to prove it receives at its address. */
  cookie(from: Addr, now: number): Uint8Array {
    return this.cookies.make(from, now);
  }

  /** Whether `m` echoes a current cookie for `from`. */
  addressProven(m: Register, from: Addr, now: number): boolean {
    return m.cookie.length > 0 && this.cookies.check(m.cookie, from, now);
  }

  /**
   * Counts one address-proven registration attempt from `from`'s source; false when over the
   * limit. Counted only once the address is proven, so forged sources cannot use up a real
   * address's allowance; the signature checks after it are what it protects.
   */
  withinRate(from: Addr, now: number): boolean {
    return this.perMinute.take(limitKey(from.host), now);
  }

  /** Whether `m` is signed by its key (strict RFC 8032: no small-order keys, no malleability). */
  keyProven(m: Register): boolean {
    return verifyStrict(m.key, registerSigInput(m), m.sig);
  }

  /**
   * Whether `m` may enter its room as far as the lock goes: a locked room needs a proof under
   * its verifier, bound to this REGISTER (cookie, id, nonce, name, key); an open room with
   * members takes no proof (it cannot be locked while it has members); an empty room with no
   * lock takes either, and a proof there locks it. Checked before anything about names or
   * members, so a refused stranger learns nothing of them.
   */
  roomLock(reg: Registry, m: Register, from: Addr, now: number): Refusal | null {
    const lock = reg.lockOf(m.room, now);
    const wrong: Refusal = {
      code: ErrorCode.WRONG_SECRET,
      text: "wrong room secret",
      warn: [`secret:${limitKey(from.host)}`, `wrong room secret from ${from.host}`],
    };
    if (!m.proof) {
      return lock ? { ...wrong, text: `room "${m.room}" is locked: it needs its secret` } : null;
    }
    if (!lock && (reg.roomSize(m.room) ?? 0) > 0) {
      return {
        code: ErrorCode.WRONG_SECRET,
        text: `room "${m.room}" is open: it cannot be locked while it has members`,
      };
    }
    if (lock && !equalBytes(proofVerifier(m.proof), lock)) return wrong;
    return roomProofValid(m.proof, roomProofInput(m)) ? null : wrong;
  }

  /** Whether a new member with `key` (hex) from `from` fits in `room`. */
  capacity(reg: Registry, room: string, key: string, from: Addr): Refusal | null {
    const size = reg.roomSize(room);
    if (reg.size >= this.cfg.maxPeers) {
      return {
        code: ErrorCode.SERVER_FULL,
        text: "server is full",
        warn: ["full", "server is full (--max-peers)"],
      };
    }
    if (size === undefined && reg.roomCount >= this.cfg.maxRooms) {
      return {
        code: ErrorCode.SERVER_FULL,
        text: "too many rooms",
        warn: ["rooms", "too many rooms (--max-rooms)"],
      };
    }
    if (size !== undefined && size >= this.cfg.maxMembersPerRoom) {
      return { code: ErrorCode.ROOM_FULL, text: `room "${room}" is full` };
    }
    if (reg.withKey(key) >= this.cfg.maxPeersPerKey) {
      return {
        code: ErrorCode.SERVER_FULL,
        text: `too many registrations with this key (${this.cfg.maxPeersPerKey})`,
      };
    }
    return this.sourceCapacity(reg, from);
  }

  /** Whether `from` may bind a name nobody owns: room in the name table and under its cap. */
  nameCapacity(reg: Registry, from: Addr): Refusal | null {
    if (reg.nameCount >= this.cfg.maxNameBindings) {
      return {
        code: ErrorCode.SERVER_FULL,
        text: "too many names in use",
        warn: ["names", "name table is full (--max-names)"],
      };
    }
    if (reg.namesFrom(limitKey(from.host)) >= this.cfg.maxNamesPerIp) {
      return {
        code: ErrorCode.SERVER_FULL,
        text: `too many names registered from ${from.host} (${this.cfg.maxNamesPerIp})`,
      };
    }
    return null;
  }

  /** Whether a member registered at `current` may move to `to` (the per-IP cap there). */
  roomToMove(reg: Registry, current: Addr, to: Addr): Refusal | null {
    return limitKey(current.host) === limitKey(to.host) ? null : this.sourceCapacity(reg, to);
  }

  /** Whether one more member fits at `from`'s source IP. */
  private sourceCapacity(reg: Registry, from: Addr): Refusal | null {
    const source = limitKey(from.host);
    if (reg.fromSource(source) < this.cfg.maxPeersPerIp) return null;
    return {
      code: ErrorCode.SERVER_FULL,
      text: `too many registrations from ${from.host} (${this.cfg.maxPeersPerIp})`,
      warn: [`ip:${source}`, `per-IP registration cap reached by ${source} (--max-per-ip)`],
    };
  }
}
