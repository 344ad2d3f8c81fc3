/**
 * The WebSocket endpoint's connection bookkeeping, sans-IO: who may connect (per source IP and
 * in total), when a connection must be closed (nothing sent to it in time, or for too long),
 * and which Addrs of closed connections may not be given out again yet. No socket, no clock:
 * `now` is a parameter and lib/net/ws_server.ts carries out what `due` returns, sleeping until
 * `nextDeadline`.
 *
 * A connection counts as alive only when the server sends it something (`touch`): the server
 * answers only what it accepted (COOKIE, REGISTER_OK, KEEPALIVE_ACK, relayed traffic), so a
 * client sending junk, however often, is closed at the first-message deadline.
 */
import { limitKey } from "../server/ip.ts";

export interface WsLimitConfig {
  /** Open connections per source IP (IPv4 address or IPv6 /64, see limitKey). */
  maxPerIp: number;
  /** Open connections in total. */
  maxConnections: number;
  /**
   * From the upgrade to the first message the server sends on it (an answer to something it
   * accepted); a connection that gets none goes.
   */
  firstMessageMs: number;
  /** Longest time without a message sent to it that a connection may keep before it is closed. */
  idleMs: number;
  /**
   * How long a closed connection's Addr stays taken: at least the server's silence limit, so a
   * registration that outlives its connection never gets a new connection from the same
   * ip:port as its address (which would then receive that member's messages, token and all).
   */
  addrHoldMs: number;
}

/**
 * The defaults for a server whose peers keep alive every `keepaliveMs`.
 *
 * - 16 per IP: as many connections as the server holds registrations per IP (maxPeersPerIp).
 * - 1,024 in total. An idle connection costs the server about 36 kB of RSS (measured by
 *   tests/e2e/ws_server_test.ts), but Deno reads a message whole, up to 64 MiB, before the
 *   endpoint sees it and can refuse it, so one connection can hold up to 64 MiB for as long
 *   as its client takes to send it: the cap is the only bound on that memory (1,024 × 64 MiB
 *   in the worst case, with each byte sent by the client). A descriptor each, so `ulimit -n`
 *   must be above it; past `ulimit -n` the listener is re-opened after a back-off (ws_server.ts).
 * - 10 s to the first answer: a peer sends REGISTER at once and gets a COOKIE; a slow link
 *   still manages a round trip in 10 s.
 * - 4 keepalive intervals without an answer: longer than the server's own 3 (and 1 s) after
 *   which a member is dropped, so a live member's connection is never cut before its
 *   registration.
 * - Addrs held for the server's silence limit (3 keepalives and 1 s) and 1 s more, for a
 *   timer that fires late.
 */
export function defaultWsLimits(keepaliveMs: number): WsLimitConfig {
  return {
    maxPerIp: 16,
    maxConnections: 1_024,
    firstMessageMs: 10_000,
    idleMs: 4 * keepaliveMs,
    addrHoldMs: 3 * keepaliveMs + 2_000,
  };
}

/**
 * Most Addrs of closed connections held at once: past it the oldest is let go early. Reusing an
 * Addr needs a new connection from the same ip:port, so only a client behind the same address
 * (or a trusted proxy) churning 65,536 connections within addrHoldMs gets one back early; the
 * table stays a few MB.
 */
export const MAX_HELD_ADDRS = 65_536;

/**
 * Addr keys of recently closed connections, each until `holdMs` after it closed. Every entry
 * has the same duration, so insertion order is expiry order and expired ones are swept from
 * the front, lazily, on every call.
 */
export class HeldAddrs {
  private held = new Map<string, number>();
  private last = -Infinity;

  constructor(readonly holdMs: number, readonly max = MAX_HELD_ADDRS) {}

  /** Keys held now. */
  get size(): number {
    return this.held.size;
  }

  private sweep(t: number): number {
    const now = this.last = Math.max(this.last, t);
    for (const [key, until] of this.held) {
      if (until > now) break;
      this.held.delete(key);
    }
    return now;
  }

