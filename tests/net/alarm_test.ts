import assert from "node:assert/strict";
import { Alarm } from "../../lib/net/alarm.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An alarm whose firings are recorded with the time they came. */
function recorded(slackMs?: number) {
  const at: number[] = [];
  const alarm = new Alarm(() => at.push(performance.now()), { slackMs });
  return { alarm, at };
}

Deno.test("alarm: goes off once at the deadline, never before it", async () => {
  for (const slackMs of [0, 25]) {
    const { alarm, at } = recorded(slackMs);
    const now = performance.now();
    alarm.set(now + 20, now);
    await sleep(60);
    assert.equal(at.length, 1);
    // Whole-millisecond timers: within a millisecond.
    assert.ok(at[0]! >= now + 19, `slack ${slackMs}: fired ${at[0]! - now} ms after arming`);
    assert.equal(alarm.fired, 1);
  }
});

Deno.test("alarm: a deadline moved later within the slack fires at the later one", async () => {
  const { alarm, at } = recorded(25);
  const now = performance.now();
  alarm.set(now + 10, now);
  alarm.set(now + 30, now); // kept armed for +10: wakes early, sleeps again until +30
  await sleep(80);
  assert.equal(at.length, 1);
  assert.ok(at[0]! >= now + 29, `fired ${at[0]! - now} ms after arming, before the deadline`);
  assert.equal(alarm.fired, 1, "the early wake-up is not a firing");
});

Deno.test("alarm: a deadline moved earlier fires at the earlier one", async () => {
  for (const slackMs of [0, 25]) {
    const { alarm, at } = recorded(slackMs);
    const now = performance.now();
    alarm.set(now + 200, now);
    alarm.set(now + 10, now);
    await sleep(60);
    assert.equal(at.length, 1, `slack ${slackMs}`);
    alarm.clear();
  }
});

Deno.test("alarm: null and clear() stop it, kept timer or not", async () => {
  for (const slackMs of [0, 25]) {
    const { alarm, at } = recorded(slackMs);
    const now = performance.now();
    alarm.set(now + 10, now);
    alarm.set(null, now); // within the slack the timer may stay, but it must not fire
    const b = recorded(slackMs);
    b.alarm.set(now + 10, now);
    b.alarm.clear();
    await sleep(40);
    assert.equal(at.length, 0, `slack ${slackMs}: null`);
    assert.equal(b.at.length, 0, `slack ${slackMs}: clear`);
  }
});

Deno.test("alarm: a deadline moved far later re-arms rather than waking early", async () => {
  const { alarm, at } = recorded(25);
  const now = performance.now();
  alarm.set(now + 100, now);
  alarm.set(now + 10_000, now); // more than the slack later, and not due soon: re-armed
  await sleep(150);
  assert.equal(at.length, 0);
  assert.equal(alarm.earlyWakes, 0, "re-armed for the new deadline, not woken at the old one");
  // The positive control: moved later by less than the slack, the timer is kept and wakes early.
  const t = performance.now();
  alarm.set(t + 30, t);
  alarm.set(t + 50, t);
  await sleep(100);
  assert.equal(alarm.earlyWakes, 1);
  assert.equal(at.length, 1);
  alarm.clear();
});
