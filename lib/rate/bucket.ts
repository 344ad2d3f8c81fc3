/** A token bucket: `rate` units per second, bursts up to `burst`. Pure: time is a parameter. */
export class Bucket {
  private tokens: number;
  private last: number;
  constructor(private rate: number, private burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  take(n: number, now: number): boolean {
    // A clock that steps back refills nothing rather than draining the bucket.
    this.tokens = Math.min(
      this.burst,
      this.tokens + (Math.max(0, now - this.last) / 1000) * this.rate,
    );
    this.last = Math.max(this.last, now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}
