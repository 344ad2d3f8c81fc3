/**
 * RFC 5780 attributes (CHANGE-REQUEST, RESPONSE-PORT, RESPONSE-ORIGIN, OTHER-ADDRESS) and the
 * Binding messages that carry them. RFC 5780 publishes no test vectors: the golden bytes are
 * written out by hand from its attribute layouts (sections 7.2-7.5) and RFC 8489's header, with
 * the transaction id and mapped address of RFC 5769 section 2.2.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  addressAttr,
  changeRequestAttr,
  decodeAddressAttr,
  decodeChangeRequest,
  decodeResponsePort,
  decodeStun,
  decodeUnknownAttributes,
  encodeStun,
  METHOD_BINDING,
  responsePortAttr,
  StunAttr,
  type StunMessage,
  unknownAttributesAttr,
} from "../../lib/stun/codec.ts";
import {
  bindingError,
  bindingRequest,
  bindingResponse,
  decodeBindingAnswer,
} from "../../lib/stun/binding.ts";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";
import type { Addr } from "../../lib/wire/addr.ts";

/** RFC 5769 2.2: transaction id, and the mapped address 192.0.2.1:32853. */
const TXID = fromHex("b7e7a701bc34d686fa87dfae");
const MAPPED: Addr = { host: "192.0.2.1", port: 32853 };
const ORIGIN: Addr = { host: "198.51.100.2", port: 3478 };
const OTHER: Addr = { host: "198.51.100.3", port: 3479 };

const hex = (s: string) => fromHex(s.replace(/\s+/g, ""));
const tlv = (a: { type: number; value: Uint8Array }) =>
  toHex(encodeStun({ method: 1, class: "request", transactionId: TXID, attributes: [a] }))
    .slice(40);

function decodeOk(bytes: Uint8Array): StunMessage {
  const r = decodeStun(bytes);
  if (!r.ok) assert.fail(`decode failed: ${r.reason}`);
  return r.value;
}

const attrGolden: { name: string; attr: { type: number; value: Uint8Array }; hex: string }[] = [
  {
    name: "CHANGE-REQUEST none",
    attr: changeRequestAttr({ ip: false, port: false }),
    hex: "0003 0004 00000000",
  },
  {
    name: "CHANGE-REQUEST port",
    attr: changeRequestAttr({ ip: false, port: true }),
    hex: "0003 0004 00000002",
  },
  {
    name: "CHANGE-REQUEST ip",
    attr: changeRequestAttr({ ip: true, port: false }),
    hex: "0003 0004 00000004",
  },
  {
    name: "CHANGE-REQUEST ip+port",
    attr: changeRequestAttr({ ip: true, port: true }),
    hex: "0003 0004 00000006",
  },
  { name: "RESPONSE-PORT 40000", attr: responsePortAttr(40000), hex: "0027 0004 9c40 0000" },
  {
    name: "RESPONSE-ORIGIN 198.51.100.2:3478",
    attr: addressAttr(StunAttr.RESPONSE_ORIGIN, ORIGIN),
    hex: "802b 0008 00 01 0d96 c6336402",
  },
  {
    name: "OTHER-ADDRESS 198.51.100.3:3479",
    attr: addressAttr(StunAttr.OTHER_ADDRESS, OTHER),
    hex: "802c 0008 00 01 0d97 c6336403",
  },
  {
    name: "OTHER-ADDRESS [2001:db8::3]:3479",
    attr: addressAttr(StunAttr.OTHER_ADDRESS, { host: "2001:db8::3", port: 3479 }),
    hex: "802c 0014 00 02 0d97 20010db8000000000000000000000003",
  },
  {
    name: "UNKNOWN-ATTRIBUTES [CHANGE-REQUEST] (padded to 4)",
    attr: unknownAttributesAttr([StunAttr.CHANGE_REQUEST]),
    hex: "000a 0002 0003 0000",
  },
];
for (const c of attrGolden) {
  Deno.test(`RFC 5780 golden: ${c.name}`, () => {
    assert.equal(tlv(c.attr), c.hex.replace(/\s+/g, ""));
  });
}

