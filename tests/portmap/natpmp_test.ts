import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeResponse,
  encodeExternalAddressRequest,
  encodeMapRequest,
  natPmpResultName,
} from "../../lib/portmap/natpmp.ts";
import { concat, fromHex, toHex } from "../../lib/wire/bytes.ts";

// Golden vectors written by hand from RFC 6886's packet diagrams (§3.2, §3.3).
const EXTERNAL_RESPONSE = "00" + "80" + "0000" + "00001234" + "cb007107"; // 203.0.113.7
const MAP_RESPONSE = "00" + "81" + "0000" + "00001234" + "9c40" + "9c41" + "00000e10";

Deno.test("natpmp: requests match the RFC 6886 layout", () => {
  assert.equal(toHex(encodeExternalAddressRequest()), "0000");
  assert.equal(
    toHex(encodeMapRequest({ internalPort: 40000, suggestedPort: 40000, lifetimeSec: 3600 })),
    "00" + "01" + "0000" + "9c40" + "9c40" + "00000e10",
  );
  // Deleting: lifetime 0 and suggested external port 0 (§3.4).
  assert.equal(
    toHex(encodeMapRequest({ internalPort: 40000, suggestedPort: 0, lifetimeSec: 0 })),
    "000100009c400000" + "00000000",
  );
});

Deno.test("natpmp: decodes the external address and mapping answers", () => {
  assert.deepEqual(decodeResponse(fromHex(EXTERNAL_RESPONSE)), {
    ok: true,
    value: { op: 0, result: 0, epoch: 0x1234, externalHost: "203.0.113.7" },
  });
  assert.deepEqual(decodeResponse(fromHex(MAP_RESPONSE)), {
    ok: true,
    value: {
      op: 1,
      result: 0,
      epoch: 0x1234,
      internalPort: 40000,
      externalPort: 40001,
      lifetimeSec: 3600,
    },
  });
});

Deno.test("natpmp: an 8-byte error answer decodes with its result code", () => {
  const r = decodeResponse(fromHex("0081" + "0002" + "00000010"));
  assert.ok(r.ok);
  assert.equal(r.value.result, 2);
  assert.equal(natPmpResultName(r.value.result), "NOT_AUTHORIZED");
  assert.equal(natPmpResultName(42), "RESULT_42");
});

const refusals: [string, string, string][] = [
  ["a PCP answer (version 2)", "02810000" + "00".repeat(56), "bad-version"],
  ["a request", "00010000" + "9c409c40" + "00000e10", "not-response"],
  [
    "a TCP mapping answer",
    "0082" + "0000" + "00000001" + "9c409c41" + "00000e10",
    "unknown-opcode",
  ],
  ["a long external address answer", EXTERNAL_RESPONSE + "00", "too-long"],
  ["a long mapping answer", MAP_RESPONSE + "00", "too-long"],
  ["a success mapping answer cut short", MAP_RESPONSE.slice(0, 24), "truncated"],
];
for (const [name, hex, reason] of refusals) {
  Deno.test(`natpmp: refuses ${name}`, () => {
    assert.deepEqual(decodeResponse(fromHex(hex)), { ok: false, reason });
  });
}

Deno.test("natpmp: every truncation of a success answer is refused, never thrown", () => {
  for (const hex of [EXTERNAL_RESPONSE, MAP_RESPONSE]) {
    const full = fromHex(hex);
    for (let n = 0; n < full.length; n++) {
      assert.equal(decodeResponse(full.subarray(0, n)).ok, false, `${hex} cut at ${n}`);
    }
  }
});

Deno.test("natpmp: random bytes never throw", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      decodeResponse(b);
      decodeResponse(concat(fromHex("0081"), b));
      decodeResponse(concat(fromHex("0080"), b));
    }),
    { numRuns: 3000 },
  );
});
