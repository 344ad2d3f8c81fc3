/** Small, bounded rate limiters for the server. Pure: time is a parameter. */

/** Counts events per key in fixed one-minute windows; forgets keys whose window is over. */
export class PerMinute {
  private windows = new Map<string, { start: number; n: number }>();
  constructor(private limit: number, private maxKeys = 100_000) {}

  /** Records one event for `key`; false when the key is over its limit this minute. */
  take(key: string, now: number): boolean {
    let w = this.windows.get(key);
    if (w && now - w.start >= 60_000) {
      this.windows.delete(key); // a new window: re-inserted below, so the map stays oldest-first
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.prune(now);
      // Still full of live keys: forget the oldest rather than refuse every newcomer.
      if (this.windows.size >= this.maxKeys) this.windows.delete(this.windows.keys().next().value!);
      w = { start: now, n: 0 };
      this.windows.set(key, w);
    }
    return ++w.n <= this.limit;
  }

  private prune(now: number): void {
    for (const [k, w] of this.windows) if (now - w.start >= 60_000) this.windows.delete(k);
  }

  get size(): number {
    return this.windows.size;
  }
}

export { Bucket } from "../rate/bucket.ts";

/**
 * Lets a log line through at most once per `everyMs` per key, counting what it held back.
 * Remembers at most `maxKeys` keys: past that, keys whose interval is over are forgotten
 * first, then the oldest (a crowd of noisy peers must not turn the limiter off).
 */
export class LogLimiter {
  /** In the order lines were let through, so the first entry is the oldest. */
  private last = new Map<string, { at: number; held: number }>();
  constructor(private everyMs = 10_000, private maxKeys = 10_000) {}

  /** Returns how many were held back since the last one let through, or -1 to hold this one. */
  allow(key: string, now: number): number {
    const l = this.last.get(key);
    if (l && now - l.at < this.everyMs) {
      l.held++;
      return -1;
    }
    if (l) this.last.delete(key); // re-inserted below, at the end
    else if (this.last.size >= this.maxKeys) this.forget(now);
    this.last.set(key, { at: now, held: 0 });
    return l?.held ?? 0;
  }

  private forget(now: number): void {
    for (const [k, l] of this.last) {
      if (now - l.at < this.everyMs && this.last.size < this.maxKeys) return;
      this.last.delete(k);
    }
  }
}
