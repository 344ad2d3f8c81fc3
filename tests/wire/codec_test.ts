import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decode,
  encode,
  HS_INIT_LEN,
  HS_RESP_LEN,
  MAX_DATAGRAM,
  type Member,
  memberSize,
  type Message,
  NAT_MAPPINGS,
  registerSigInput,
  relayedKind,
  roomProofInput,
  SEALED_MIN,
  T,
} from "../../lib/wire/codec.ts";
import {
  DH_LEN,
  HEADER_LEN,
  MAX_ACK_BLOCKS,
  MAX_LARGE_DATAGRAM,
  TAG_LEN,
  TOKEN_LEN,
} from "../../lib/wire/sizes.ts";
import { INIT_LEN, RESP_LEN, TRANSPORT_OVERHEAD } from "../../lib/peer/secure.ts";
import { KEY_LEN as X25519_LEN } from "../../lib/crypto/keys.ts";
import { TAG_LEN as NOISE_TAG_LEN } from "../../lib/crypto/noise.ts";
import { ipFromBytes } from "../../lib/wire/addr.ts";
import { concat, fromHex, toHex } from "../../lib/wire/bytes.ts";

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
const MAC1 = new Uint8Array(16).fill(0x44);
const RESP = new Uint8Array(HS_RESP_LEN).fill(0x22);
const SEALED = new Uint8Array(SEALED_MIN + 5).fill(0x33);

// The same pieces in hex, to spell out the expected bytes.
const PUB = "04" + "cb007107" + "9c40";
const LAN = "04" + "c0a8010a" + "1388";
const V6_1_PORT_9 = "06" + "00".repeat(15) + "01" + "0009";
const KEY = "07".repeat(32);
const MEMBER = B + "03626f62" + PUB + "01" + LAN + KEY;

