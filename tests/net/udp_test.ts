import assert from "node:assert/strict";
import { MAX_IN_FLIGHT_SENDS, openUdp, type UdpOptions } from "../../lib/net/udp.ts";
import { mmsgUsable } from "../../lib/net/mmsg.ts";
import type { Addr } from "../../lib/wire/addr.ts";

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

/** Opens a socket on loopback, runs `fn`, closes it and waits for its loop even on failure. */
async function withSocket(
  opts: UdpOptions,
  onPacket: (bytes: Uint8Array, from: Addr) => void,
  fn: (u: ReturnType<typeof openUdp>) => Promise<void>,
): Promise<void> {
  const u = openUdp("127.0.0.1", 0, onPacket, opts);
  try {
    await fn(u);
  } finally {
    u.close();
    await u.done;
  }
}

const backends: { name: string; opts: UdpOptions; skip?: boolean }[] = [
  { name: "one receive", opts: { receives: 1 } },
  { name: "four receives", opts: { receives: 4 } },
  { name: "batched system calls", opts: { batched: true }, skip: !mmsgUsable("127.0.0.1") },
];
for (const b of backends) {
  Deno.test({
    name: `udp (${b.name}): a burst arrives whole, each view intact while its handler runs`,
    ignore: b.skip,
    fn: async () => {
      const seen = new Set<number>();
      let bad = 0;
      await withSocket(b.opts, (bytes) => {
        // Every datagram is 100 copies of its own number: a view overwritten early shows.
        if (bytes.length !== 100 || bytes.some((x) => x !== bytes[0])) bad++;
        seen.add(bytes[0]!);
      }, async (rx) => {
        const tx = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
        try {
          const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: rx.local.port };
          // Fewer than the receive buffer holds, so loopback drops none.
          await Promise.all(
            Array.from({ length: 100 }, (_, i) => tx.send(new Uint8Array(100).fill(i), to)),
          );
          await until(() => seen.size === 100, 5000, "100 datagrams");
        } finally {
          tx.close();
        }
      });
      assert.equal(bad, 0);
    },
  });

  Deno.test({
    name: `udp (${b.name}): echo, sender address, errors counted, close ends the loop`,
    ignore: b.skip,
    fn: async () => {
      const got: string[] = [];
      let echo: ReturnType<typeof openUdp> | undefined;
      await withSocket(b.opts, (bytes, from) => echo!.send(bytes, from), async (server) => {
        echo = server;
        await withSocket(b.opts, (bytes, from) => {
          got.push(`${new TextDecoder().decode(bytes)} from ${from.host}:${from.port}`);
        }, async (client) => {
          client.send(new TextEncoder().encode("hello"), server.local);
          await until(() => got.length === 1, 5000, "the echo");
          assert.deepEqual(got, [`hello from 127.0.0.1:${server.local.port}`]);
          client.send(new Uint8Array(1), { host: "127.0.0.1", port: 0 }); // refused by the kernel
          await until(() => client.sendErrors === 1, 5000, "the failed send");
          assert.equal(client.sendDropped, 0);
        });
      });
    },
  });
}

Deno.test("udp: receives must be 1 to 64", () => {
  for (const receives of [0, 65, 1.5]) {
    assert.throws(() => openUdp("127.0.0.1", 0, () => {}, { receives }), RangeError);
  }
});

Deno.test({
  name: "udp (batched asked for): a port in use fails as it does without batching",
  ignore: !mmsgUsable("127.0.0.1"),
  fn: async () => {
    const taken = openUdp("127.0.0.1", 0, () => {});
    try {
      const plain = (() => {
        try {
          openUdp("127.0.0.1", taken.local.port, () => {}).close();
          return null;
        } catch (e) {
          return e;
        }
      })();
      assert.ok(plain instanceof Deno.errors.AddrInUse, String(plain));
      assert.throws(
        () => openUdp("127.0.0.1", taken.local.port, () => {}, { batched: true }),
        Deno.errors.AddrInUse,
      );
    } finally {
      taken.close();
      await taken.done;
    }
  },
});
