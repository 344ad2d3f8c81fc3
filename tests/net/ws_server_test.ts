/**
 * The WebSocket endpoint: its bookkeeping (WsLimits, HeldAddrs) with a fake clock, and
 * openWsServer on real sockets in this process: paths, frame rules, caps, deadlines (kept by
 * what the server sends, not by what it hears), Addrs not reused while held, stopping, and the
 * unsent-bytes bound.
 */
import assert from "node:assert/strict";
import {
  defaultWsLimits,
  HeldAddrs,
  type WsLimitConfig,
  WsLimits,
} from "../../lib/net/ws_limits.ts";
import {
  CLOSE,
  MAX_FRAME,
  openWsServer,
  plainHost,
  WS_PATH,
  type WsServer,
} from "../../lib/net/ws_server.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { MAX_DATAGRAM, MAX_SEND } from "../../lib/wire/sizes.ts";
import { encode, NO_TOKEN } from "../../lib/wire/codec.ts";
import { silenceMs } from "../../lib/server/config.ts";
import { DEFAULT_SERVER_CONFIG } from "../../lib/server/state.ts";
import { parseCidr } from "../../lib/server/forwarded.ts";
import { frame, RawClient, WsMember } from "../_helpers/ws_client.ts";

const LIMITS: WsLimitConfig = {
  maxPerIp: 2,
  maxConnections: 4,
  firstMessageMs: 100,
  idleMs: 1000,
  addrHoldMs: 1000,
};

Deno.test("ws limits: per source IP (an IPv6 /64 counts as one) and in total", () => {
  const l = new WsLimits({ ...LIMITS, maxConnections: 5 });
  const cases: [string, boolean | string][] = [
    ["192.0.2.1", true],
    ["192.0.2.1", true],
    ["192.0.2.1", "per_ip"],
    ["2001:db8::1", true],
    ["2001:db8::2", true], // same /64
    ["2001:db8::3", "per_ip"],
    ["2001:db8:0:1::1", true], // another /64
    ["2001:db8:0:2::1", "total"], // another /64, but 5 are open
  ];
  const ids: number[] = [];
  for (const [host, want] of cases) {
    const r = l.admit(host, 0);
    if (want === true) {
      assert.ok(r.ok, host);
      ids.push(r.id);
    } else assert.deepEqual(r, { ok: false, reason: want }, host);
  }
  assert.equal(l.open, 5);
  l.closed(ids[0]!);
  l.closed(ids[0]!); // twice changes nothing
  assert.equal(l.open, 4);
  assert.ok(l.admit("192.0.2.1", 0).ok, "room again for that IP");
  assert.deepEqual(l.admit("198.51.100.1", 0), { ok: false, reason: "total" });
});

Deno.test("ws limits: v4-mapped IPv6 counts as its IPv4 address", () => {
  const l = new WsLimits({ ...LIMITS, maxPerIp: 1 });
  assert.ok(l.admit("192.0.2.1", 0).ok);
  assert.deepEqual(l.admit("::ffff:192.0.2.1", 0), { ok: false, reason: "per_ip" });
});

Deno.test("ws limits: first-message and idle deadlines, each reported once", () => {
  const l = new WsLimits(LIMITS);
  assert.equal(l.nextDeadline(), null);
  const a = l.admit("192.0.2.1", 0);
  const b = l.admit("192.0.2.2", 50);
  assert.ok(a.ok && b.ok);
  assert.equal(l.nextDeadline(), 100);
  l.touch(a.id, 60); // a was answered: live now, idle deadline 1060
  assert.equal(l.nextDeadline(), 150);
  assert.deepEqual(l.due(149), []);
  assert.deepEqual(l.due(150), [{ id: b.id, why: "first_message_timeout" }]);
  assert.deepEqual(l.due(150), [], "reported once");
  assert.equal(l.open, 2, "counted until closed");
  l.closed(b.id);
  l.touch(a.id, 500); // moves the idle deadline to 1500
  assert.equal(l.nextDeadline(), 1500);
  assert.deepEqual(l.due(1499), []);
  assert.deepEqual(l.due(1500), [{ id: a.id, why: "idle_timeout" }]);
  assert.equal(l.nextDeadline(), null);
  l.touch(999, 0); // unknown ids are ignored
  assert.equal(l.nextDeadline(), null);
});

