/**
 * The server's RFC 5780 answers: which socket answers which request, with what, and never
 * more than a fixed size; then the same on real sockets through `serve`.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Logger } from "@logtape/logtape";
import {
  answerStun,
  isRfc5780,
  MAX_STUN_ANSWER_V4,
  PRIMARY_ONLY,
  type StunLayout,
  type StunSocket,
} from "../../lib/server/stun.ts";
import { type ServerAction, ServerState } from "../../lib/server/state.ts";
import { bindingRequest, decodeBindingAnswer } from "../../lib/stun/binding.ts";
import { encode } from "../../lib/wire/codec.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { serve } from "../../server.ts";

const P: Addr = { host: "198.51.100.2", port: 3478 };
const P1: Addr = { host: "198.51.100.2", port: 3479 };
const A: Addr = { host: "198.51.100.3", port: 3478 };
const A1: Addr = { host: "198.51.100.3", port: 3479 };
const CLIENT: Addr = { host: "203.0.113.10", port: 40000 };
const TXID = new Uint8Array(12).fill(7);

const FULL: StunLayout = { sockets: [P, P1, A, A1] };
const PORT_ONLY: StunLayout = { sockets: [P, P1, null, null] };
const WILDCARD: StunLayout = {
  sockets: [{ host: "0.0.0.0", port: 3478 }, { host: "0.0.0.0", port: 3479 }, null, null],
};

type Change = { ip: boolean; port: boolean } | undefined;
const NONE = undefined;
const PORT = { ip: false, port: true };
const IP = { ip: true, port: false };
const BOTH = { ip: true, port: true };

/** layout, receiving socket, CHANGE-REQUEST -> answering socket, or 420. */
const cases: [string, StunLayout, StunSocket, Change, StunSocket | 420][] = [
  ["full: plain on 0", FULL, 0, NONE, 0],
  ["full: change port on 0", FULL, 0, PORT, 1],
  ["full: change ip on 0", FULL, 0, IP, 2],
  ["full: change both on 0", FULL, 0, BOTH, 3],
  ["full: plain on 3", FULL, 3, NONE, 3],
  ["full: change both on 3", FULL, 3, BOTH, 0],
  ["full: change port on 2", FULL, 2, PORT, 3],
  ["full: change ip on 1", FULL, 1, IP, 3],
  ["full: no flags set", FULL, 0, { ip: false, port: false }, 0],
  ["port only: change port on 0", PORT_ONLY, 0, PORT, 1],
  ["port only: change port on 1", PORT_ONLY, 1, PORT, 0],
  ["port only: change ip", PORT_ONLY, 0, IP, 420],
  ["port only: change both", PORT_ONLY, 0, BOTH, 420],
  ["primary only: change port", PRIMARY_ONLY, 0, PORT, 420],
  ["primary only: plain", PRIMARY_ONLY, 0, NONE, 0],
];

for (const [name, layout, via, change, want] of cases) {
  Deno.test(`stun 5780: ${name} -> ${want === 420 ? "error 420" : `socket ${want}`}`, () => {
    const a = answerStun(bindingRequest(TXID, { change }), CLIENT, via, layout);
    assert.ok(a.ok);
    const d = decodeBindingAnswer(a.bytes);
    assert.ok(d.ok, "a Binding response");
    if (want === 420) {
      assert.equal(a.socket, via, "the refusal comes from the socket asked");
      assert.deepEqual(d.value, {
        class: "error",
        transactionId: TXID,
        code: 420,
        unknown: [0x0003],
      });
      return;
    }
    assert.equal(a.socket, want);
    assert.ok(d.value.class === "success");
    assert.deepEqual(d.value.mapped, CLIENT);
    if (isRfc5780(layout)) {
      assert.deepEqual(d.value.origin, layout.sockets[want], "RESPONSE-ORIGIN: the sender");
      assert.deepEqual(d.value.other, layout.sockets[via ^ 3], "OTHER-ADDRESS: the other one");
    } else {
      assert.equal(d.value.origin, null);
      assert.equal(d.value.other, null);
    }
  });
}