/** One sample of every message type, with its exact bytes. */
const samples: { m: Message; hex: string }[] = [
  {
    m: {
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
    hex: "500101" + A + N + "05616c696365" + "056c6f626279" + "02" + LAN + V6_1_PORT_9 + KEY +
      "00" + "00",
  },
  {
    m: {
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
    hex: "500101" + A + N + "05616c696365" + "056c6f626279" + "00" + KEY + "10" + "01".repeat(16) +
      "40" + "02".repeat(64),
  },
  {
    // A locked room: the same REGISTER, then its room proof (verifier 32 · signature 64).
    m: {
      type: "register",
      id: A,
      nonce: N,
      name: "alice",
      room: "lobby",
      locals: [],
      key: K,
      cookie: new Uint8Array(16).fill(1),
      sig: new Uint8Array(64).fill(2),
      proof: new Uint8Array(96).fill(4),
    },
    hex: "500101" + A + N + "05616c696365" + "056c6f626279" + "00" + KEY + "10" + "01".repeat(16) +
      "40" + "02".repeat(64) + "60" + "04".repeat(96),
  },
  {
    m: { type: "cookie", nonce: N, cookie: new Uint8Array(16).fill(3) },
    hex: "50010a" + N + "03".repeat(16),
  },
  {
    m: {
      type: "register_ok",
      id: A,
      nonce: N,
      token: TOK,
      public: pub,
      keepaliveMs: 15000,
      total: 1,
      members: [member],
    },
    hex: "500102" + A + N + TOK + PUB + "00003a98" + "0001" + "01" + MEMBER,
  },
  {
    m: { type: "members", token: TOK, total: 3, members: [member, member] },
    hex: "500109" + TOK + "0003" + "02" + MEMBER + MEMBER,
  },
  {
    m: { type: "error", code: 1, about: 1, token: TOK, text: 'name "alice" is taken' },
    hex: "500103" + "01" + "01" + TOK + "15" +
      toHex(new TextEncoder().encode('name "alice" is taken')),
  },
  { m: { type: "peer_joined", token: TOK, member }, hex: "500104" + TOK + MEMBER },
  {
    m: { type: "peer_left", token: TOK, id: B, name: "bob" },
    hex: "500105" + TOK + B + "03626f62",
  },
  { m: { type: "keepalive", id: A, token: TOK }, hex: "500106" + A + TOK },
  { m: { type: "keepalive_ack", id: A, token: TOK, public: pub }, hex: "500107" + A + TOK + PUB },
  { m: { type: "leave", id: A, token: TOK }, hex: "500108" + A + TOK },
  {
    m: { type: "connect", from: A, token: TOK, to: B, nonce: N },
    hex: "500110" + A + TOK + B + N,
  },
  { m: { type: "connect_fwd", token: TOK, member, nonce: N }, hex: "500111" + TOK + MEMBER + N },
  {
    m: { type: "relay", from: A, token: TOK, to: B, payload: new Uint8Array([0x50, 1, 0x41, 9]) },
    hex: "500120" + A + TOK + B + "50014109",
  },
  {
    m: { type: "relayed", token: TOK, from: A, payload: new Uint8Array([1, 2, 3]) },
    hex: "500121" + TOK + A + "010203",
  },
  {
    m: { type: "hello", from: A, to: B, nonce: N, init: INIT, mac1: MAC1 },
    hex: "500130" + A + B + N + "11".repeat(116) + "44".repeat(16),
  },
  {
    m: { type: "hello_ack", from: A, to: B, resp: RESP, sealed: SEALED },
    hex: "500131" + A + B + "22".repeat(56) + "33".repeat(33),
  },
  { m: { type: "sealed", body: SEALED }, hex: "500150" + "33".repeat(33) },
  { m: { type: "ping", from: A, to: B, nonce: N }, hex: "500132" + A + B + N },
  {
    m: { type: "pong", from: A, to: B, nonce: N, observed: pub },
    hex: "500133" + A + B + N + PUB,
  },
  {
    m: { type: "mtu_probe", from: A, to: B, id: 9, pad: 3 },
    hex: "500135" + A + B + "00000009" + "000000",
  },
  {
    m: { type: "mtu_ack", from: B, to: A, id: 9, size: 16418, limit: 8226 },
    hex: "500136" + B + A + "00000009" + "4022" + "2022",
  },
  {
    m: { type: "floor", from: A, to: B, floor: 7 },
    hex: "500142" + A + B + "00000007",
  },
  {
    m: {
      type: "nat_info",
      from: A,
      to: B,
      have: true,
      mapping: "address-and-port-dependent",
      mapped: [pub],
    },
    hex: "500134" + A + B + "01" + "03" + "01" + PUB,
  },
  {
    m: {
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
    hex: "500140" + A + B + "00000007" + "00000005" + "0000002a" + "01" + "03" + "01" +
      "68c3a96c6c6f",
  },
  {
    // The single-fragment form earlier versions send, still accepted.
    m: { type: "data_ack", from: B, to: A, seq: 7, frag: 1 },
    hex: "500141" + B + A + "00000007" + "01",
  },
  {
    m: {
      type: "data_ack",
      from: B,
      to: A,
      seq: 7,
      frag: 1,
      batch: { below: 5, blocks: [{ seq: 6, mask: 0x8001 }, { seq: 7, mask: 0x3 }] },
    },
    hex: "500141" + B + A + "00000007" + "01" + "00000005" + "02" + "00000006" + "00008001" +
      "00000007" + "00000003",
  },
];

/** Types ending in an open-ended payload. */
const OPEN_ENDED = new Set(["relay", "relayed", "data", "hello_ack", "sealed", "mtu_probe"]);
/** A DATA_ACK without a batch: header, two ids, seq u32, frag u8. */
const ACK_SINGLE_LEN = HEADER_LEN + 8 + 8 + 4 + 1;

Deno.test("codec: the samples cover every message type", () => {
  const covered = new Set(samples.map((s) => s.m.type.toUpperCase()));
  assert.deepEqual([...covered].sort(), Object.keys(T).sort());
});

Deno.test("codec: type codes are distinct", () => {
  assert.equal(new Set(Object.values(T)).size, Object.keys(T).length);
});

Deno.test("codec: handshake and transport sizes match the encryption layer", () => {
  // The numbers docs/PROTOCOL.md gives.
  assert.equal(HS_INIT_LEN, 116);
  assert.equal(HS_RESP_LEN, 56);
  assert.equal(SEALED_MIN, 28);
  assert.equal(INIT_LEN, HS_INIT_LEN);
  assert.equal(RESP_LEN, HS_RESP_LEN);
  assert.equal(TRANSPORT_OVERHEAD, SEALED_MIN);
  // lib/crypto defines these for its own use; the wire sizes assume the same.
  assert.equal(DH_LEN, X25519_LEN);
  assert.equal(TAG_LEN, NOISE_TAG_LEN);
});

for (const { m, hex } of samples) {
  Deno.test(`codec: ${m.type} encodes to its exact bytes`, () => {
    assert.equal(toHex(encode(m)), hex);
  });

  Deno.test(`codec: ${m.type} round-trips`, () => {
    const d = decode(encode(m));
    assert.ok(d.ok, !d.ok ? d.reason : "");
    assert.deepEqual(d.value, m);
  });

  Deno.test(`codec: ${m.type} truncated at every byte is rejected, without throwing`, () => {
    const b = encode(m);
    for (let n = 0; n < b.length; n++) {
      const d = decode(b.subarray(0, n));
      // Messages ending in an open-ended payload stay valid when cut inside the payload.
      // Sealed bodies have a minimum (index, counter, tag); the samples carry 5 bytes more.
      const slack = m.type === "sealed" || m.type === "hello_ack" ? 5 : n;
      // A locked-room REGISTER cut just before its proof reads as an open-room one; its
      // signature covers the proof, so the server refuses it (tests/server/locked_test.ts).
      const proofCut = m.type === "register" && m.proof !== undefined && n === b.length - 97;
      // A batched DATA_ACK cut just before its batch reads as a single-fragment one, which
      // acknowledges part of what the whole did: true, only less of it.
      const batchCut = m.type === "data_ack" && m.batch !== undefined && n === ACK_SINGLE_LEN;
      if (d.ok && (proofCut || batchCut)) continue;
      if (d.ok) assert.ok(OPEN_ENDED.has(m.type) && n >= b.length - slack, `cut at ${n}`);
      else assert.equal(d.reason, n < HEADER_LEN ? "short" : "truncated", `cut at ${n}`);
    }
  });

  Deno.test(`codec: ${m.type} with a trailing byte is rejected`, () => {
    if (OPEN_ENDED.has(m.type)) return;
    // After a signed open-room REGISTER, a further byte is the length of a room proof.
    const proofLength = m.type === "register" && m.cookie.length > 0 && !m.proof;
    // After a single-fragment DATA_ACK, a further byte begins a batch.
    const ackBatch = m.type === "data_ack" && !m.batch;
    assert.deepEqual(decode(concat(encode(m), Uint8Array.of(0))), {
      ok: false,
      reason: proofLength ? "bad length" : ackBatch ? "truncated" : "trailing bytes",
    });
  });
}

// Golden vectors; docs/PROTOCOL.md shows the same bytes.
const golden: [string, Message][] = [
  ["500106" + A + TOK, { type: "keepalive", id: A, token: TOK }],
  ["500130" + A + B + N + "11".repeat(116) + "44".repeat(16), {
    type: "hello",
    from: A,
    to: B,
    nonce: N,
    init: INIT,
    mac1: MAC1,
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
  [
    "500141" + B + A + "00000007" + "01",
    { type: "data_ack", from: B, to: A, seq: 7, frag: 1 },
  ],
  [
    "500141" + B + A + "00000007" + "01" + "00000005" + "02" + "00000006" + "00008001" +
    "00000007" + "00000003",
    {
      type: "data_ack",
      from: B,
      to: A,
      seq: 7,
      frag: 1,
      batch: { below: 5, blocks: [{ seq: 6, mask: 0x8001 }, { seq: 7, mask: 0x3 }] },
    },
  ],
];
for (const [hex, m] of golden) {
  Deno.test(`codec: golden ${m.type}`, () => {
    assert.equal(toHex(encode(m)), hex);
    assert.deepEqual((decode(fromHex(hex)) as { value: Message }).value, m);
  });
}

// Reasons are what drop counters show, so they are part of the behaviour.
const bad: [string, string, string][] = [
  ["empty", "", "short"],
  ["wrong magic", "510106" + A, "magic"],
  ["unknown version", "500206" + A, "version"],
  ["unknown type", "5001ff" + A, "type"],
  ["bad address family", "500107" + A + TOK + "05cb0071079c40", "bad address family"],
  ["port zero", "500107" + A + TOK + "04cb0071070000", "port 0"],
  [
    "fragment index past count",
    "500140" + A + B + "00000001" + "00000000" + "00000001" + "0303" + "00",
    "bad fragment",
  ],
  [
    "zero fragments",
    "500140" + A + B + "00000001" + "00000000" + "00000001" + "0000" + "00",
    "bad fragment",
  ],
  [
    "too many fragments",
    "500140" + A + B + "00000001" + "00000000" + "00000001" + "0021" + "00",
    "bad fragment",
  ],
  [
    "bad kind",
    "500140" + A + B + "00000001" + "00000000" + "00000001" + "0001" + "07",
    "bad kind",
  ],
  ["name too long", "500105" + TOK + A + "21" + "61".repeat(33), "string too long"],
  ["invalid utf-8", "500105" + TOK + A + "02" + "c328", "invalid UTF-8"],
  ["too many locals", "500101" + A + N + "0161" + "0161" + "05", "too many addresses"],
  [
    "cookie of a wrong length",
    "500101" + A + N + "0161" + "0161" + "00" + KEY + "05" + "00".repeat(5) + "00",
    "bad length",
  ],
  [
    "signature without a cookie",
    "500101" + A + N + "0161" + "0161" + "00" + KEY + "00" + "40" + "00".repeat(64),
    "bad length",
  ],
  [
    "cookie without a signature",
    "500101" + A + N + "0161" + "0161" + "00" + KEY + "10" + "00".repeat(16) + "00",
    "bad length",
  ],
  [
    "room proof of a wrong length",
    "500101" + A + N + "0161" + "0161" + "00" + KEY + "10" + "00".repeat(16) + "40" +
    "00".repeat(64) + "20" + "00".repeat(32),
    "bad length",
  ],
  [
    // An open room writes no proof at all: an empty one would be a second way to say it.
    "an empty room proof",
    "500101" + A + N + "0161" + "0161" + "00" + KEY + "10" + "00".repeat(16) + "40" +
    "00".repeat(64) + "00",
    "bad length",
  ],
  [
    "room proof without a cookie",
    "500101" + A + N + "0161" + "0161" + "00" + KEY + "00" + "00" + "60" + "00".repeat(96),
    "trailing bytes",
  ],
  ["sealed body under the minimum", "500150" + "33".repeat(SEALED_MIN - 1), "truncated"],
  [
    "a DATA_ACK batch of 33 blocks",
    "500141" + B + A + "00000007" + "01" + "00000000" + "21" +
    Array.from({ length: 33 }, (_, i) => i.toString(16).padStart(8, "0") + "00000001").join(""),
    "too many blocks",
  ],
  [
    "DATA_ACK blocks out of order",
    "500141" + B + A + "00000007" + "01" + "00000000" + "02" + "00000003" + "00000001" +
    "00000003" + "00000001",
    "blocks out of order",
  ],
  [
    "a DATA_ACK block below the batch's below",
    "500141" + B + A + "00000007" + "01" + "00000005" + "01" + "00000004" + "00000001",
    "blocks out of order",
  ],
  [
    "an empty DATA_ACK block",
    "500141" + B + A + "00000007" + "01" + "00000005" + "01" + "00000005" + "00000000",
    "empty block",
  ],
  [
    "a DATA_ACK batch cut inside a block",
    "500141" + B + A + "00000007" + "01" + "00000005" + "01" + "00000005" + "0000",
    "truncated",
  ],
];
for (const [name, hex, reason] of bad) {
  Deno.test(`codec: rejects ${name}`, () => {
    assert.deepEqual(decode(fromHex(hex)), { ok: false, reason });
  });
}

Deno.test("codec: rejects oversize datagrams", () => {
  const b = new Uint8Array(MAX_DATAGRAM + 1);
  b.set([0x50, 1, T.KEEPALIVE]);
  assert.deepEqual(decode(b), { ok: false, reason: "oversize" });
});

Deno.test("codec: only datagrams that carry DATA may exceed MAX_DATAGRAM, up to MAX_LARGE_DATAGRAM", () => {
  for (const type of ["sealed", "relay", "relayed", "data", "mtu_probe"] as const) {
    const big = new Uint8Array(MAX_LARGE_DATAGRAM);
    big.set([0x50, 1, T[type.toUpperCase() as Uppercase<typeof type>]]);
    assert.notEqual(decode(big).ok ? "" : (decode(big) as { reason: string }).reason, "oversize");
    const over = new Uint8Array(MAX_LARGE_DATAGRAM + 1);
    over.set([0x50, 1, T[type.toUpperCase() as Uppercase<typeof type>]]);
    assert.deepEqual(decode(over), { ok: false, reason: "oversize" }, type);
  }
  for (const type of ["register", "hello", "hello_ack", "data_ack", "mtu_ack"] as const) {
    const b = new Uint8Array(MAX_DATAGRAM + 1);
    b.set([0x50, 1, T[type.toUpperCase() as Uppercase<typeof type>]]);
    assert.deepEqual(decode(b), { ok: false, reason: "oversize" }, type);
  }
});

Deno.test("codec: a large SEALED is relayable; one past MAX_LARGE_DATAGRAM is not", () => {
  const b = new Uint8Array(MAX_LARGE_DATAGRAM);
  b.set([0x50, 1, T.SEALED]);
  assert.equal(relayedKind(b), "sealed");
  const over = new Uint8Array(MAX_LARGE_DATAGRAM + 1);
  over.set([0x50, 1, T.SEALED]);
  assert.equal(relayedKind(over), null);
});

/** decode's contract: a result, never an exception. */
function checkResult(b: Uint8Array): void {
  const d = decode(b);
  if (d.ok) assert.equal(typeof d.value.type, "string");
  else assert.equal(typeof d.reason, "string");
}

Deno.test("codec: random bytes never throw", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 1600 }), checkResult), { numRuns: 5000 });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0x51 }), fc.uint8Array({ maxLength: 200 }), (t, rest) => {
      const b = new Uint8Array(3 + rest.length);
      b.set([0x50, 1, t]);
      b.set(rest, 3);
      checkResult(b);
    }),
    { numRuns: 20000 },
  );
});

