/**
 * When to renew a port mapping, as a clock-driven state machine (no timers inside): renew at
 * half the granted lease, retry a failed renewal a few times before the lease runs out, and
 * once it has run out, look for a gateway again now and then.
 */

/** The intervals a {@link LeaseClock} keeps; tests shrink them. */
export interface LeaseConfig {
  /** Renew when this fraction of the lease is left (RFC 6886 §3.3, RFC 6887 §11.2.1: half). */
  renewAt: number;
  /** Never renew more often than this, whatever a gateway grants. */
  minRenewMs: number;
  /** Permanent (lease 0) UPnP mappings are re-added this often, in case the gateway rebooted. */
  permanentRefreshMs: number;
  /** A failed renewal is retried after this, or after half the time left if that is sooner. */
  retryMs: number;
  /** Once a mapping is lost (or none was found), look for a gateway again this often. */
  rediscoverMs: number;
}

export const DEFAULT_LEASE_CONFIG: LeaseConfig = {
  renewAt: 0.5,
  minRenewMs: 10_000,
  permanentRefreshMs: 30 * 60_000,
  retryMs: 60_000,
  rediscoverMs: 5 * 60_000,
};

export type LeaseDue = "renew" | "rediscover";

export class LeaseClock {
  private state: "idle" | "held" | "lost" = "idle";
  private at = 0;
  private expiresAt = Infinity;

  constructor(private readonly cfg: LeaseConfig = DEFAULT_LEASE_CONFIG) {}

  /** A mapping was granted (or renewed) for `leaseSec` seconds; 0 means permanent. */
  granted(now: number, leaseSec: number): void {
    this.state = "held";
    if (leaseSec <= 0) {
      this.expiresAt = Infinity;
      this.at = now + this.cfg.permanentRefreshMs;
      return;
    }
    this.expiresAt = now + leaseSec * 1000;
    this.at = now + Math.max(this.cfg.minRenewMs, leaseSec * 1000 * this.cfg.renewAt);
  }

  /**
   * A renewal failed. Returns true while the mapping still holds (retry scheduled), false
   * when it has expired: the caller reports it lost, and the clock waits to rediscover.
   */
  failed(now: number): boolean {
    if (this.state !== "held") {
      this.lost(now);
      return false;
    }
    const left = this.expiresAt - now;
    if (left <= 0) {
      this.lost(now);
      return false;
    }
    this.at = now + Math.min(this.cfg.retryMs, Math.max(left / 2, 1000));
    return true;
  }

  /** No mapping (never got one, or it ran out): look again after `rediscoverMs`. */
  lost(now: number): void {
    this.state = "lost";
    this.expiresAt = Infinity;
    this.at = now + this.cfg.rediscoverMs;
  }

  /** Whether a held lease has run out by `now` (a renewal that is late must not pretend). */
  expired(now: number): boolean {
    return this.state === "held" && now >= this.expiresAt;
  }

  /** Stops everything (after a delete). */
  clear(): void {
    this.state = "idle";
    this.expiresAt = Infinity;
  }

  /** When {@link due} next has something to say, or null when idle. */
  nextDeadline(): number | null {
    return this.state === "idle" ? null : this.at;
  }

  /** What is due at `now`, if anything. */
  due(now: number): LeaseDue | null {
    if (this.state === "idle" || now < this.at) return null;
    return this.state === "held" ? "renew" : "rediscover";
  }
}
