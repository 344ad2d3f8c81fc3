import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decode,
  encode,
  HS_INIT_LEN,
  HS_RESP_LEN,
  MAX_DATAGRAM,
  type Message,
  SEALED_MIN,
} from "../../lib/wire/codec.ts";
import { INIT_LEN, RESP_LEN, TRANSPORT_OVERHEAD } from "../../lib/peer/secure.ts";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";

const A = "0102030405060708";
const B = "a1a2a3a4a5a6a7a8";
const N = "f0e1d2c3b4a59687";
const pub = { host: "203.0.113.7", port: 40000 };
const lan = { host: "192.168.1.10", port: 5000 };
const K = new Uint8Array(32).fill(7);
const TOK = "1122334455667788";
const member = { id: B, name: "bob", public: pub, locals: [lan], key: K };
const none = new Uint8Array(0);
const INIT = new Uint8Array(HS_INIT_LEN).fill(0x11);
const RESP = new Uint8Array(HS_RESP_LEN).fill(0x22);
const SEALED = new Uint8Array(SEALED_MIN + 5).fill(0x33);

const samples: Message[] = [
  {
    type: "register",
    id: A,
    nonce: N,
    name: "alice",
    room: "lobby",
    locals: [lan, { host: "::1", port: 9 }],
    key: K,
    cookie: none,
    sig: none,
  },
  {
    type: "register",
    id: A,
    nonce: N,
    name: "alice",
    room: "lobby",
    locals: [],
    key: K,
    cookie: new Uint8Array(16).fill(1),
    sig: new Uint8Array(64).fill(2),
  },
  { type: "cookie", nonce: N, cookie: new Uint8Array(16).fill(3) },
  {
    type: "register_ok",
    id: A,
    nonce: N,
    token: TOK,
    public: pub,
    keepaliveMs: 15000,
    total: 1,
    members: [member],
  },
  { type: "members", token: TOK, total: 3, members: [member, member] },
  { type: "error", code: 1, about: 1, token: TOK, text: 'name "alice" is taken' },
  { type: "peer_joined", token: TOK, member },
  { type: "peer_left", token: TOK, id: B, name: "bob" },
  { type: "keepalive", id: A, token: TOK },
  { type: "keepalive_ack", id: A, token: TOK, public: pub },
  { type: "leave", id: A, token: TOK },
  { type: "connect", from: A, token: TOK, to: B, nonce: N },
  { type: "connect_fwd", token: TOK, member, nonce: N },
  { type: "relay", from: A, token: TOK, to: B, payload: new Uint8Array([0x50, 1, 0x41, 9]) },
  { type: "relayed", token: TOK, from: A, payload: new Uint8Array([1, 2, 3]) },
  { type: "hello", from: A, to: B, nonce: N, init: INIT },
  { type: "hello_ack", from: A, to: B, resp: RESP, sealed: SEALED },
  { type: "sealed", body: SEALED },
  { type: "ping", from: A, to: B, nonce: N },
  { type: "pong", from: A, to: B, nonce: N, observed: pub },
  {
    type: "data",
    from: A,
    to: B,
    seq: 7,
    floor: 5,
    msgNo: 42,
    frag: 1,
    frags: 3,
    direct: true,
    chunk: new TextEncoder().encode("héllo"),
  },
  { type: "data_ack", from: B, to: A, seq: 7, frag: 1 },
];

/** Types ending in an open-ended payload. */
const OPEN_ENDED = new Set(["relay", "relayed", "data", "hello_ack", "sealed"]);

Deno.test("codec: handshake and transport sizes match the encryption layer", () => {
  assert.equal(HS_INIT_LEN, INIT_LEN);
  assert.equal(HS_RESP_LEN, RESP_LEN);
  assert.equal(SEALED_MIN, TRANSPORT_OVERHEAD);
});

for (const m of samples) {
  Deno.test(`codec: ${m.type} round-trips`, () => {
    const b = encode(m);
    const d = decode(b);
    assert.ok(d.ok, !d.ok ? d.reason : "");
    assert.deepEqual(d.value, m);
  });

  Deno.test(`codec: ${m.type} truncated at every byte is rejected`, () => {
    const b = encode(m);
    for (let n = 0; n < b.length; n++) {
      const d = decode(b.subarray(0, n));
      // Messages ending in an open-ended payload stay valid when cut inside the payload.
      // Sealed bodies have a minimum (index, counter, tag); the samples carry 5 bytes more.
      const slack = m.type === "sealed" || m.type === "hello_ack" ? 5 : n;
      if (d.ok) assert.ok(OPEN_ENDED.has(m.type) && n >= b.length - slack, `cut at ${n}`);
    }
  });

  Deno.test(`codec: ${m.type} with a trailing byte is rejected`, () => {
    if (OPEN_ENDED.has(m.type)) return;
    const b = encode(m);
    const longer = new Uint8Array(b.length + 1);
    longer.set(b);
    assert.equal(decode(longer).ok, false);
  });
}