// ---- properties over generated messages ----

/** Plain objects, as decode builds them (fast-check may otherwise use null prototypes). */
const rec = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
  fc.record(model, { noNullPrototype: true });

const utf8Len = (s: string) => new TextEncoder().encode(s).length;
const hex8 = fc.uint8Array({ minLength: 8, maxLength: 8 }).map(toHex);
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const str = (max: number) =>
  fc.string({ unit: "grapheme", maxLength: max }).filter((s) => utf8Len(s) <= max);
const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const addr = rec({
  host: fc.oneof(bytes(4), bytes(16)).map(ipFromBytes),
  port: fc.integer({ min: 1, max: 0xffff }),
});
const arbMember: fc.Arbitrary<Member> = rec({
  id: hex8,
  name: str(32),
  public: addr,
  locals: fc.array(addr, { maxLength: 4 }),
  key: bytes(32),
});
const members = fc.array(arbMember, { maxLength: 3 });
const payload = fc.uint8Array({ maxLength: 64 });
const sealedBody = fc.uint8Array({ minLength: SEALED_MIN, maxLength: SEALED_MIN + 64 });
const signed = fc.oneof(
  fc.constant({ cookie: none, sig: none }),
  rec({ cookie: bytes(16), sig: bytes(64) }),
  rec({ cookie: bytes(16), sig: bytes(64), proof: bytes(96) }),
);

