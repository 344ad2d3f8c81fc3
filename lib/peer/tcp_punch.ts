/**
 * TCP hole punching by simultaneous open, for a pair that found no direct UDP path (UDP blocked
 * between them, say). Both sides connect at once from a fixed local port towards the other's
 * public address; each SYN opens a conntrack entry on its own NAT that admits the other's SYN,
 * so one of the two handshakes completes (SYN crossing SYN, RFC 9293 3.5) and both sockets
 * end up on the same connection. Connecting sockets need no listener: Linux refuses to bind a
 * connecting socket to a port a listener holds (EADDRINUSE, even with SO_REUSEADDR), while
 * several connecting sockets may share it.
 *
 * Nobody tells a peer its public TCP port: the targets assume the NAT keeps the source port for
 * TCP (Linux masquerading and SNAT do when the tuple is free, as most cone NATs do), so the
 * peer's TCP port is the port number of its UDP socket (each side connects from that number),
 * and, second, the public UDP port the server saw. A NAT that picks random ports defeats it.
 *
 * A clock-driven state machine like lib/peer/birthday.ts: it says which connections to open
 * and close and when to send a connectivity check through one; the agent sends the check (a
 * HELLO or sealed PING) and the path machine decides when an answer makes the path.
 */
import type { Addr } from "../wire/addr.ts";
import type { Member } from "../wire/codec.ts";

export interface TcpPunchConfig {
  /**
   * How long one attempt keeps connecting. The kernel resends an unanswered SYN after 1, 3 and
   * 7 s, so peers that start a few seconds apart still meet within one connect.
   */
  windowMs: number;
  /** After a connect fails (reset, refused), how long before that target is tried again. */
  retryMs: number;
  /** Connects one attempt makes at most, over all targets (a peer that resets us cannot spin us). */
  maxConnects: number;
  /** How often an open connection that carries no path yet gets another connectivity check. */
  checkMs: number;
  /** Ports guessed for the peer, at most (each is one more connecting socket). */
  maxTargets: number;
  /** Attempts with one peer within an hour, at most. */
  maxPerHour: number;
}

export const DEFAULT_TCP_PUNCH_CONFIG: TcpPunchConfig = {
  windowMs: 15_000,
  retryMs: 1000,
  maxConnects: 16,
  checkMs: 1000,
  maxTargets: 2,
  maxPerHour: 6,
};

export type TcpPunchAction =
  /** Connect from local port `localPort` to `to`, as connection `via`. */
  | { type: "open"; via: number; localPort: number; to: Addr }
  | { type: "close"; via: number }
  /** Connection `via` is up (or still carries no path): send a connectivity check through it. */
  | { type: "check"; via: number; to: Addr };

/**
 * Where to connect to for `m`: its public address, at the port number of its UDP socket (its
 * announced local addresses carry it) and at its public UDP port, without repeats.
 */
export function tcpTargets(m: Member, max: number): Addr[] {
  // The server passes on what it saw; behind an untrusted proxy that may be a loopback or
  // other address no NAT is at: never aim a room's connects there.
  if (!punchable(m.public.host)) return [];
  const ports: number[] = [];
  for (const p of [...m.locals.map((l) => l.port), m.public.port]) {
    if (p > 0 && !ports.includes(p)) ports.push(p);
  }
  return ports.slice(0, max).map((port) => ({ host: m.public.host, port, tcp: true as const }));
}

/** Whether `host` can be a NAT's public address: not loopback, unspecified or multicast. */
function punchable(host: string): boolean {
  const v4 = /^(\d+)\./.exec(host);
  if (v4) {
    const a = Number(v4[1]);
    return a !== 0 && a !== 127 && (a < 224 || a > 239) && a !== 255;
  }
  const h = host.toLowerCase();
  return h !== "::" && h !== "::1" && !h.startsWith("ff") && !h.startsWith("::ffff:127.");
}

interface Conn {
  via: number;
  target: number;
  open: boolean;
  nextCheck: number;
}

