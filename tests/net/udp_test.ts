import assert from "node:assert/strict";
import { MAX_IN_FLIGHT_SENDS, openUdp } from "../../lib/net/udp.ts";

/** Waits until `ok()` holds, checking every few ms; fails after `ms`. */
async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A sender and a receiver on loopback, both closed afterwards even on failure. */
async function withPair(
  maxInFlight: number | undefined,
  fn: (
    tx: ReturnType<typeof openUdp>,
    to: { host: string; port: number },
    received: () => number,
  ) => Promise<void>,
): Promise<void> {
  let got = 0;
  const rx = openUdp("127.0.0.1", 0, () => got++);
  const tx = openUdp("127.0.0.1", 0, () => {}, maxInFlight === undefined ? {} : { maxInFlight });
  try {
    await fn(tx, rx.local, () => got);
  } finally {
    tx.close();
    rx.close();
    await Promise.all([tx.done, rx.done]);
  }
}

const burstCases = [
  { name: "the default bound", maxInFlight: undefined, bound: MAX_IN_FLIGHT_SENDS, burst: 3000 },
  { name: "a small bound", maxInFlight: 8, bound: 8, burst: 100 },
];
for (const c of burstCases) {
  Deno.test(`udp: a send burst keeps at most ${c.name} in flight, drops and counts the rest`, () =>
    withPair(c.maxInFlight, async (tx, to, received) => {
      const datagram = new Uint8Array(200).fill(7);
      let most = 0;
      // One synchronous burst: no send can finish before it ends, so the numbers are exact.
      for (let i = 0; i < c.burst; i++) {
        tx.send(datagram, to);
        assert.ok(tx.inFlight <= c.bound, `in flight ${tx.inFlight} > ${c.bound}`);
        most = Math.max(most, tx.inFlight);
      }
      assert.equal(most, c.bound);
      assert.equal(tx.sendDropped, c.burst - c.bound);
      await until(() => tx.inFlight === 0, 5000, "the sends to finish");
      assert.equal(tx.sendErrors, 0);
      await until(() => received() > 0, 5000, "a datagram to arrive");
      // Room again: the next send goes out.
      tx.send(datagram, to);
      assert.equal(tx.inFlight, 1);
      assert.equal(tx.sendDropped, c.burst - c.bound);
      await until(() => tx.inFlight === 0, 5000, "the last send to finish");
    }));
}

Deno.test("udp: a failing send is counted as an error and frees its slot", () =>
  withPair(1, async (tx) => {
    tx.send(new Uint8Array(10), { host: "127.0.0.1", port: 0 }); // port 0: the kernel refuses
    assert.equal(tx.inFlight, 1);
    await until(() => tx.inFlight === 0, 5000, "the failed send");
    assert.equal(tx.sendErrors, 1);
    assert.equal(tx.sendDropped, 0);
  }));
