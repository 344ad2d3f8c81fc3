import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeErrorCode,
  decodeMappedAddress,
  decodeStun,
  decodeText,
  decodeXorMappedAddress,
  encodeStun,
  errorCodeAttr,
  findAttr,
  longTermKey,
  looksLikeStun,
  MAX_STUN_SIZE,
  METHOD_BINDING,
  shortTermKey,
  StunAttr,
  type StunClass,
  type StunMessage,
  textAttr,
  verifyFingerprint,
  verifyIntegrity,
  xorMappedAddress,
} from "../../lib/stun/codec.ts";
import { crc32 } from "../../lib/stun/_crc32.ts";
import { concat, fromHex } from "../../lib/wire/bytes.ts";

interface Vector {
  section: string;
  hex: string;
  class: StunClass;
  transaction_id?: string;
  software?: string;
  username?: string;
  nonce?: string;
  realm?: string;
  short_term_password?: string;
  password_before_saslprep?: string;
  password_after_saslprep?: string;
  xor_mapped_address?: { family: number; address: string; port: number };
  message_integrity_valid: boolean;
  fingerprint_valid?: boolean;
}

// No fallback on purpose: a missing fixture must fail the suite, not skip it.
const VECTORS: Record<string, Vector> = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/rfc5769.json", import.meta.url)),
).vectors;

function decodeOk(bytes: Uint8Array): StunMessage {
  const r = decodeStun(bytes);
  if (!r.ok) assert.fail(`decode failed: ${r.reason}`);
  return r.value;
}

function keyFor(v: Vector): Uint8Array {
  if (v.short_term_password !== undefined) return shortTermKey(v.short_term_password);
  return longTermKey(v.username!, v.realm!, v.password_before_saslprep!);
}

function text(msg: StunMessage, type: number): string | null {
  const v = findAttr(msg, type);
  return v ? decodeText(v) : null;
}

/** The vector with every attribute's padding set to zero, as encodeStun writes it. */
function zeroPadding(bytes: Uint8Array, msg: StunMessage): Uint8Array {
  const out = bytes.slice();
  for (const a of msg.attributes) {
    const end = a.offset! + 4 + a.value.length;
    out.fill(0, end, (end + 3) & ~3);
  }
  return out;
}

Deno.test("RFC 5769 fixture holds all four sample messages", () => {
  const sections = Object.values(VECTORS).map((v) => v.section).sort();
  assert.deepEqual(sections, ["2.1", "2.2", "2.3", "2.4"]);
});

Deno.test("crc32 check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array()), 0);
});