const arbMessage: fc.Arbitrary<Message> = fc.oneof(
  rec({
    type: fc.constant("register" as const),
    id: hex8,
    nonce: hex8,
    name: str(32),
    room: str(32),
    locals: fc.array(addr, { maxLength: 4 }),
    key: bytes(32),
  }).chain((m) => signed.map((s) => ({ ...m, ...s }))),
  rec({ type: fc.constant("cookie" as const), nonce: hex8, cookie: bytes(16) }),
  rec({
    type: fc.constant("register_ok" as const),
    id: hex8,
    nonce: hex8,
    token: hex8,
    public: addr,
    keepaliveMs: u32,
    total: u16,
    members,
  }),
  rec({ type: fc.constant("members" as const), token: hex8, total: u16, members }),
  rec({
    type: fc.constant("error" as const),
    code: u8,
    about: u8,
    token: hex8,
    text: str(200),
  }),
  rec({ type: fc.constant("peer_joined" as const), token: hex8, member: arbMember }),
  rec({ type: fc.constant("peer_left" as const), token: hex8, id: hex8, name: str(32) }),
  rec({ type: fc.constant("keepalive" as const), id: hex8, token: hex8 }),
  rec({ type: fc.constant("keepalive_ack" as const), id: hex8, token: hex8, public: addr }),
  rec({ type: fc.constant("leave" as const), id: hex8, token: hex8 }),
  rec({
    type: fc.constant("connect" as const),
    from: hex8,
    token: hex8,
    to: hex8,
    nonce: hex8,
  }),
  rec({
    type: fc.constant("connect_fwd" as const),
    token: hex8,
    member: arbMember,
    nonce: hex8,
  }),
  rec({ type: fc.constant("relay" as const), from: hex8, token: hex8, to: hex8, payload }),
  rec({ type: fc.constant("relayed" as const), token: hex8, from: hex8, payload }),
  rec({
    type: fc.constant("hello" as const),
    from: hex8,
    to: hex8,
    nonce: hex8,
    init: bytes(HS_INIT_LEN),
    mac1: bytes(16),
  }),
  rec({
    type: fc.constant("hello_ack" as const),
    from: hex8,
    to: hex8,
    resp: bytes(HS_RESP_LEN),
    sealed: sealedBody,
  }),
  rec({ type: fc.constant("sealed" as const), body: sealedBody }),
  rec({ type: fc.constant("ping" as const), from: hex8, to: hex8, nonce: hex8 }),
  rec({
    type: fc.constant("pong" as const),
    from: hex8,
    to: hex8,
    nonce: hex8,
    observed: addr,
  }),
  rec({
    type: fc.constant("floor" as const),
    from: hex8,
    to: hex8,
    floor: fc.nat({ max: 2 ** 32 - 1 }),
  }),
  rec({
    type: fc.constant("nat_info" as const),
    from: hex8,
    to: hex8,
    have: fc.boolean(),
    mapping: fc.constantFrom(...NAT_MAPPINGS),
    mapped: fc.array(addr, { maxLength: 4 }),
  }),
  fc.integer({ min: 1, max: 32 }).chain((frags) =>
    rec({
      type: fc.constant("data" as const),
      from: hex8,
      to: hex8,
      seq: u32,
      floor: u32,
      msgNo: u32,
      frag: fc.integer({ min: 0, max: frags - 1 }),
      frags: fc.constant(frags),
      direct: fc.boolean(),
      chunk: payload,
    })
  ),
  rec({ type: fc.constant("data_ack" as const), from: hex8, to: hex8, seq: u32, frag: u8 }),
  rec({
    type: fc.constant("data_ack" as const),
    from: hex8,
    to: hex8,
    seq: u32,
    frag: u8,
    batch: fc.tuple(
      fc.integer({ min: 0, max: 2 ** 32 - 1 - 5000 }),
      fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: MAX_ACK_BLOCKS }),
      fc.array(fc.integer({ min: 1, max: 0xffffffff }), {
        minLength: MAX_ACK_BLOCKS,
        maxLength: MAX_ACK_BLOCKS,
      }),
    ).map(([below, offsets, masks]) => ({
      below,
      blocks: offsets.sort((a, b) => a - b).map((o, i) => ({ seq: below + o, mask: masks[i]! })),
    })),
  }),
);