Deno.test("ws limits: time running backwards counts as the latest time seen", () => {
  const l = new WsLimits(LIMITS);
  const a = l.admit("192.0.2.1", 1000);
  const b = l.admit("192.0.2.2", 0); // earlier than seen: deadline 1100, after a's
  assert.ok(a.ok && b.ok);
  assert.deepEqual(l.due(1100).map((x) => x.id), [a.id, b.id]);
});

Deno.test("ws limits: the defaults follow the keepalive interval", () => {
  const d = defaultWsLimits(15_000);
  assert.equal(d.idleMs, 60_000);
  const silence = silenceMs({ ...DEFAULT_SERVER_CONFIG, keepaliveMs: 15_000 });
  assert.ok(d.idleMs > silence, "longer than the server's silence limit");
  assert.ok(d.addrHoldMs > silence, "Addrs held longer than a registration outlives its link");
  assert.equal(d.maxConnections, 1024);
  assert.ok(MAX_FRAME >= MAX_DATAGRAM && MAX_DATAGRAM >= MAX_SEND);
});

Deno.test("ws held addrs: taken until holdMs after the close, swept in order, bounded", () => {
  const h = new HeldAddrs(1000, 3);
  h.hold("a", 0);
  h.hold("b", 100);
  assert.ok(h.has("a", 999) && h.has("b", 999));
  assert.ok(!h.has("a", 1000), "a's hold ended at 1000");
  assert.ok(h.has("b", 1099));
  assert.equal(h.size, 1, "a swept");
  h.hold("b", 1100); // closed again: held from the later close
  assert.ok(h.has("b", 2099) && !h.has("b", 2100));
  h.hold("c", 3000);
  h.hold("d", 3000);
  h.hold("e", 3000);
  h.hold("f", 3000); // past the bound: the oldest (c) goes early
  assert.equal(h.size, 3);
  assert.ok(!h.has("c", 3001) && h.has("d", 3001) && h.has("f", 3001));
  assert.ok(h.has("d", 0), "time running backwards counts as the latest seen");
});

Deno.test("ws plainHost: v4-mapped IPv6 becomes IPv4; the rest stays", () => {
  assert.equal(plainHost("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(plainHost("::FFFF:c000:0207"), "192.0.2.7");
  assert.equal(plainHost("2001:db8::1"), "2001:db8::1");
  assert.equal(plainHost("192.0.2.7"), "192.0.2.7");
});

/** An echo endpoint on loopback (`onMessage` may be replaced), closed afterwards. */
async function withEcho(
  limits: Partial<WsLimitConfig>,
  fn: (ws: WsServer, port: number, got: { bytes: Uint8Array; from: Addr }[]) => Promise<void>,
  maxUnsent?: number,
  more: { trustProxy?: string; answer?: (bytes: Uint8Array) => Uint8Array | null } = {},
): Promise<void> {
  const got: { bytes: Uint8Array; from: Addr }[] = [];
  const proxy = more.trustProxy ? parseCidr(more.trustProxy) : null;
  const ws: WsServer = openWsServer({
    hostname: "127.0.0.1",
    port: 0,
    limits: { ...LIMITS, maxConnections: 100, ...limits },
    ...(maxUnsent !== undefined ? { maxUnsent } : {}),
    ...(proxy?.ok ? { trustProxy: [proxy.value] } : {}),
  }, (bytes, from) => {
    got.push({ bytes, from });
    if (bytes[0] === 0xee) throw new Error("a handler bug");
    const reply = more.answer ? more.answer(bytes) : bytes;
    if (reply) ws.send(reply, from);
  });
  try {
    await fn(ws, ws.local.port, got);
  } finally {
    await ws.close();
  }
}

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name: `ws server: ${name}`, sanitizeOps: false, sanitizeResources: false, fn });