for (const [name, v] of Object.entries(VECTORS)) {
  const bytes = fromHex(v.hex);

  Deno.test(`RFC 5769 ${v.section} ${name}: decodes`, () => {
    assert.ok(looksLikeStun(bytes));
    const msg = decodeOk(bytes);
    assert.equal(msg.method, METHOD_BINDING);
    assert.equal(msg.class, v.class);
    if (v.transaction_id) assert.deepEqual(msg.transactionId, fromHex(v.transaction_id));
    if (v.software) assert.equal(text(msg, StunAttr.SOFTWARE), v.software);
    if (v.username) assert.equal(text(msg, StunAttr.USERNAME), v.username);
    if (v.nonce) assert.equal(text(msg, StunAttr.NONCE), v.nonce);
    if (v.realm) assert.equal(text(msg, StunAttr.REALM), v.realm);
  });

  Deno.test(`RFC 5769 ${v.section} ${name}: MESSAGE-INTEGRITY and FINGERPRINT`, () => {
    const msg = decodeOk(bytes);
    assert.equal(verifyIntegrity(msg, keyFor(v)), v.message_integrity_valid);
    assert.equal(verifyIntegrity(msg, shortTermKey("wrong password")), false);
    assert.equal(verifyFingerprint(msg), v.fingerprint_valid ?? false);
    assert.equal(findAttr(msg, StunAttr.FINGERPRINT) !== undefined, v.fingerprint_valid ?? false);
  });

  if (v.xor_mapped_address) {
    const want = v.xor_mapped_address;
    Deno.test(`RFC 5769 ${v.section} ${name}: XOR-MAPPED-ADDRESS`, () => {
      const msg = decodeOk(bytes);
      const value = findAttr(msg, StunAttr.XOR_MAPPED_ADDRESS)!;
      const addr = decodeXorMappedAddress(value, msg.transactionId);
      assert.deepEqual(addr, { host: want.address, port: want.port });
      assert.equal(value[1], want.family === 4 ? 1 : 2);
      // Encoding the decoded address reproduces the published bytes.
      assert.deepEqual(xorMappedAddress(addr!, msg.transactionId).value, value);
    });
  }

  Deno.test(`RFC 5769 ${v.section} ${name}: re-encodes`, () => {
    const msg = decodeOk(bytes);
    const hasFp = findAttr(msg, StunAttr.FINGERPRINT) !== undefined;
    const again = encodeStun(msg, { integrityKey: keyFor(v), fingerprint: hasFp });
    const miOffset = msg.attributes.find((a) => a.type === StunAttr.MESSAGE_INTEGRITY)!.offset!;
    // Sections 2.1-2.3 pad with spaces, so the HMAC (and CRC) over them differ from ours;
    // everything before MESSAGE-INTEGRITY must match once the padding is zeroed.
    assert.deepEqual(again.subarray(0, miOffset), zeroPadding(bytes, msg).subarray(0, miOffset));
    assert.equal(again.length, bytes.length);
    const back = decodeOk(again);
    assert.ok(verifyIntegrity(back, keyFor(v)));
    assert.equal(verifyFingerprint(back), hasFp);
    if (zeroPadding(bytes, msg).every((b, i) => b === bytes[i])) {
      assert.deepEqual(again, bytes); // 2.4 pads with zeros: byte-exact
    }
  });

  Deno.test(`RFC 5769 ${v.section} ${name}: truncation at every byte fails cleanly`, () => {
    for (let cut = 0; cut < bytes.length; cut++) {
      const part = bytes.subarray(0, cut);
      assert.equal(decodeStun(part).ok, false, `cut at ${cut}`);
      assert.equal(looksLikeStun(part), false, `cut at ${cut}`);
      // With the length field patched to match, only cuts at attribute boundaries can parse.
      if (cut >= 20 && cut % 4 === 0) {
        const patched = part.slice();
        patched[2] = (cut - 20) >> 8;
        patched[3] = (cut - 20) & 0xff;
        const r = decodeStun(patched);
        const boundaries = decodeOk(bytes).attributes.map((a) => a.offset!);
        if (r.ok) assert.ok(cut === 20 || boundaries.includes(cut), `cut at ${cut}`);
      }
    }
  });

  Deno.test(`RFC 5769 ${v.section} ${name}: every bit flip is detected`, () => {
    const key = keyFor(v);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const bad = bytes.slice();
      bad[bit >> 3]! ^= 0x80 >> (bit & 7);
      const r = decodeStun(bad);
      if (!r.ok) continue;
      const caught = v.fingerprint_valid ? !verifyFingerprint(r.value) : !verifyIntegrity(
        r.value,
        key,
      );
      // A flip in the transaction id of an IPv6 response also changes the XOR-ed address,
      // so it must never go unnoticed either.
      assert.ok(caught, `bit ${bit} not detected`);
    }
  });
}

Deno.test("RFC 5769 2.4: the key is the same before and after SASLprep", () => {
  const v = VECTORS["long_term_request"]!;
  assert.deepEqual(
    longTermKey(v.username!, v.realm!, v.password_before_saslprep!),
    longTermKey(v.username!, v.realm!, v.password_after_saslprep!),
  );
});

const attrArb = fc.record({
  type: fc.integer({ min: 0, max: 0xffff }).filter((t) =>
    t !== StunAttr.MESSAGE_INTEGRITY && t !== StunAttr.FINGERPRINT
  ),
  value: fc.uint8Array({ maxLength: 40 }),
});