Deno.test("RFC 5780 decoders: values back, wrong lengths refused", () => {
  for (const ip of [false, true]) {
    for (const port of [false, true]) {
      assert.deepEqual(decodeChangeRequest(changeRequestAttr({ ip, port }).value), {
        ok: true,
        value: { ip, port },
      });
    }
  }
  // Other bits are ignored (RFC 5780 7.2: "the remaining bits ... MUST be ignored").
  assert.deepEqual(decodeChangeRequest(hex("ffffffff")), {
    ok: true,
    value: { ip: true, port: true },
  });
  assert.deepEqual(decodeResponsePort(hex("9c40 0000")), { ok: true, value: 40000 });
  assert.deepEqual(decodeAddressAttr(addressAttr(StunAttr.OTHER_ADDRESS, OTHER).value), {
    ok: true,
    value: OTHER,
  });
  assert.deepEqual(decodeUnknownAttributes(hex("0003 0027")), {
    ok: true,
    value: [0x0003, 0x0027],
  });
  for (const bad of ["", "00", "000000", "0000000000"]) {
    assert.equal(decodeChangeRequest(hex(bad)).ok, false, `CHANGE-REQUEST ${bad}`);
    assert.equal(decodeResponsePort(hex(bad)).ok, false, `RESPONSE-PORT ${bad}`);
  }
  for (
    const bad of ["", "0001", "0001 0d97 c63364", "0003 0d97 c6336403", "0001 0d97 c633640300"]
  ) {
    assert.equal(decodeAddressAttr(hex(bad)).ok, false, `address ${bad}`);
  }
  assert.equal(decodeUnknownAttributes(hex("000300")).ok, false);
  assert.throws(() => responsePortAttr(65536), RangeError);
  assert.throws(() => addressAttr(StunAttr.OTHER_ADDRESS, { host: "example.org", port: 1 }));
});

const messageGolden: { name: string; bytes: () => Uint8Array; hex: string }[] = [
  {
    name: "Binding request with CHANGE-REQUEST ip+port",
    bytes: () => bindingRequest(TXID, { fingerprint: false, change: { ip: true, port: true } }),
    hex: "0001 0008 2112a442 b7e7a701bc34d686fa87dfae  0003 0004 00000006",
  },
  {
    name: "Binding request with RESPONSE-PORT",
    bytes: () => bindingRequest(TXID, { fingerprint: false, responsePort: 40000 }),
    hex: "0001 0008 2112a442 b7e7a701bc34d686fa87dfae  0027 0004 9c400000",
  },
  {
    name: "Binding success with RESPONSE-ORIGIN and OTHER-ADDRESS",
    bytes: () =>
      bindingResponse(decodeOk(bindingRequest(TXID, { fingerprint: false })), MAPPED, {
        origin: ORIGIN,
        other: OTHER,
      }),
    // XOR-MAPPED-ADDRESS of 192.0.2.1:32853 as RFC 5769 2.2 has it.
    hex: "0101 0024 2112a442 b7e7a701bc34d686fa87dfae  0020 0008 0001a147 e112a643" +
      "  802b 0008 00010d96 c6336402  802c 0008 00010d97 c6336403",
  },
  {
    name: "Binding error 420 listing CHANGE-REQUEST",
    bytes: () =>
      bindingError(decodeOk(bindingRequest(TXID, { fingerprint: false })), 420, "", [
        StunAttr.CHANGE_REQUEST,
      ]),
    hex: "0111 0010 2112a442 b7e7a701bc34d686fa87dfae  0009 0004 00000414  000a 0002 00030000",
  },
];
for (const c of messageGolden) {
  Deno.test(`RFC 5780 golden: ${c.name}`, () => {
    assert.equal(toHex(c.bytes()), c.hex.replace(/\s+/g, ""));
  });
}

Deno.test("bindingResponse: sizes are fixed by the families, whatever the request carries", () => {
  const plain = decodeOk(bindingRequest(TXID, { fingerprint: true }));
  const padded = decodeOk(bindingRequest(TXID, { fingerprint: true, software: "x".repeat(700) }));
  for (const req of [plain, padded]) {
    assert.equal(bindingResponse(req, MAPPED).length, 40);
    assert.equal(bindingResponse(req, MAPPED, { origin: ORIGIN, other: OTHER }).length, 64);
    assert.equal(bindingError(req, 420, "", [StunAttr.CHANGE_REQUEST]).length, 44);
  }
});