Deno.test("stun 5780: only a full layout on concrete addresses is RFC 5780", () => {
  assert.equal(isRfc5780(FULL), true);
  assert.equal(isRfc5780(PORT_ONLY), false);
  assert.equal(isRfc5780(PRIMARY_ONLY), false);
  assert.equal(isRfc5780(WILDCARD), false);
  assert.equal(isRfc5780({ sockets: [{ host: "0.0.0.0", port: 1 }, P1, A, A1] }), false);
});

Deno.test("stun 5780: RESPONSE-PORT is refused (420) rather than aimed elsewhere", () => {
  const a = answerStun(bindingRequest(TXID, { responsePort: 9 }), CLIENT, 0, FULL);
  assert.ok(a.ok && a.socket === 0);
  const d = decodeBindingAnswer(a.bytes);
  assert.ok(d.ok && d.value.class === "error");
  assert.equal(d.value.code, 420);
  assert.deepEqual(d.value.unknown, [0x0027]);
});

Deno.test("stun 5780: drops what is not a Binding request", () => {
  assert.deepEqual(answerStun(new Uint8Array(20), CLIENT, 0, FULL), {
    ok: false,
    reason: "stun_malformed",
  });
  const indication = bindingRequest(TXID, { fingerprint: false });
  indication[1] = 0x11; // class indication
  assert.deepEqual(answerStun(indication, CLIENT, 0, FULL), {
    ok: false,
    reason: "stun_unsupported",
  });
});

