/** The socket edge over loopback: resends, filtering, time limits, size limits, no leaks. */
import assert from "node:assert/strict";
import { httpExchange, udpExchange } from "../../lib/portmap/_io.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A UDP responder on loopback: `reply` decides what (if anything) to answer each datagram. */
function udpServer(reply: (data: Uint8Array, n: number) => Uint8Array[]) {
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  let n = 0;
  const loop = (async () => {
    const buf = new Uint8Array(2048);
    for (;;) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await s.receive(buf);
      } catch {
        return;
      }
      for (const out of reply(got[0].slice(), n++)) await s.send(out, got[1]);
    }
  })();
  return {
    port: (s.addr as Deno.NetAddr).port,
    count: () => n,
    close: async () => {
      s.close();
      await loop;
    },
  };
}

Deno.test("io: udpExchange resends until an acceptable answer comes", async () => {
  // Ignores the first two datagrams, then answers with junk and then the real thing.
  const srv = udpServer((d, n) => n < 2 ? [] : [enc("junk"), enc(`ok:${dec(d)}`)]);
  try {
    const r = await udpExchange({
      out: [{ hostname: "127.0.0.1", port: srv.port, bytes: enc("hi") }],
      accept: (b, from) => dec(b).startsWith("ok:") ? `${dec(b)} from ${from.port}` : undefined,
      resendMs: [20, 40],
      signal: AbortSignal.timeout(1000),
    });
    assert.equal(r, `ok:hi from ${srv.port}`);
    assert.equal(srv.count(), 3);
  } finally {
    await srv.close();
  }
});

Deno.test("io: udpExchange gives null when its signal ends, and when nothing can be sent", async () => {
  const srv = udpServer(() => []);
  try {
    const t0 = performance.now();
    const r = await udpExchange({
      out: [{ hostname: "127.0.0.1", port: srv.port, bytes: enc("hi") }],
      accept: () => "never",
      signal: AbortSignal.timeout(60),
    });
    assert.equal(r, null);
    assert.ok(performance.now() - t0 < 300);
  } finally {
    await srv.close();
  }
  const aborted = new AbortController();
  aborted.abort();
  assert.equal(
    await udpExchange({
      out: [{ hostname: "127.0.0.1", port: 9, bytes: enc("x") }],
      accept: () => 1,
      signal: aborted.signal,
    }),
    null,
  );
  // An invalid destination fails every send: no waiting at all.
  assert.equal(
    await udpExchange({
      out: [{ hostname: "0.0.0.0", port: 0, bytes: enc("x") }],
      accept: () => 1,
      signal: AbortSignal.timeout(5000),
    }),
    null,
  );
});

function tcpServer(handle: (conn: Deno.Conn) => Promise<void>) {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const loop = (async () => {
    for await (const c of l) {
      conns.push(c);
      handle(c).catch(() => {});
    }
  })();
  return {
    url: (path: string) => new URL(`http://127.0.0.1:${(l.addr as Deno.NetAddr).port}${path}`),
    close: async () => {
      l.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed by the handler
        }
      }
      await loop;
    },
  };
}

async function writeAll(c: Deno.Conn, b: Uint8Array) {
  for (let off = 0; off < b.length;) off += await c.write(b.subarray(off));
}

Deno.test("io: httpExchange sends the request and reads the answer to the close", async () => {
  let seen = "";
  const srv = tcpServer(async (c) => {
    const buf = new Uint8Array(4096);
    const n = await c.read(buf);
    seen = dec(buf.subarray(0, n ?? 0));
    await writeAll(c, enc("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<a/>"));
    c.close();
  });
  try {
    const r = await httpExchange(
      { method: "POST", url: srv.url("/ctl"), body: "xyz" },
      AbortSignal.timeout(1000),
    );
    assert.ok(r.ok);
    assert.equal(r.value.body, "<a/>");
    assert.match(seen, /^POST \/ctl HTTP\/1\.1\r\n[\s\S]*Content-Length: 3\r\n\r\nxyz$/);
  } finally {
    await srv.close();
  }
});

Deno.test("io: httpExchange gives up on a silent server, a flood, a refused connection", async () => {
  const silent = tcpServer(() => new Promise(() => {}));
  try {
    const t0 = performance.now();
    const r = await httpExchange({ method: "GET", url: silent.url("/") }, AbortSignal.timeout(80));
    assert.deepEqual(r, { ok: false, reason: "aborted" });
    assert.ok(performance.now() - t0 < 500);
  } finally {
    await silent.close();
  }
  const flood = tcpServer(async (c) => {
    const chunk = new Uint8Array(16 * 1024).fill(0x41);
    try {
      for (let i = 0; i < 10; i++) await writeAll(c, chunk);
    } catch {
      // the client hung up, as it should
    }
    c.close();
  });
  try {
    const r = await httpExchange({ method: "GET", url: flood.url("/") }, AbortSignal.timeout(2000));
    assert.deepEqual(r, { ok: false, reason: "too-long" });
  } finally {
    await flood.close();
  }
  const closed = tcpServer(() => Promise.resolve());
  const url = closed.url("/");
  await closed.close();
  const r = await httpExchange({ method: "GET", url }, AbortSignal.timeout(1000));
  assert.deepEqual(r, { ok: false, reason: "connection-failed" });
});
