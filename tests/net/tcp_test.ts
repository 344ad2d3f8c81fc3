/** The TCP connections of TCP punching (lib/net/tcp.ts) against a plain server on loopback. */
import assert from "node:assert/strict";
import * as net from "node:net";
import { MAX_TCP_MESSAGE, TcpSockets } from "../../lib/net/tcp.ts";
import type { Addr } from "../../lib/wire/addr.ts";

interface Seen {
  packets: { bytes: number[]; from: Addr; via: number }[];
  states: [number, string][];
}

/** A server on loopback whose connection is handed to `onConn`; and TcpSockets recording. */
async function setup(onConn: (c: net.Socket) => void) {
  const server = net.createServer(onConn);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const seen: Seen = { packets: [], states: [] };
  let wake = () => {};
  const tcp = new TcpSockets({
    bindHost: "0.0.0.0",
    onPacket: (bytes, from, via) => {
      seen.packets.push({ bytes: [...bytes], from, via });
      wake();
    },
    onState: (via, state) => {
      seen.states.push([via, state]);
      wake();
    },
  });
  const until = async (ok: () => boolean) => {
    const end = Date.now() + 3000;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(seen)}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
  };
  const done = async () => {
    tcp.closeAll();
    await new Promise((r) => server.close(r));
  };
  return { port, seen, tcp, until, done };
}

const frame = (...msgs: number[][]) =>
  Uint8Array.from(msgs.flatMap((m) => [m.length >> 8, m.length & 0xff, ...m]));

Deno.test("tcp: frames cut anywhere and run together arrive whole, in order", async () => {
  const wire = frame([1, 2, 3], [4], Array.from({ length: 300 }, (_, i) => i & 0xff));
  const s = await setup(async (c) => {
    // One byte per write, then the rest at once: both ways of splitting.
    for (let i = 0; i < 7; i++) {
      c.write(wire.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 5));
    }
    c.write(wire.subarray(7));
  });
  try {
    s.tcp.open(7, 0, { host: "127.0.0.1", port: s.port, tcp: true });
    await s.until(() => s.seen.packets.length === 3);
    assert.deepEqual(s.seen.states, [[7, "open"]]);
    assert.deepEqual(s.seen.packets.map((p) => p.bytes.length), [3, 1, 300]);
    assert.deepEqual(s.seen.packets[0], {
      bytes: [1, 2, 3],
      from: { host: "127.0.0.1", port: s.port, tcp: true },
      via: 7,
    });
  } finally {
    await s.done();
  }
});

Deno.test("tcp: sends are framed; before the connection is up and too big, dropped", async () => {
  const got: number[] = [];
  const s = await setup((c) => c.on("data", (d: Uint8Array) => got.push(...d)));
  try {
    s.tcp.open(3, 0, { host: "127.0.0.1", port: s.port, tcp: true });
    s.tcp.send(3, Uint8Array.of(9));
    assert.equal(s.tcp.dropped, 1, "not connected yet");
    await s.until(() => s.seen.states.length === 1);
    s.tcp.send(3, new Uint8Array(MAX_TCP_MESSAGE + 1));
    assert.equal(s.tcp.dropped, 2, "too big");
    s.tcp.send(3, Uint8Array.of(5, 6));
    s.tcp.send(99, Uint8Array.of(5, 6));
    assert.equal(s.tcp.dropped, 3, "no such connection");
    await s.until(() => got.length === 4);
    assert.deepEqual(got, [0, 2, 5, 6]);
  } finally {
    await s.done();
  }
});

const BAD = [
  { name: "length 0", bytes: [0, 0] },
  {
    name: "longer than a datagram",
    bytes: [(MAX_TCP_MESSAGE + 1) >> 8, (MAX_TCP_MESSAGE + 1) & 0xff],
  },
];
for (const c of BAD) {
  Deno.test(`tcp: a frame of ${c.name} closes the connection, reported once`, async () => {
    const s = await setup((sock) => sock.write(Uint8Array.from([...frame([1]), ...c.bytes, 7])));
    try {
      s.tcp.open(5, 0, { host: "127.0.0.1", port: s.port, tcp: true });
      await s.until(() => s.seen.states.length === 2);
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(s.seen.states, [[5, "open"], [5, "closed"]]);
      assert.equal(s.seen.packets.length, 1, "the good frame before it still arrives");
      assert.equal(s.tcp.badFrames, 1);
      assert.equal(s.tcp.has(5), false);
    } finally {
      await s.done();
    }
  });
}

Deno.test("tcp: a close we ask for reports nothing; a refused connect reports closed once", async () => {
  const s = await setup(() => {});
  try {
    s.tcp.open(1, 0, { host: "127.0.0.1", port: s.port, tcp: true });
    await s.until(() => s.seen.states.length === 1);
    s.tcp.close(1);
    // Nobody listens there any more.
    const port = s.port;
    await s.done();
    s.tcp.open(2, 0, { host: "127.0.0.1", port, tcp: true });
    await s.until(() => s.seen.states.length === 2);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(s.seen.states, [[1, "open"], [2, "closed"]]);
    assert.equal(s.tcp.has(2), false);
  } finally {
    s.tcp.closeAll();
  }
});