Deno.test("decodeBindingAnswer: success with every RFC 5780 address", () => {
  const req = decodeOk(bindingRequest(TXID));
  const r = decodeBindingAnswer(bindingResponse(req, MAPPED, { origin: ORIGIN, other: OTHER }));
  assert.deepEqual(r, {
    ok: true,
    value: { class: "success", transactionId: TXID, mapped: MAPPED, origin: ORIGIN, other: OTHER },
  });
  const bare = decodeBindingAnswer(bindingResponse(req, MAPPED));
  assert.ok(bare.ok && bare.value.class === "success");
  assert.equal(bare.value.other, null);
  assert.equal(bare.value.origin, null);
});

Deno.test("decodeBindingAnswer: RFC 3489 servers (MAPPED-ADDRESS, CHANGED-ADDRESS)", () => {
  const bytes = encodeStun({
    method: METHOD_BINDING,
    class: "success",
    transactionId: TXID,
    attributes: [
      addressAttr(StunAttr.MAPPED_ADDRESS, MAPPED),
      addressAttr(StunAttr.CHANGED_ADDRESS, OTHER),
    ],
  });
  const r = decodeBindingAnswer(bytes);
  assert.ok(r.ok && r.value.class === "success");
  assert.deepEqual(r.value.mapped, MAPPED);
  assert.deepEqual(r.value.other, OTHER);
});

Deno.test("decodeBindingAnswer: errors, and what it refuses", () => {
  const req = decodeOk(bindingRequest(TXID));
  const e = decodeBindingAnswer(bindingError(req, 420, "Unknown", [3, 0x27]));
  assert.deepEqual(e, {
    ok: true,
    value: { class: "error", transactionId: TXID, code: 420, unknown: [3, 0x27] },
  });
  const refused: [string, Uint8Array][] = [
    ["a request", bindingRequest(TXID)],
    ["not STUN", new Uint8Array(40)],
    [
      "another method",
      encodeStun({ method: 3, class: "success", transactionId: TXID, attributes: [] }),
    ],
    [
      "an error without ERROR-CODE",
      encodeStun({ method: 1, class: "error", transactionId: TXID, attributes: [] }),
    ],
    [
      "a malformed OTHER-ADDRESS",
      encodeStun({
        method: 1,
        class: "success",
        transactionId: TXID,
        attributes: [{ type: StunAttr.OTHER_ADDRESS, value: hex("0001 0d97 c633") }],
      }),
    ],
  ];
  for (const [what, bytes] of refused) assert.equal(decodeBindingAnswer(bytes).ok, false, what);
  // A flipped bit under FINGERPRINT.
  const good = bindingResponse(req, MAPPED, { origin: ORIGIN, other: OTHER });
  const bad = good.slice();
  bad[30]! ^= 1;
  assert.equal(decodeBindingAnswer(bad).ok, false, "bad FINGERPRINT");
});

Deno.test("decodeBindingAnswer: truncation at every byte fails cleanly", () => {
  const req = decodeOk(bindingRequest(TXID));
  const full = bindingResponse(req, MAPPED, { origin: ORIGIN, other: OTHER });
  for (let n = 0; n < full.length; n++) {
    assert.equal(decodeBindingAnswer(full.subarray(0, n)).ok, false, `${n} bytes`);
  }
});

Deno.test("decodeBindingAnswer and the RFC 5780 decoders never throw on random bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), (b) => {
      decodeBindingAnswer(b);
      decodeChangeRequest(b);
      decodeResponsePort(b);
      decodeAddressAttr(b);
      decodeUnknownAttributes(b);
      // Random attributes behind a valid header, so the attribute parsers see them.
      const withHeader = encodeStun({
        method: 1,
        class: "success",
        transactionId: TXID,
        attributes: [
          { type: StunAttr.XOR_MAPPED_ADDRESS, value: b.subarray(0, 20) },
          { type: StunAttr.OTHER_ADDRESS, value: b.subarray(20, 40) },
        ],
      });
      decodeBindingAnswer(withHeader);
    }),
    { numRuns: 2000 },
  );
});