  /** The connection known by `key` closed at `now`: `key` stays taken until now + holdMs. */
  hold(key: string, t: number): void {
    const now = this.sweep(t);
    this.held.delete(key);
    this.held.set(key, now + this.holdMs);
    for (const k of this.held.keys()) {
      if (this.held.size <= this.max) break;
      this.held.delete(k);
    }
  }

  /** Whether `key` is held at `now`. */
  has(key: string, t: number): boolean {
    this.sweep(t);
    return this.held.has(key);
  }
}

export type WsRefusal = "per_ip" | "total";
export type WsExpiry = "first_message_timeout" | "idle_timeout";

export class WsLimits {
  /** Open connections: id → the limit key it counts under. */
  private conns = new Map<number, string>();
  private perKey = new Map<string, number>();
  /**
   * Deadlines, id → when. Every entry of one table has the same duration, so insertion order
   * is deadline order: `message` moves an id to the end of `live`.
   */
  private waiting = new Map<number, number>();
  private live = new Map<number, number>();
  private nextId = 1;
  /** The latest `now` seen: the deadline order relies on time never running backwards. */
  private last = -Infinity;

  constructor(readonly cfg: WsLimitConfig) {}

  /** Open connections (admitted and not yet closed). */
  get open(): number {
    return this.conns.size;
  }

  private clock(now: number): number {
    return this.last = Math.max(this.last, now);
  }

  /** A connection from `host` asks to open: its id, or why not. Counts it until `closed`. */
  admit(host: string, t: number): { ok: true; id: number } | { ok: false; reason: WsRefusal } {
    const now = this.clock(t);
    if (this.conns.size >= this.cfg.maxConnections) return { ok: false, reason: "total" };
    const key = limitKey(host);
    const n = this.perKey.get(key) ?? 0;
    if (n >= this.cfg.maxPerIp) return { ok: false, reason: "per_ip" };
    const id = this.nextId++;
    this.conns.set(id, key);
    this.perKey.set(key, n + 1);
    this.waiting.set(id, now + this.cfg.firstMessageMs);
    return { id, ok: true };
  }

  /**
   * The server sent connection `id` a message (it accepted something the client said): the
   * connection is alive, and its idle deadline starts again.
   */
  touch(id: number, t: number): void {
    const now = this.clock(t);
    if (!this.conns.has(id)) return;
    this.waiting.delete(id);
    this.live.delete(id);
    this.live.set(id, now + this.cfg.idleMs);
  }

  /** Connection `id` is gone (any reason); calling it again changes nothing. */
  closed(id: number): void {
    const key = this.conns.get(id);
    if (key === undefined) return;
    this.conns.delete(id);
    this.waiting.delete(id);
    this.live.delete(id);
    const n = (this.perKey.get(key) ?? 1) - 1;
    if (n > 0) this.perKey.set(key, n);
    else this.perKey.delete(key);
  }

  /**
   * The connections whose deadline is `now` or earlier, each returned once: the host closes
   * them (they keep counting against the caps until `closed`).
   */
  due(t: number): { id: number; why: WsExpiry }[] {
    const now = this.clock(t);
    const out: { id: number; why: WsExpiry }[] = [];
    const take = (table: Map<number, number>, why: WsExpiry) => {
      for (const [id, at] of table) {
        if (at > now) break;
        table.delete(id);
        out.push({ id, why });
      }
    };
    take(this.waiting, "first_message_timeout");
    take(this.live, "idle_timeout");
    return out;
  }

  /** When `due` next has work, or null. */
  nextDeadline(): number | null {
    const first = (table: Map<number, number>) => {
      for (const at of table.values()) return at;
      return null;
    };
    const a = first(this.waiting);
    const b = first(this.live);
    if (a === null) return b;
    if (b === null) return a;
    return Math.min(a, b);
  }
}
