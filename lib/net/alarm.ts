/**
 * One timer for a state machine's next deadline (quinn's `poll_timeout`): `set` re-arms it,
 * replacing any earlier arming, so the host never wakes except when the machine has work.
 */

/** setTimeout's largest delay (2^31 - 1 ms); a later deadline is reached in several sleeps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class Alarm {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private at: number | null = null;
  /** Times the alarm went off. */
  fired = 0;

  constructor(private onFire: () => void) {}

  /** Wakes at `deadline` (ms on the `performance.now()` clock), or never for null. */
  set(deadline: number | null, now: number): void {
    if (deadline === this.at && this.timer !== undefined) return;
    this.clear();
    if (deadline === null) return;
    this.at = deadline;
    // Whole milliseconds, rounded up: a timer firing a fraction early would find nothing due.
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(deadline - now)));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.at = null;
      this.fired++;
      this.onFire();
    }, delay);
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.at = null;
  }
}