// Golden vectors; docs/PROTOCOL.md shows the same bytes.
const golden: [string, Message][] = [
  ["500106" + A + TOK, { type: "keepalive", id: A, token: TOK }],
  ["500130" + A + B + N + "11".repeat(116), {
    type: "hello",
    from: A,
    to: B,
    nonce: N,
    init: INIT,
  }],
  [
    "500133" + A + B + N + "04cb007107" + "9c40",
    { type: "pong", from: A, to: B, nonce: N, observed: pub },
  ],
  ["500150" + "33".repeat(33), { type: "sealed", body: SEALED }],
  [
    "500101" + A + N + "05616c696365" + "056c6f626279" + "01" + "04c0a8010a1388" +
    "07".repeat(32) + "00" + "00",
    {
      type: "register",
      id: A,
      nonce: N,
      name: "alice",
      room: "lobby",
      locals: [lan],
      key: K,
      cookie: none,
      sig: none,
    },
  ],
];
for (const [hex, m] of golden) {
  Deno.test(`codec: golden ${m.type}`, () => {
    assert.equal(toHex(encode(m)), hex);
    assert.deepEqual((decode(fromHex(hex)) as { value: Message }).value, m);
  });
}

const bad: [string, string][] = [
  ["empty", ""],
  ["wrong magic", "510106" + A],
  ["unknown version", "500206" + A],
  ["unknown type", "5001ff" + A],
  ["bad address family", "500107" + A + "05cb0071079c40"],
  ["port zero", "500107" + A + "04cb0071070000"],
  [
    "fragment index past count",
    "500140" + A + B + "00000001" + "00000000" + "00000001" + "0303" + "00",
  ],
  ["zero fragments", "500140" + A + B + "00000001" + "00000000" + "00000001" + "0000" + "00"],
  ["bad kind", "500140" + A + B + "00000001" + "00000000" + "00000001" + "0001" + "07"],
  ["name too long", "500105" + A + "21" + "61".repeat(33)],
  ["invalid utf-8", "500105" + A + "02" + "c328"],
  ["too many locals", "500101" + A + "0161" + "0161" + "05"],
  [
    "cookie of a wrong length",
    "500101" + A + "0161" + "0161" + "00" + "07".repeat(32) + "05" + "00".repeat(5) + "00",
  ],
  [
    "signature without a cookie",
    "500101" + A + "0161" + "0161" + "00" + "07".repeat(32) + "00" + "40" + "00".repeat(64),
  ],
];
for (const [name, hex] of bad) {
  Deno.test(`codec: rejects ${name}`, () => {
    assert.equal(decode(fromHex(hex)).ok, false);
  });
}

Deno.test("codec: rejects oversize datagrams", () => {
  const b = new Uint8Array(MAX_DATAGRAM + 1);
  b.set([0x50, 1, 0x21]);
  assert.deepEqual(decode(b), { ok: false, reason: "oversize" });
});

Deno.test("codec: random bytes never throw", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1600 }), (b) => {
      decode(b);
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0x41 }), fc.uint8Array({ maxLength: 200 }), (t, rest) => {
      const b = new Uint8Array(3 + rest.length);
      b.set([0x50, 1, t]);
      b.set(rest, 3);
      decode(b);
    }),
    { numRuns: 20000 },
  );
});

Deno.test("codec: every datagram we build for a full room page fits in 1200 bytes", () => {
  const big = {
    id: A,
    name: "n".repeat(32),
    public: pub,
    locals: [lan, lan, lan, lan],
    key: K,
  };
  const m: Message = {
    type: "register_ok",
    id: A,
    nonce: N,
    token: TOK,
    public: pub,
    keepaliveMs: 1,
    total: 10,
    members: Array(10).fill(big),
  };
  assert.ok(encode(m).length <= 1200, `${encode(m).length}`);
});

Deno.test("codec: a full DATA fragment, sealed and wrapped for the relay, fits in 1200 bytes", () => {
  const data = encode({
    type: "data",
    from: A,
    to: B,
    seq: 1,
    floor: 0,
    msgNo: 1,
    frag: 0,
    frags: 16,
    direct: false,
    chunk: new Uint8Array(1024),
  });
  // Sealing adds the index, counter and tag around the plaintext.
  const sealed = encode({ type: "sealed", body: new Uint8Array(SEALED_MIN + data.length) });
  const relay = encode({ type: "relay", from: A, token: TOK, to: B, payload: sealed });
  assert.equal(relay.length, 1116);
  assert.ok(relay.length <= 1200);
});
