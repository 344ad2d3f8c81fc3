import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeResponse,
  encodeAnnounceRequest,
  encodeMapRequest,
  MAX_PCP_SIZE,
  OPCODE_ANNOUNCE,
  OPCODE_MAP,
  pcpResultName,
  PROTO_UDP,
} from "../../lib/portmap/pcp.ts";
import { concat, fromHex, toHex } from "../../lib/wire/bytes.ts";

// Golden vectors written by hand from RFC 6887's field tables (§7.1 request header, §7.2
// response header, §11.1 MAP opcode), not produced by the encoder under test.
const NONCE = "0102030405060708090a0b0c";
const MAP_REQUEST = [
  "02", // version 2
  "01", // R=0, opcode 1 (MAP)
  "0000", // reserved
  "00000e10", // requested lifetime 3600 s
  "00000000000000000000ffffc0a8010a", // client IP ::ffff:192.168.1.10
  NONCE, // mapping nonce
  "11", // protocol 17 (UDP)
  "000000", // reserved
  "9c40", // internal port 40000
  "9c40", // suggested external port 40000
  "00000000000000000000ffff00000000", // suggested external IP ::ffff:0.0.0.0 (any)
].join("");
const MAP_RESPONSE = [
  "02", // version 2
  "81", // R=1, opcode 1
  "00", // reserved
  "00", // result SUCCESS
  "00000708", // lifetime 1800 s
  "00001234", // epoch time
  "000000000000000000000000", // reserved (96 bits)
  NONCE,
  "11",
  "000000",
  "9c40", // internal port 40000
  "9c41", // assigned external port 40001
  "00000000000000000000ffffcb007107", // assigned external IP ::ffff:203.0.113.7
].join("");
const ANNOUNCE_REQUEST = "02000000" + "00000000" + "00000000000000000000ffffc0a8010a";
const ANNOUNCE_RESPONSE = "02800000" + "00000000" + "00000912" + "000000000000000000000000";

Deno.test("pcp: MAP request matches the RFC 6887 layout byte for byte", () => {
  const bytes = encodeMapRequest({
    nonce: fromHex(NONCE),
    client: "192.168.1.10",
    internalPort: 40000,
    lifetimeSec: 3600,
    suggestedPort: 40000,
  });
  assert.equal(bytes.length, 60);
  assert.equal(toHex(bytes), MAP_REQUEST);
});

Deno.test("pcp: MAP request carries a suggested external address, and lifetime 0 deletes", () => {
  const bytes = encodeMapRequest({
    nonce: fromHex(NONCE),
    client: "192.168.1.10",
    internalPort: 40000,
    lifetimeSec: 0,
    suggestedPort: 40001,
    suggestedHost: "203.0.113.7",
  });
  assert.equal(toHex(bytes.subarray(4, 8)), "00000000");
  assert.equal(toHex(bytes.subarray(42, 44)), "9c41");
  assert.equal(toHex(bytes.subarray(44, 60)), "00000000000000000000ffffcb007107");
});

Deno.test("pcp: ANNOUNCE request is a bare 24-byte header", () => {
  assert.equal(toHex(encodeAnnounceRequest("192.168.1.10")), ANNOUNCE_REQUEST);
});

Deno.test("pcp: decodes a MAP success response", () => {
  const r = decodeResponse(fromHex(MAP_RESPONSE));
  assert.ok(r.ok, !r.ok ? r.reason : "");
  assert.equal(r.value.opcode, OPCODE_MAP);
  assert.equal(r.value.result, 0);
  assert.equal(r.value.lifetimeSec, 1800);
  assert.equal(r.value.epoch, 0x1234);
  assert.deepEqual(r.value.map, {
    nonce: fromHex(NONCE),
    protocol: PROTO_UDP,
    internalPort: 40000,
    externalPort: 40001,
    externalHost: "203.0.113.7",
  });
});

Deno.test("pcp: decodes ANNOUNCE and bare error responses", () => {
  const a = decodeResponse(fromHex(ANNOUNCE_RESPONSE));
  assert.ok(a.ok);
  assert.equal(a.value.opcode, OPCODE_ANNOUNCE);
  assert.equal(a.value.epoch, 0x912);
  assert.equal(a.value.map, undefined);
  // NOT_AUTHORIZED as a bare header (servers may send only that on errors).
  const e = decodeResponse(fromHex("02810002" + "00000000" + "00000001" + "00".repeat(12)));
  assert.ok(e.ok);
  assert.equal(e.value.result, 2);
  assert.equal(pcpResultName(e.value.result), "NOT_AUTHORIZED");
  assert.equal(pcpResultName(99), "RESULT_99");
});

Deno.test("pcp: options after the MAP body are skipped; malformed ones refused", () => {
  // PREFER_FAILURE (code 2, no data) and a 5-byte option padded to 8.
  const withOptions = concat(
    fromHex(MAP_RESPONSE),
    fromHex("02000000"),
    fromHex("8000000501020304050000"),
    fromHex("00"),
  );
  const ok = decodeResponse(withOptions);
  assert.ok(ok.ok, !ok.ok ? ok.reason : "");
  assert.equal(ok.value.map?.externalPort, 40001);
  // An option claiming more data than there is.
  const bad = decodeResponse(concat(fromHex(MAP_RESPONSE), fromHex("01000010")));
  assert.deepEqual(bad, { ok: false, reason: "truncated" });
});

const refusals: [string, string, string][] = [
  ["a NAT-PMP server's version-0 answer", "00810001" + "00000000", "natpmp"],
  ["version 1", "01810000" + "00".repeat(20), "bad-version"],
  ["a request (R=0)", MAP_REQUEST, "not-response"],
  ["a length not a multiple of 4", MAP_RESPONSE + "00", "bad-length"],
  ["too long", "0281" + "00".repeat(MAX_PCP_SIZE), "too-long"],
];
for (const [name, hex, reason] of refusals) {
  Deno.test(`pcp: refuses ${name}`, () => {
    assert.deepEqual(decodeResponse(fromHex(hex)), { ok: false, reason });
  });
}

Deno.test("pcp: every truncation of a MAP response is refused, never thrown", () => {
  const full = fromHex(MAP_RESPONSE);
  for (let n = 0; n < full.length; n++) {
    const r = decodeResponse(full.subarray(0, n));
    // A 24-byte prefix is a header-only answer, which is only acceptable for errors.
    assert.equal(r.ok, false, `prefix of ${n} bytes decoded`);
  }
});

Deno.test("pcp: random bytes never throw", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1200 }), (b) => {
      decodeResponse(b);
    }),
    { numRuns: 2000 },
  );
  // Random bytes behind a valid response header exercise the MAP and option paths.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      decodeResponse(concat(fromHex("02810000"), b));
    }),
    { numRuns: 2000 },
  );
});
