/**
 * The WebSocket endpoint's connection bookkeeping, sans-IO: who may connect (per source IP and
 * in total), and when a connection must be closed (no first message in time, or silent too
 * long). No socket, no clock: `now` is a parameter and lib/net/ws_server.ts carries out what
 * `due` returns, sleeping until `nextDeadline`.
 */
import { limitKey } from "../server/ip.ts";

export interface WsLimitConfig {
  /** Open connections per source IP (IPv4 address or IPv6 /64, see limitKey). */
  maxPerIp: number;
  /** Open connections in total. */
  maxConnections: number;
  /** From the upgrade to the first binary message; a connection that sends nothing goes. */
  firstMessageMs: number;
  /** Longest silence (no binary message) a connection may keep before it is closed. */
  idleMs: number;
}

/**
 * The defaults for a server whose peers keep alive every `keepaliveMs`.
 *
 * - 16 per IP: as many connections as the server holds registrations per IP (maxPeersPerIp).
 * - 5,000 in total: an idle connection costs the server about 36 kB of RSS (measured by
 *   tests/e2e/ws_server_test.ts), so 5,000 hold about 180 MB, the budget the UDP side's
 *   100,000 peers have; a descriptor each, so `ulimit -n` must be above it.
 * - 10 s for the first message: a peer sends REGISTER at once; a slow link still manages one
 *   datagram in 10 s.
 * - 4 keepalive intervals of silence: longer than the server's own 3 (and 1 s) after which
 *   a member is dropped, so a live member's connection is never cut before its registration.
 */
export function defaultWsLimits(keepaliveMs: number): WsLimitConfig {
  return {
    maxPerIp: 16,
    maxConnections: 5_000,
    firstMessageMs: 10_000,
    idleMs: 4 * keepaliveMs,
  };
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

  /** Connection `id` sent a message: its idle deadline starts again. */
  message(id: number, t: number): void {
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