const messageArb = fc.record({
  method: fc.integer({ min: 0, max: 0xfff }),
  class: fc.constantFrom<StunClass>("request", "indication", "success", "error"),
  transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  attributes: fc.array(attrArb, { maxLength: 12 }),
});

Deno.test("encode then decode round-trips, with and without integrity and fingerprint", () => {
  fc.assert(
    fc.property(
      messageArb,
      fc.option(fc.uint8Array({ minLength: 1, maxLength: 32 }), { nil: undefined }),
      fc.boolean(),
      (m, integrityKey, fingerprint) => {
        const bytes = encodeStun(m, { integrityKey, fingerprint });
        assert.ok(looksLikeStun(bytes));
        const back = decodeOk(bytes);
        assert.equal(back.method, m.method);
        assert.equal(back.class, m.class);
        assert.deepEqual(back.transactionId, m.transactionId);
        const plain = back.attributes
          .filter((a) => a.type !== StunAttr.MESSAGE_INTEGRITY && a.type !== StunAttr.FINGERPRINT)
          .map((a) => ({ type: a.type, value: a.value }));
        assert.deepEqual(plain, m.attributes.map((a) => ({ type: a.type, value: a.value })));
        assert.equal(verifyFingerprint(back), fingerprint);
        assert.equal(integrityKey ? verifyIntegrity(back, integrityKey) : false, !!integrityKey);
        // Re-encoding a decoded message is byte-exact (our padding is zeros).
        assert.deepEqual(encodeStun(back, { integrityKey, fingerprint }), bytes);
      },
    ),
  );
});

Deno.test("decodeStun never throws on random bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1600 }), (b) => {
      const r = decodeStun(b);
      assert.equal(typeof r.ok, "boolean");
      if (r.ok) assert.ok(looksLikeStun(b));
    }),
  );
});

Deno.test("decodeStun never throws on random bodies behind a valid header", () => {
  // Random bytes rarely pass the header checks; this drives the attribute parser instead.
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }).map((b) => b.subarray(0, b.length & ~3)),
      fc.uint8Array({ minLength: 14, maxLength: 14 }),
      (body, rest) => {
        const b = new Uint8Array(20 + body.length);
        b.set([rest[0]! & 0x3f, rest[1]!, body.length >> 8, body.length & 0xff]);
        b.set([0x21, 0x12, 0xa4, 0x42], 4);
        b.set(rest.subarray(2), 8);
        b.set(body, 20);
        const r = decodeStun(b);
        if (r.ok) {
          verifyFingerprint(r.value);
          verifyIntegrity(r.value, new Uint8Array(16));
        }
      },
    ),
  );
});

Deno.test("fingerprint catches every single-bit flip in an encoded message", () => {
  fc.assert(
    fc.property(messageArb, fc.nat(), (m, pick) => {
      const bytes = encodeStun(m, { fingerprint: true });
      const bit = pick % (bytes.length * 8);
      const bad = bytes.slice();
      bad[bit >> 3]! ^= 0x80 >> (bit & 7);
      const r = decodeStun(bad);
      assert.ok(!r.ok || !verifyFingerprint(r.value), `bit ${bit} not detected`);
    }),
  );
});

const sample = fromHex(VECTORS["ipv4_response"]!.hex);

function withByte(b: Uint8Array, i: number, v: number): Uint8Array {
  const out = b.slice();
  out[i] = v;
  return out;
}

const looksCases: { name: string; bytes: Uint8Array; want: boolean }[] = [
  { name: "RFC 5769 response", bytes: sample, want: true },
  { name: "header-only message", bytes: encodeStun(emptyMsg()), want: true },
  { name: "empty", bytes: new Uint8Array(), want: false },
  { name: "shorter than a header", bytes: sample.subarray(0, 19), want: false },
  { name: "first byte 0x50", bytes: withByte(sample, 0, 0x50), want: false },
  { name: "first byte 0x80", bytes: withByte(sample, 0, 0x80), want: false },
  { name: "first byte 0x40", bytes: withByte(sample, 0, 0x40), want: false },
  { name: "wrong magic cookie", bytes: withByte(sample, 7, 0x43), want: false },
  { name: "length not a multiple of 4", bytes: withByte(sample, 3, sample[3]! - 2), want: false },
  { name: "length shorter than datagram", bytes: withByte(sample, 3, sample[3]! - 4), want: false },
  { name: "trailing bytes", bytes: concat(sample, new Uint8Array(4)), want: false },
];

