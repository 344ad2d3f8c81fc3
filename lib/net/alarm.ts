/**
 * One timer for a state machine's next deadline (quinn's `poll_timeout`): `set` re-arms it,
 * replacing any earlier arming, so the host never wakes except when the machine has work.
 *
 * With `slackMs` (the peer host, whose deadline moves with almost every datagram under load:
 * each ACK pushes the retransmission timer later, each delayed DATA_ACK comes and goes) the
 * armed timer is kept when the deadline moves later by at most `slackMs`, or when it goes off
 * within `slackMs` anyway. It then goes off early, sees the deadline not reached and sleeps
 * again until it, without calling `onFire`: one timer callback instead of a `clearTimeout` and
 * a `setTimeout` per datagram. A deadline that moves earlier always re-arms, so the alarm is
 * never late.
 */

/** setTimeout's largest delay (2^31 - 1 ms); a later deadline is reached in several sleeps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export interface AlarmOptions {
  /** How much earlier than needed the timer may go off rather than be re-armed (ms); 0: never. */
  slackMs?: number;
}

export class Alarm {
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline the timer is armed for (null: none armed). */
  private armed: number | null = null;
  /** The deadline asked for last; later than `armed` while an early wake-up is pending. */
  private wanted: number | null = null;
  private readonly slackMs: number;
  /** Times the alarm went off (called `onFire`); early wake-ups that sleep again do not count. */
  fired = 0;
  /** Early wake-ups: the timer went off before the deadline (kept within the slack) and slept on. */
  earlyWakes = 0;

  constructor(private onFire: () => void, opts: AlarmOptions = {}) {
    this.slackMs = opts.slackMs ?? 0;
  }

  /** Wakes at `deadline` (ms on the `performance.now()` clock), or never for null. */
  set(deadline: number | null, now: number): void {
    this.wanted = deadline;
    const armed = this.armed;
    if (armed !== null) {
      if (deadline === armed) return;
      const slack = this.slackMs;
      if (
        slack > 0 && (deadline === null || deadline > armed) &&
        (armed - now <= slack || (deadline !== null && deadline - armed <= slack))
      ) return; // goes off early, then sleeps again (see the module comment)
      clearTimeout(this.timer);
      this.timer = undefined;
      this.armed = null;
    }
    if (deadline !== null) this.arm(deadline, now);
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armed = null;
    this.wanted = null;
  }

  private arm(deadline: number, now: number): void {
    this.armed = deadline;
    // Whole milliseconds, rounded up: a timer firing a fraction early would find nothing due.
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(deadline - now)));
    this.timer = setTimeout(this.expire, delay);
  }

  private readonly expire = (): void => {
    const armed = this.armed;
    this.timer = undefined;
    this.armed = null;
    const wanted = this.wanted;
    if (wanted === null) return; // the deadline went away after the timer was kept
    if (armed !== null && wanted > armed) {
      this.earlyWakes++;
      return this.arm(wanted, performance.now());
    }
    this.wanted = null;
    this.fired++;
    this.onFire();
  };
}