export class TcpPunch {
  readonly endsAt: number;
  private conns: Conn[] = [];
  /** Targets waiting for a retry, with when. */
  private retries = new Map<number, number>();
  private connects = 0;
  private over = false;
  /** The connection that won, kept after the attempt is over (0: none). */
  private kept = 0;

  constructor(
    private readonly targets: Addr[],
    private readonly localPort: number,
    private readonly cfg: TcpPunchConfig,
    now: number,
    private readonly allocVia: () => number,
  ) {
    this.endsAt = now + cfg.windowMs;
  }

  get active(): boolean {
    return !this.over;
  }

  /** Connects started so far. */
  get tries(): number {
    return this.connects;
  }

  /** Whether connection `via` is one of this attempt's (including the one that won). */
  owns(via: number): boolean {
    return via !== 0 && (via === this.kept || this.conns.some((c) => c.via === via));
  }

  start(out: TcpPunchAction[]): void {
    for (let i = 0; i < this.targets.length; i++) this.connect(i, out);
  }

  tick(now: number, out: TcpPunchAction[]): void {
    if (this.over) return;
    if (now >= this.endsAt) return this.stop(out);
    for (const [i, at] of this.retries) {
      if (now < at) continue;
      this.retries.delete(i);
      this.connect(i, out);
    }
    for (const c of this.conns) {
      if (c.open && now >= c.nextCheck) {
        c.nextCheck = now + this.cfg.checkMs;
        out.push({ type: "check", via: c.via, to: this.targets[c.target]! });
      }
    }
  }

  nextDeadline(): number | null {
    if (this.over) return null;
    let at = this.endsAt;
    for (const t of this.retries.values()) at = Math.min(at, t);
    for (const c of this.conns) if (c.open) at = Math.min(at, c.nextCheck);
    return at;
  }

  /** Connection `via` completed: check it at once. */
  onOpen(via: number, now: number, out: TcpPunchAction[]): void {
    const c = this.conns.find((x) => x.via === via);
    if (this.over || !c || c.open) return;
    c.open = true;
    c.nextCheck = now + this.cfg.checkMs;
    out.push({ type: "check", via, to: this.targets[c.target]! });
  }

  /** Connection `via` failed or closed: its target is tried again after `retryMs`, in budget. */
  onClosed(via: number, now: number): void {
    if (via === this.kept) this.kept = 0;
    const i = this.conns.findIndex((x) => x.via === via);
    if (i < 0) return;
    const c = this.conns[i]!;
    this.conns.splice(i, 1);
    if (this.over) return;
    const at = now + this.cfg.retryMs;
    if (this.connects < this.cfg.maxConnects && at < this.endsAt) this.retries.set(c.target, at);
  }

  /** A path came up over `via`: keep that connection, close the others. */
  won(via: number, out: TcpPunchAction[]): void {
    if (this.over) return;
    this.over = true;
    this.retries.clear();
    for (const c of this.conns) if (c.via !== via) out.push({ type: "close", via: c.via });
    this.conns = this.conns.filter((c) => c.via === via);
    if (this.conns.length > 0) this.kept = via;
  }

  /** Ends the attempt (a path came up another way, the window ran out, the peer left). */
  stop(out: TcpPunchAction[]): void {
    if (this.over) return;
    this.over = true;
    this.retries.clear();
    for (const c of this.conns) out.push({ type: "close", via: c.via });
    this.conns = [];
  }

  /** Closes the connection that won, if it is still open (the path moved elsewhere). */
  release(out: TcpPunchAction[]): void {
    if (this.kept === 0) return;
    out.push({ type: "close", via: this.kept });
    this.conns = this.conns.filter((c) => c.via !== this.kept);
    this.kept = 0;
  }

  /** The connection that carries the path, if any (0: none). */
  get keptVia(): number {
    return this.kept;
  }

  private connect(target: number, out: TcpPunchAction[]): void {
    if (this.connects >= this.cfg.maxConnects) return;
    this.connects++;
    const via = this.allocVia();
    this.conns.push({ via, target, open: false, nextCheck: this.endsAt });
    out.push({ type: "open", via, localPort: this.localPort, to: this.targets[target]! });
  }
}
