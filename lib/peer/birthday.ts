/**
 * Birthday punching, for a peer behind a NAT that maps each destination to a new random port
 * (the "hard" side) and one whose mapping is endpoint-independent (the "easy" side), where
 * classic punching fails. The hard side opens many extra sockets, each sending to the easy
 * side's public endpoint: each opens a mapping on the hard NAT that accepts the easy side's
 * packets. The easy side sends probes to random ports of the hard side's public address; a
 * probe that hits one of those mappings opens the easy NAT's filter for the answer. With n
 * mappings among P ports, k probes succeed with probability 1 - (1 - n/P)^k: with 256 mappings
 * in 64,512 ports, 1000 probes give 98 % and 2000 give 99.96 %.
 *
 * A clock-driven state machine: it says which sockets to open and close and where to send the
 * attempt's probe datagram; the agent builds the datagram and decides when an answer wins.
 */
import type { Addr } from "../wire/addr.ts";

export type BirthdayRole = "hard" | "easy";

export interface BirthdayConfig {
  /** Extra sockets the hard side opens: each is one more mapping the easy side may hit. */
  sockets: number;
  /** Probes a second the easy side sends to random ports (batched every `batchMs`). */
  probesPerSec: number;
  batchMs: number;
  /** How long one attempt lasts. */
  windowMs: number;
  /** Probe budget of one attempt (easy side); the rate usually ends it first. */
  maxProbes: number;
  /** The hard side resends from every socket this often, for mappings whose first packet was lost. */
  resendMs: number;
  /** Attempts with one peer within an hour, at most. */
  maxPerHour: number;
  /** Ports the easy side probes: the range NATs allocate from. */
  portLow: number;
  portHigh: number;
}

export const DEFAULT_BIRTHDAY_CONFIG: BirthdayConfig = {
  sockets: 256,
  probesPerSec: 200,
  batchMs: 50,
  windowMs: 30_000,
  maxProbes: 6000,
  resendMs: 5000,
  maxPerHour: 4,
  portLow: 1024,
  portHigh: 65535,
};

export type BirthdayAction =
  | { type: "open"; via: number }
  | { type: "close"; via: number }
  /** Send the attempt's probe datagram to `to` from socket `via`. */
  | { type: "probe"; to: Addr; via: number };

export class Birthday {
  readonly endsAt: number;
  private next: number;
  private sent = 0;
  private readonly vias: number[] = [];
  /** Ports probed in this attempt, with when (the answer's RTT). */
  private readonly tried = new Map<number, number>();
  private over = false;

  /**
   * `target`: for the easy side the hard side's public address (its port is ignored); for the
   * hard side the easy side's public endpoint. `allocVia` names new sockets.
   */
  constructor(
    readonly role: BirthdayRole,
    private readonly target: Addr,
    private readonly cfg: BirthdayConfig,
    now: number,
    private readonly random: (n: number) => Uint8Array,
    allocVia: () => number,
  ) {
    this.endsAt = now + cfg.windowMs;
    this.next = now;
    if (role === "hard") { for (let i = 0; i < cfg.sockets; i++) this.vias.push(allocVia()); }
  }

  get active(): boolean {
    return !this.over;
  }

  /** Probes sent (easy side) or socket sends (hard side) so far. */
  get probes(): number {
    return this.sent;
  }

  /** Whether socket `via` is one of this attempt's. */
  owns(via: number): boolean {
    return this.vias.includes(via);
  }

  start(out: BirthdayAction[]): void {
    for (const via of this.vias) out.push({ type: "open", via });
  }

  tick(now: number, out: BirthdayAction[]): void {
    if (this.over) return;
    if (now >= this.endsAt) return this.stop(out);
    if (now < this.next) return;
    if (this.role === "hard") {
      for (const via of this.vias) out.push({ type: "probe", to: this.target, via });
      this.sent += this.vias.length;
      this.next = now + this.cfg.resendMs;
      return;
    }
    const batch = Math.max(1, Math.round(this.cfg.probesPerSec * this.cfg.batchMs / 1000));
    for (let i = 0; i < batch && this.sent < this.cfg.maxProbes; i++) {
      out.push({ type: "probe", to: { host: this.target.host, port: this.port(now) }, via: 0 });
      this.sent++;
    }
    if (this.sent >= this.cfg.maxProbes) return this.stop(out);
    this.next = now + this.cfg.batchMs;
  }

  nextDeadline(): number | null {
    return this.over ? null : Math.min(this.next, this.endsAt);
  }

  /** When port `port` was probed, if it was (easy side). */
  probedAt(port: number): number | undefined {
    return this.tried.get(port);
  }

  /** An answer came through `via`: keep that socket, close the others. */
  won(via: number, out: BirthdayAction[]): void {
    if (this.over) return;
    this.over = true;
    for (const v of this.vias) if (v !== via) out.push({ type: "close", via: v });
  }

  /** Ends the attempt (a path came up another way, the window ran out, the peer left). */
  stop(out: BirthdayAction[]): void {
    if (this.over) return;
    this.over = true;
    for (const v of this.vias) out.push({ type: "close", via: v });
  }

  /** A random port in range not probed yet in this attempt (the budget is far below the range). */
  private port(now: number): number {
    const span = this.cfg.portHigh - this.cfg.portLow + 1;
    for (;;) {
      const b = this.random(4);
      const n = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
      const p = this.cfg.portLow + (n % span);
      if (this.tried.size >= span || !this.tried.has(p)) {
        this.tried.set(p, now);
        return p;
      }
    }
  }
}

/**
 * Who does what, from both sides' mapping behaviour: the side whose mapping depends on the
 * destination is hard, the endpoint-independent one easy; any other pair gets no attempt
 * (two hard sides would need ~64k² / n² probes: hopeless at any polite rate).
 */
export function birthdayRole(mine: string, theirs: string): BirthdayRole | null {
  const hard = (m: string) => m === "address-dependent" || m === "address-and-port-dependent";
  if (hard(mine) && theirs === "endpoint-independent") return "hard";
  if (mine === "endpoint-independent" && hard(theirs)) return "easy";
  return null;
}