Deno.test("codec: every well-formed message round-trips", () => {
  fc.assert(
    fc.property(arbMessage, (m) => {
      const d = decode(encode(m));
      assert.ok(d.ok, !d.ok ? `${m.type}: ${d.reason}` : "");
      assert.deepEqual(d.value, m);
    }),
    { numRuns: 5000 },
  );
});

Deno.test("codec: whatever decodes re-encodes to the same bytes", () => {
  // Mutating valid datagrams reaches far more accepting paths than random bytes do.
  const mutated = fc.tuple(
    fc.constantFrom(...samples.map((s) => fromHex(s.hex))),
    fc.array(fc.tuple(fc.nat(), u8), { minLength: 1, maxLength: 3 }),
  ).map(([b, edits]) => {
    const out = b.slice();
    for (const [i, v] of edits) out[HEADER_LEN + (i % (out.length - HEADER_LEN))] = v;
    return out;
  });
  fc.assert(
    fc.property(mutated, (b) => {
      const d = decode(b);
      if (d.ok) assert.equal(toHex(encode(d.value)), toHex(b));
    }),
    { numRuns: 20000 },
  );
});

Deno.test("codec: memberSize is the encoded size of a member entry", () => {
  fc.assert(
    fc.property(arbMember, (m) => {
      const joined = encode({ type: "peer_joined", token: TOK, member: m });
      assert.equal(memberSize(m), joined.length - HEADER_LEN - TOKEN_LEN);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("codec: a room proof signs the REGISTER without sig and proof; the sig covers the proof", () => {
  const m = samples[2]!.m as Extract<Message, { type: "register" }>;
  const bare = encode({ ...m, sig: none, proof: undefined });
  assert.deepEqual(
    roomProofInput(m),
    concat(new TextEncoder().encode("p2pchat room proof v1"), bare),
  );
  const signedPart = registerSigInput(m);
  assert.equal(toHex(signedPart).endsWith("00" + "60" + "04".repeat(96)), true);
  assert.notDeepEqual(registerSigInput({ ...m, proof: new Uint8Array(96).fill(5) }), signedPart);
  // Without a cookie nothing is signed, so no proof is written either.
  assert.deepEqual(
    encode({ ...m, cookie: none, sig: none }),
    encode({ ...m, cookie: none, sig: none, proof: undefined }),
  );
});

Deno.test("codec: a REGISTER signature covers the context and the datagram without its sig", () => {
  const m = samples[1]!.m as Extract<Message, { type: "register" }>;
  const unsigned = encode({ ...m, sig: none });
  assert.deepEqual(
    registerSigInput(m),
    concat(new TextEncoder().encode("p2pchat register v1"), unsigned),
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

Deno.test("codec: relayedKind agrees with decode on every message, whole or cut", () => {
  const relayed = new Set(["hello", "hello_ack", "sealed"]);
  fc.assert(
    fc.property(arbMessage, fc.nat(), (m, cut) => {
      const b = encode(m);
      const want = relayed.has(m.type) ? m.type : null;
      assert.equal(relayedKind(b), want);
      const short = b.subarray(0, cut % b.length);
      const d = decode(short);
      const kind = relayedKind(short);
      // A cut datagram is never taken for a whole one that decode would refuse.
      if (kind !== null) {
        assert.ok(d.ok && d.value.type === kind, `${m.type} cut at ${short.length}`);
      }
    }),
    { numRuns: 3000 },
  );
});

Deno.test("codec: DATA_ACK batches from random bytes are refused or well-formed, never throw", () => {
  const head = fromHex("500141" + B + A + "00000007" + "01");
  // Mostly a plausible count byte and blocks, so the block checks are reached, not just "short".
  const batch = fc.tuple(
    fc.uint8Array({ minLength: 4, maxLength: 4 }),
    fc.integer({ min: 0, max: 40 }),
    fc.array(fc.tuple(fc.nat({ max: 12 }), fc.integer({ min: 0, max: 3 })), { maxLength: 40 }),
    fc.nat({ max: 3 }),
  ).map(([below, n, steps, cut]) => {
    const w: number[] = [...below, n];
    let seq = new DataView(below.buffer).getUint32(0);
    for (const [step, mask] of steps) {
      seq = (seq + step - 2) >>> 0;
      w.push(seq >>> 24, (seq >>> 16) & 0xff, (seq >>> 8) & 0xff, seq & 0xff, 0, 0, 0, mask);
    }
    return concat(head, Uint8Array.from(w.slice(0, Math.max(0, w.length - cut))));
  });
  fc.assert(
    fc.property(
      fc.oneof(batch, fc.uint8Array({ maxLength: 400 }).map((b) => concat(head, b))),
      (b) => {
        checkResult(b);
        const d = decode(b);
        if (!d.ok || d.value.type !== "data_ack" || !d.value.batch) return;
        const { below, blocks } = d.value.batch;
        assert.ok(blocks.length <= MAX_ACK_BLOCKS);
        blocks.forEach((k, i) => {
          assert.ok(k.mask !== 0 && k.seq >= below && (i === 0 || k.seq > blocks[i - 1]!.seq));
        });
        assert.equal(toHex(encode(d.value)), toHex(b), "and re-encodes to the same bytes");
      },
    ),
    { numRuns: 20000 },
  );
});

Deno.test("codec: the largest DATA_ACK, sealed and wrapped for the relay, fits in 1200 bytes", () => {
  const blocks = Array.from({ length: MAX_ACK_BLOCKS + 5 }, (_, i) => ({ seq: i, mask: 0xffff }));
  const ack = encode({
    type: "data_ack",
    from: A,
    to: B,
    seq: 1,
    frag: 0,
    batch: { below: 0, blocks },
  });
  assert.equal(ack.length, ACK_SINGLE_LEN + 5 + 8 * MAX_ACK_BLOCKS, "encode keeps MAX_ACK_BLOCKS");
  const d = decode(ack);
  assert.ok(d.ok && d.value.type === "data_ack" && d.value.batch?.blocks.length === MAX_ACK_BLOCKS);
  const sealed = encode({ type: "sealed", body: new Uint8Array(SEALED_MIN + ack.length) });
  const relay = encode({ type: "relay", from: A, token: TOK, to: B, payload: sealed });
  assert.ok(relay.length <= 1200, `${relay.length}`);
});

Deno.test("codec: NAT_INFO with a bad flag or mapping is refused", () => {
  assert.deepEqual(decode(fromHex("500134" + A + B + "02" + "00" + "00")), {
    ok: false,
    reason: "bad flag",
  });
  assert.deepEqual(decode(fromHex("500134" + A + B + "00" + "04" + "00")), {
    ok: false,
    reason: "bad mapping",
  });
});