for (const c of looksCases) {
  Deno.test(`looksLikeStun: ${c.name} -> ${c.want}`, () => {
    assert.equal(looksLikeStun(c.bytes), c.want);
  });
}

function emptyMsg(): StunMessage {
  return {
    method: METHOD_BINDING,
    class: "request",
    transactionId: new Uint8Array(12),
    attributes: [],
  };
}

/** A raw message from a header and hand-written attribute bytes, length field filled in. */
function rawMessage(body: string): Uint8Array {
  const b = fromHex(body);
  const head = fromHex("0001 0000 2112a442 000102030405060708090a0b");
  head[2] = b.length >> 8;
  head[3] = b.length & 0xff;
  return concat(head, b);
}

const rejectCases: { name: string; bytes: Uint8Array }[] = [
  { name: "trailing garbage", bytes: concat(sample, new Uint8Array(4)) },
  { name: "over MAX_STUN_SIZE", bytes: rawMessage("8022 05d8" + "00".repeat(1496)) },
  { name: "attribute overruns the message", bytes: rawMessage("8022 0008 41414141") },
  { name: "attribute header cut short", bytes: rawMessage("8022 0000 8022") },
  { name: "FINGERPRINT not last", bytes: rawMessage("8028 0004 00000000 8022 0000") },
  { name: "FINGERPRINT of wrong length", bytes: rawMessage("8028 0008 0000000000000000") },
  { name: "MESSAGE-INTEGRITY of wrong length", bytes: rawMessage("0008 0004 00000000") },
];

for (const c of rejectCases) {
  Deno.test(`decodeStun rejects: ${c.name}`, () => {
    const r = decodeStun(c.bytes);
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.reason.length > 0);
  });
}

Deno.test("decodeStun accepts a message of exactly MAX_STUN_SIZE", () => {
  const n = MAX_STUN_SIZE - 24;
  const b = rawMessage("8022 " + n.toString(16).padStart(4, "0") + "00".repeat(n));
  assert.equal(b.length, MAX_STUN_SIZE);
  assert.ok(decodeStun(b).ok);
});

Deno.test("decodeStun ignores attributes after MESSAGE-INTEGRITY except FINGERPRINT", () => {
  const key = shortTermKey("secret");
  const signed = encodeStun({ ...emptyMsg(), attributes: [textAttr(StunAttr.USERNAME, "a:b")] }, {
    integrityKey: key,
  });
  // Append an unauthenticated SOFTWARE after MESSAGE-INTEGRITY.
  const extra = concat(signed, fromHex("8022 0004 65766c21"));
  extra[3] = extra.length - 20;
  const msg = decodeOk(extra);
  assert.equal(findAttr(msg, StunAttr.SOFTWARE), undefined);
  assert.equal(text(msg, StunAttr.USERNAME), "a:b");
  assert.ok(verifyIntegrity(msg, key));
});

Deno.test("decodeStun copies its input", () => {
  const b = sample.slice();
  const msg = decodeOk(b);
  b.fill(0);
  assert.equal(text(msg, StunAttr.SOFTWARE), "test vector");
  assert.ok(verifyFingerprint(msg));
});

Deno.test("verify* are false on messages that were not decoded", () => {
  const m = emptyMsg();
  m.attributes.push({ type: StunAttr.FINGERPRINT, value: new Uint8Array(4) });
  assert.equal(verifyFingerprint(m), false);
  assert.equal(verifyIntegrity(m, new Uint8Array(4)), false);
});