test("other paths get 404, plain requests to /p2pchat 426", () =>
  withEcho({}, async (ws, port) => {
    const base = `http://127.0.0.1:${port}`;
    for (const [path, status] of [["/", 404], ["/p2pchatx", 404], [WS_PATH, 426]] as const) {
      const r = await fetch(base + path);
      await r.body?.cancel();
      assert.equal(r.status, status, path);
    }
    assert.equal(ws.counts.get("not_found"), 2);
    assert.equal(ws.counts.get("upgrade_required"), 1);
  }));

test("each binary frame is one message; the sender is an Addr with tcp set", () =>
  withEcho({}, async (ws, port, got) => {
    const m = await WsMember.open(`ws://127.0.0.1:${port}${WS_PATH}`);
    try {
      const echoed: Uint8Array[] = [];
      m.ws.onmessage = (e) => echoed.push(new Uint8Array(e.data as ArrayBuffer));
      const sizes = [1, 3, 100, MAX_FRAME];
      for (const n of sizes) m.send(new Uint8Array(n).fill(n & 0xff));
      const end = Date.now() + 5000;
      while (echoed.length < sizes.length && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(echoed.map((b) => b.length), sizes);
      assert.deepEqual(got.map((g) => g.bytes.length), sizes);
      assert.equal(got[0]!.from.tcp, true);
      assert.equal(got[0]!.from.host, "127.0.0.1");
      assert.equal(ws.open, 1);
      // A send to a UDP Addr of the same ip:port is not this connection.
      ws.send(new Uint8Array(1), { host: "127.0.0.1", port: got[0]!.from.port });
      assert.equal(ws.counts.get("send_no_connection"), 1);
    } finally {
      m.close();
    }
  }));

test("a handler that throws is reported and the connection goes on", () =>
  withEcho({}, async (_ws, port, got) => {
    const m = await WsMember.open(`ws://127.0.0.1:${port}${WS_PATH}`);
    const errors: unknown[] = [];
    const real = console.error;
    console.error = (...a: unknown[]) => errors.push(a);
    try {
      m.send(new Uint8Array([0xee]));
      m.send(new Uint8Array([1]));
      const end = Date.now() + 5000;
      while (got.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      assert.equal(got.length, 2);
      assert.equal(errors.length, 1);
      assert.equal(m.closed, null);
    } finally {
      console.error = real;
      m.close();
    }
  }));

const closing = [
  { name: "a text frame closes with 1003", op: 1, size: 5, code: CLOSE.unsupportedData },
  {
    name: "a frame over MAX_FRAME closes with 1009",
    op: 2,
    size: MAX_FRAME + 1,
    code: CLOSE.tooBig,
  },
  { name: "a 1 MB frame closes with 1009", op: 2, size: 1 << 20, code: CLOSE.tooBig },
];
for (const c of closing) {
  test(c.name, () =>
    withEcho({}, async (ws, port, got) => {
      const raw = await RawClient.upgraded(port);
      try {
        await raw.write(frame(c.op, new Uint8Array(c.size).fill(0x41)));
        const r = await raw.untilClosed(5000);
        assert.equal(r.code, c.code);
        assert.equal(got.length, 0);
        assert.equal(ws.counts.get(c.op === 1 ? "text_frame" : "oversized_frame"), 1);
      } finally {
        raw.close();
      }
    }));
}

test("per-IP cap: the connection past it gets 503; a closed one makes room", () =>
  withEcho({ maxPerIp: 3 }, async (ws, port) => {
    const url = `ws://127.0.0.1:${port}${WS_PATH}`;
    const open = [await WsMember.open(url), await WsMember.open(url), await WsMember.open(url)];
    try {
      for (const m of open) m.send(new Uint8Array([1]));
      await assert.rejects(WsMember.open(url));
      assert.equal(ws.counts.get("per_ip"), 1);
      open.shift()!.close();
      const end = Date.now() + 5000;
      while (ws.open > 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      open.push(await WsMember.open(url));
    } finally {
      open.forEach((m) => m.close());
    }
  }));

test("a connection that sends nothing is closed at the first-message deadline", () =>
  withEcho({ firstMessageMs: 300 }, async (ws, port) => {
    const raw = await RawClient.upgraded(port);
    try {
      const t0 = Date.now();
      const r = await raw.untilClosed(5000);
      const took = Date.now() - t0;
      assert.equal(r.code, CLOSE.policy);
      assert.ok(took >= 250 && took < 2000, `closed after ${took} ms`);
      assert.equal(ws.counts.get("first_message_timeout"), 1);
      // It hangs up without answering the close: the slot is free again.
      raw.close();
      const end = Date.now() + 5000;
      while (ws.open > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      assert.equal(ws.open, 0);
    } finally {
      raw.close();
    }
  }));

test("a connection silent past the idle deadline is closed; messages keep it open", () =>
  withEcho({ firstMessageMs: 300, idleMs: 400 }, async (ws, port) => {
    const m = await WsMember.open(`ws://127.0.0.1:${port}${WS_PATH}`);
    try {
      for (let i = 0; i < 8; i++) {
        m.send(new Uint8Array([1]));
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(m.closed, null, "open while it talks (800 ms > both deadlines)");
      assert.equal(await m.closedWith(3000), CLOSE.policy);
      assert.equal(ws.counts.get("idle_timeout"), 1);
    } finally {
      m.close();
    }
  }));

test("a client that never reads: unsent bytes stay under the bound, the rest is dropped", () =>
  withEcho({}, async (ws, port, got) => {
    const raw = await RawClient.upgraded(port);
    try {
      await raw.write(frame(2, new Uint8Array([1])));
      const end = Date.now() + 5000;
      while (got.length < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      const to = got[0]!.from;
      const chunk = new Uint8Array(1200);
      // 64 MB offered; the kernel's socket buffers take a few MB, the bound 64 KiB more.
      let rounds = 0;
      while (!ws.counts.get("send_dropped") && rounds++ < 500) {
        for (let i = 0; i < 100; i++) ws.send(chunk, to);
        await new Promise((r) => setTimeout(r, 5));
      }
      const dropped = ws.counts.get("send_dropped") ?? 0;
      assert.ok(dropped > 0, "sends were dropped");
      assert.equal(ws.counts.get("send_error") ?? 0, 0);
    } finally {
      raw.close();
    }
  }, 64 * 1024));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Answers frames starting with 1 (accepted), ignores the rest (junk), refuses 2 with ERROR. */
const picky = (b: Uint8Array) =>
  b[0] === 1
    ? b
    : b[0] === 2
    ? encode({ type: "error", code: 1, about: 0, token: NO_TOKEN, text: "" })
    : null;

test("junk every 100 ms, unanswered, is closed at the first-message deadline", () =>
  withEcho(
    { firstMessageMs: 500, idleMs: 1000, maxPerIp: 3 },
    async (ws, port, got) => {
      const junk = await WsMember.open(`ws://127.0.0.1:${port}${WS_PATH}`);
      const refused = await WsMember.open(`ws://127.0.0.1:${port}${WS_PATH}`);
      const live = await WsMember.open(`ws://127.0.0.1:${port}${WS_PATH}`);
      try {
        const t0 = Date.now();
        while (Date.now() - t0 < 1800 && junk.closed === null) {
          junk.send(new Uint8Array([0x50, 1, 2, 3]));
          if (refused.closed === null) refused.send(new Uint8Array([2]));
          live.send(new Uint8Array([1]));
          await sleep(100);
        }
        const took = Date.now() - t0;
        assert.equal(await junk.closedWith(3000), CLOSE.policy);
        assert.ok(took >= 400 && took < 1500, `junk closed after ${took} ms`);
        assert.equal(await refused.closedWith(3000), CLOSE.policy, "ERROR answers keep nothing");
        // Past the first-message deadline and the idle one: answered, it stays.
        for (let i = 0; i < 12; i++) {
          live.send(new Uint8Array([1]));
          await sleep(100);
        }
        assert.equal(live.closed, null, "the answered connection is open after 3 s");
        assert.ok(got.length > 20, "every frame reached the handler");
        assert.equal(ws.counts.get("first_message_timeout"), 2);
      } finally {
        [junk, refused, live].forEach((m) => m.close());
      }
    },
    undefined,
    { answer: picky },
  ));

/** An upgrade through a "proxy" (this process, trusted) naming `xff` as the client. */
async function viaProxy(port: number, xff: string): Promise<RawClient> {
  const c = await RawClient.connect(port);
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await c.write(
    new TextEncoder().encode(
      `GET ${WS_PATH} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: ${xff}\r\n\r\n`,
    ),
  );
  const head = await c.readHead();
  if (!head.startsWith("HTTP/1.1 101")) throw new Error(`no upgrade: ${head.split("\r\n")[0]}`);
  return c;
}

test("an Addr stays taken for addrHoldMs after its connection closed", () =>
  withEcho(
    { addrHoldMs: 600, firstMessageMs: 5000 },
    async (ws, port, got) => {
      /** Connects as 203.0.113.9:4711, sends one frame, closes: the Addr the server gave it. */
      const once = async () => {
        const n = got.length;
        const c = await viaProxy(port, "203.0.113.9:4711");
        try {
          await c.write(frame(2, new Uint8Array([1])));
          const end = Date.now() + 5000;
          while (got.length === n && Date.now() < end) await sleep(5);
          return got[n]!.from;
        } finally {
          c.close();
          const end = Date.now() + 5000;
          while (ws.open > 0 && Date.now() < end) await sleep(5);
        }
      };
      const first = await once();
      assert.deepEqual(first, { host: "203.0.113.9", port: 4711, tcp: true });
      // The first closed a moment ago: its registration may live on, so not its Addr.
      const second = await once();
      assert.equal(second.host, "203.0.113.9");
      assert.notEqual(second.port, first.port, "a new connection never gets a just-closed Addr");
      const third = await once();
      assert.ok(![first.port, second.port].includes(third.port));
      assert.equal(ws.counts.get("port_moved"), 2);
      await sleep(700); // past the hold
      assert.equal((await once()).port, 4711, "free again once held long enough");
    },
    undefined,
    { trustProxy: "127.0.0.1/32" },
  ));

test("frames arriving while the endpoint stops never reach the handler", async () => {
  let server: WsServer | null = null;
  let stopping: Promise<void> | null = null;
  let handled = 0;
  // The first frame stops the endpoint, from inside the handler: the 199 behind it were sent
  // in the same write and are read after close() began. (Deno's server.shutdown() stops the
  // reads as well, measured; the endpoint's own check keeps this true whatever it does.)
  const answer = (b: Uint8Array) => {
    handled++;
    stopping ??= server!.close();
    return b;
  };
  await withEcho(
    {},
    async (ws, port) => {
      server = ws;
      const raw = await RawClient.upgraded(port);
      try {
        const frames = Array.from({ length: 200 }, (_, i) => frame(2, new Uint8Array([1, i])));
        const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
        frames.reduce((at, f) => (all.set(f, at), at + f.length), 0);
        await raw.write(all);
        const end = Date.now() + 5000;
        while (!stopping && Date.now() < end) await sleep(5);
        await stopping;
        await sleep(200);
        assert.equal(handled, 1, "nothing handled after close() began");
      } finally {
        raw.close();
      }
    },
    undefined,
    { answer },
  );
});