Deno.test("stun 5780: no answer to an IPv4 source is ever over 64 bytes, whatever it sent", () => {
  const attr = fc.record({
    type: fc.constantFrom(0x0003, 0x0027, 0x0026, 0x8028, 0x0006, 0x8022, 0x7fff),
    value: fc.uint8Array({ maxLength: 40 }),
  });
  fc.assert(
    fc.property(
      fc.array(attr, { maxLength: 6 }),
      fc.constantFrom<StunSocket>(0, 1, 2, 3),
      fc.constantFrom(FULL, PORT_ONLY, PRIMARY_ONLY),
      fc.boolean(),
      (attrs, via, layout, fingerprint) => {
        // A Binding request with random attributes (FINGERPRINT computed when asked).
        const bytes = bindingRequest(TXID, { fingerprint, software: "" });
        const body = attrs.flatMap((a) => {
          const pad = (4 - (a.value.length % 4)) % 4;
          return [
            a.type >> 8,
            a.type & 0xff,
            a.value.length >> 8,
            a.value.length & 0xff,
            ...a
              .value,
            ...new Array(pad).fill(0),
          ];
        });
        const req = new Uint8Array([...bytes.subarray(0, 20), ...body]);
        req[2] = body.length >> 8;
        req[3] = body.length & 0xff;
        const a = answerStun(req, CLIENT, via, layout);
        if (a.ok) assert.ok(a.bytes.length <= MAX_STUN_ANSWER_V4, `${a.bytes.length} bytes`);
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("server state: the STUN-only sockets answer STUN and drop p2pchat", () => {
  const s = new ServerState();
  s.stunLayout = FULL;
  type Send = Extract<ServerAction, { type: "send" }>;
  const sends = (f: (out: ServerAction[]) => void): Send[] => {
    const out: ServerAction[] = [];
    f(out);
    return out.filter((a): a is Send => a.type === "send");
  };
  const alt = sends((out) =>
    s.handleStunOnly(bindingRequest(TXID, { change: BOTH }), CLIENT, 1, 0, out)
  );
  assert.equal(alt.length, 1);
  assert.equal(alt[0]!.socket, 2, "change both on socket 1 answers from socket 2");
  assert.deepEqual(alt[0]!.to, CLIENT);
  const keepalive = encode({ type: "keepalive", id: "1111111111111111", token: "22".repeat(8) });
  assert.deepEqual(sends((out) => s.handleStunOnly(keepalive, CLIENT, 3, 0, out)), []);
  assert.equal(s.stats.drops.get("not_stun_on_stun_socket"), 1);
  // The primary answers a change request from the socket it names.
  const primary = sends((out) => s.handle(bindingRequest(TXID, { change: PORT }), CLIENT, 0, out));
  assert.equal(primary[0]?.socket, 1);
  const plain = sends((out) => s.handle(bindingRequest(TXID), CLIENT, 0, out));
  assert.equal(plain.length, 1);
  assert.equal("socket" in plain[0]!, false, "the primary's own answers carry no socket field");
});

const quiet = { debug() {}, info() {}, warn() {} } as unknown as Logger;

/** Runs `serve` on loopback; `fn` gets the STUN layout. */
async function withServe(
  opts: { altHost?: string; altPort?: number },
  fn: (layout: StunLayout) => Promise<void>,
): Promise<void> {
  let stop!: () => void;
  let ready!: (l: StunLayout) => void;
  const layout = new Promise<StunLayout>((r) => ready = r);
  const done = serve({
    host: "127.0.0.1",
    port: 0,
    ...opts,
    config: {},
    log: quiet,
    stop: new Promise<void>((r) => stop = r),
    onListening: (_port, l) => ready(l),
  });
  try {
    await fn(await Promise.race([layout, done.then(() => assert.fail("serve exited"))]));
  } finally {
    stop();
    assert.equal(await done, 0);
  }
}

/** Sends a request from a fresh socket and returns where the answer came from, or null. */
async function ask(to: Addr, change: Change): Promise<{ from: Addr; other: Addr | null } | null> {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    await sock.send(bindingRequest(crypto.getRandomValues(new Uint8Array(12)), { change }), {
      transport: "udp",
      hostname: to.host,
      port: to.port,
    });
    let t: ReturnType<typeof setTimeout> | undefined;
    const timer = new Promise<null>((r) => t = setTimeout(() => r(null), 2000));
    const got = await Promise.race([sock.receive(), timer]);
    clearTimeout(t);
    if (!got) return null;
    const from = got[1] as Deno.NetAddr;
    const d = decodeBindingAnswer(got[0]);
    assert.ok(d.ok && d.value.class === "success", "a success response");
    return { from: { host: from.hostname, port: from.port }, other: d.value.other };
  } finally {
    sock.close();
  }
}

Deno.test({
  name: "serve --alt-host on loopback: four sockets, answers from the one asked for",
  sanitizeOps: false,
  fn: async () => {
    await withServe({ altHost: "127.0.0.2" }, async (l) => {
      const [p, p1, a, a1] = l.sockets;
      assert.ok(p && p1 && a && a1, "four sockets");
      assert.equal(p1.port, p.port + 1, "alt port defaults to port + 1");
      assert.deepEqual([a.host, a.port, a1.host, a1.port], [
        "127.0.0.2",
        p.port,
        "127.0.0.2",
        p1.port,
      ]);
      const cases: [Change, Addr][] = [[NONE, p], [PORT, p1], [IP, a], [BOTH, a1]];
      for (const [change, want] of cases) {
        const r = await ask(p, change);
        assert.deepEqual(r?.from, want, `change ${JSON.stringify(change)}`);
        assert.deepEqual(r?.other, a1);
      }
    });
  },
});

Deno.test({
  name: "serve without --alt-host: a second port answers change-port; --alt-port 0: none",
  sanitizeOps: false,
  fn: async () => {
    await withServe({}, async (l) => {
      const [p, p1] = l.sockets;
      assert.ok(p && p1);
      assert.deepEqual((await ask(p, PORT))?.from, p1);
      assert.equal((await ask(p1, NONE))?.other, null, "no OTHER-ADDRESS without an alt host");
    });
    await withServe({ altPort: 0 }, (l) => {
      assert.deepEqual(l.sockets.slice(1), [null, null, null]);
      return Promise.resolve();
    });
  },
});