Deno.test("encodeStun is total: odd ids, oversize values, stale digests", () => {
  const m: StunMessage = {
    method: 0xffff,
    class: "indication",
    transactionId: new Uint8Array([1, 2, 3]),
    attributes: [
      { type: StunAttr.FINGERPRINT, value: new Uint8Array(4) },
      { type: StunAttr.MESSAGE_INTEGRITY, value: new Uint8Array(20) },
      { type: 0x8022, value: new Uint8Array(70000) },
      { type: 0x8022, value: new Uint8Array(5) },
    ],
  };
  const bytes = encodeStun(m, { fingerprint: true });
  // The stale digests are dropped and the 70000-byte value cannot fit a 16-bit length.
  assert.equal(bytes.length, 20 + 12 + 8);
  const back = decodeOk(bytes);
  assert.deepEqual(back.attributes.map((a) => a.type), [0x8022, StunAttr.FINGERPRINT]);
  assert.ok(verifyFingerprint(back));
  const msg = decodeOk(encodeStun({ ...m, attributes: m.attributes.slice(3) }));
  assert.equal(msg.method, 0xfff);
  assert.deepEqual(msg.transactionId, new Uint8Array([1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
});

const addrCases: { name: string; hex: string; want: { host: string; port: number } | null }[] = [
  { name: "IPv4", hex: "0001 1f90 c0000201", want: { host: "192.0.2.1", port: 8080 } },
  {
    name: "IPv6",
    hex: "0002 0050 20010db8000000000000000000000001",
    want: { host: "2001:db8::1", port: 80 },
  },
  { name: "unknown family", hex: "0003 0050 c0000201", want: null },
  {
    name: "IPv4 family, IPv6 length",
    hex: "0001 0050 20010db8000000000000000000000001",
    want: null,
  },
  { name: "too short", hex: "0001 00", want: null },
];

for (const c of addrCases) {
  Deno.test(`MAPPED-ADDRESS ${c.name}`, () => {
    assert.deepEqual(decodeMappedAddress(fromHex(c.hex)), c.want);
  });
}

Deno.test("XOR-MAPPED-ADDRESS round-trips IPv4 and IPv6", () => {
  const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
  const ipv6 = fc.ipV6().filter((h) => !h.includes(".")).map((h) => h.toLowerCase());
  fc.assert(
    fc.property(
      fc.oneof(ipv4, ipv6),
      fc.nat(0xffff),
      fc.uint8Array({ minLength: 12, maxLength: 12 }),
      (host, port, txid) => {
        const attr = xorMappedAddress({ host, port }, txid);
        const back = decodeXorMappedAddress(attr.value, txid)!;
        assert.equal(back.port, port);
        // Compare via bytes: IPv6 text has many spellings of one address.
        assert.deepEqual(xorMappedAddress(back, txid).value, attr.value);
      },
    ),
  );
});

Deno.test("xorMappedAddress refuses host names and bad ports", () => {
  const txid = new Uint8Array(12);
  assert.throws(() => xorMappedAddress({ host: "example.org", port: 1 }, txid), RangeError);
  assert.throws(() => xorMappedAddress({ host: "1.2.3.4", port: 70000 }, txid), RangeError);
});

Deno.test("ERROR-CODE round-trips and rejects malformed values", () => {
  const a = errorCodeAttr(487, "Role Conflict");
  assert.deepEqual(a.value.subarray(0, 4), new Uint8Array([0, 0, 4, 87]));
  assert.deepEqual(decodeErrorCode(a.value), { code: 487, reason: "Role Conflict" });
  assert.equal(decodeErrorCode(fromHex("0000 02 00")), null);
  assert.equal(decodeErrorCode(fromHex("0000 04 64")), null);
  assert.equal(decodeErrorCode(fromHex("0000 04")), null);
  assert.equal(decodeErrorCode(fromHex("0000 04 00 ff")), null);
  assert.throws(() => errorCodeAttr(200, "OK"), RangeError);
});

Deno.test("decodeText rejects invalid UTF-8", () => {
  assert.equal(decodeText(fromHex("c328")), null);
  assert.equal(decodeText(new TextEncoder().encode("マトリックス")), "マトリックス");
});
