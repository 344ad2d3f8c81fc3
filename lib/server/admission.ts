/**
 * Who may register: proof of the source address (cookies), proof of the key (signature), the
 * per-source registration rate, and the capacity caps (peers, rooms, members per room). It
 * answers yes or a refusal and changes nothing in the registry.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { type Addr, ipv6Bytes } from "../wire/addr.ts";
import { toHex } from "../wire/bytes.ts";
import { ErrorCode, type Message, registerSigInput } from "../wire/codec.ts";
import type { ServerConfig } from "./config.ts";
import { Cookies } from "./cookie.ts";
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

/**
 * What the per-source limits count by: the IPv4 address, or the IPv6 /64 (one subscriber
 * usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
 */
export function limitKey(host: string): string {
  const v6 = host.includes(":") ? ipv6Bytes(host) : null;
  return v6 ? `${toHex(v6.subarray(0, 8))}/64` : host;
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
    try {
      return ed25519.verify(m.sig, registerSigInput(m), m.key, { zip215: false });
    } catch {
      return false;
    }
  }

  /** Whether a new member fits in `room`: peers, rooms, members per room. */
  capacity(reg: Registry, room: string): Refusal | null {
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
    return null;
  }
}
