import assert from "node:assert/strict";
import fc from "fast-check";
import {
  bindingRequest,
  bindingResponse,
  isBindingRequest,
  parseBindingResponse,
} from "../../lib/stun/binding.ts";
import {
  decodeStun,
  encodeStun,
  findAttr,
  METHOD_BINDING,
  shortTermKey,
  StunAttr,
  type StunMessage,
  textAttr,
  verifyFingerprint,
} from "../../lib/stun/codec.ts";
import { fromHex } from "../../lib/wire/bytes.ts";
import type { Addr } from "../../lib/wire/addr.ts";

const TXID = fromHex("b7e7a701bc34d686fa87dfae");
const V4: Addr = { host: "203.0.113.7", port: 41641 };
const V6: Addr = { host: "2001:db8::7", port: 41641 };

function decodeOk(bytes: Uint8Array): StunMessage {
  const r = decodeStun(bytes);
  if (!r.ok) assert.fail(`decode failed: ${r.reason}`);
  return r.value;
}

Deno.test("bindingRequest: 28 bytes with FINGERPRINT by default", () => {
  const bytes = bindingRequest(TXID);
  assert.equal(bytes.length, 28);
  const msg = decodeOk(bytes);
  assert.ok(isBindingRequest(msg));
  assert.deepEqual(msg.transactionId, TXID);
  assert.ok(verifyFingerprint(msg));
});

Deno.test("bindingRequest: options", () => {
  const bare = decodeOk(bindingRequest(TXID, { fingerprint: false }));
  assert.equal(bare.attributes.length, 0);
  const named = decodeOk(bindingRequest(TXID, { software: "p2pchat 0.1" }));
  assert.deepEqual(named.attributes.map((a) => a.type), [StunAttr.SOFTWARE, StunAttr.FINGERPRINT]);
  assert.throws(() => bindingRequest(new Uint8Array(8)), RangeError);
});

for (const mapped of [V4, V6]) {
  for (const fingerprint of [true, false]) {
    Deno.test(`request -> response -> address (${mapped.host}, fingerprint ${fingerprint})`, () => {
      const request = decodeOk(bindingRequest(TXID, { fingerprint }));
      const bytes = bindingResponse(request, mapped);
      const msg = decodeOk(bytes);
      assert.equal(msg.method, METHOD_BINDING);
      assert.equal(msg.class, "success");
      assert.deepEqual(
        msg.attributes.map((a) => a.type),
        fingerprint ? [StunAttr.XOR_MAPPED_ADDRESS, StunAttr.FINGERPRINT] : [
          StunAttr.XOR_MAPPED_ADDRESS,
        ],
      );
      assert.deepEqual(parseBindingResponse(bytes, TXID), mapped);
    });
  }
}

Deno.test("bindingResponse size depends only on family and FINGERPRINT, not on the request", () => {
  const junk = fc.array(
    fc.record({
      type: fc.integer({ min: 0, max: 0xffff }).filter((t) =>
        t !== StunAttr.MESSAGE_INTEGRITY && t !== StunAttr.FINGERPRINT
      ),
      value: fc.uint8Array({ maxLength: 100 }),
    }),
    { maxLength: 12 },
  );
  fc.assert(
    fc.property(
      junk,
      fc.boolean(),
      fc.boolean(),
      fc.uint8Array({ minLength: 12, maxLength: 12 }),
      (attributes, fingerprint, integrity, txid) => {
        const req = encodeStun(
          { method: METHOD_BINDING, class: "request", transactionId: txid, attributes },
          { fingerprint, integrityKey: integrity ? shortTermKey("pw") : undefined },
        );
        const r = decodeStun(req);
        if (!r.ok) return; // over MAX_STUN_SIZE: a server never gets this far
        const extra = fingerprint ? 8 : 0;
        assert.equal(bindingResponse(r.value, V4).length, 32 + extra);
        assert.equal(bindingResponse(r.value, V6).length, 44 + extra);
      },
    ),
  );
});

Deno.test("parseBindingResponse reads the RFC 5769 2.2 response", () => {
  const hex = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220" +
    "002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
  assert.deepEqual(parseBindingResponse(fromHex(hex), TXID), { host: "192.0.2.1", port: 32853 });
});

Deno.test("parseBindingResponse falls back to MAPPED-ADDRESS", () => {
  const bytes = encodeStun({
    method: METHOD_BINDING,
    class: "success",
    transactionId: TXID,
    attributes: [{ type: StunAttr.MAPPED_ADDRESS, value: fromHex("0001 1f90 c0000201") }],
  });
  assert.deepEqual(parseBindingResponse(bytes, TXID), { host: "192.0.2.1", port: 8080 });
});

const good = bindingResponse(decodeOk(bindingRequest(TXID)), V4);

function flipped(b: Uint8Array, i: number): Uint8Array {
  const out = b.slice();
  out[i]! ^= 1;
  return out;
}

const nullCases: { name: string; bytes: Uint8Array; txid?: Uint8Array }[] = [
  { name: "other transaction", bytes: good, txid: new Uint8Array(12) },
  { name: "not STUN", bytes: new TextEncoder().encode("P2PC hello there, peer") },
  { name: "a request, not a response", bytes: bindingRequest(TXID) },
  { name: "bad FINGERPRINT", bytes: flipped(good, good.length - 1) },
  { name: "corrupted address", bytes: flipped(good, 27) },
  {
    name: "error response",
    bytes: encodeStun({
      method: METHOD_BINDING,
      class: "error",
      transactionId: TXID,
      attributes: [],
    }),
  },
  {
    name: "success without an address",
    bytes: encodeStun({
      method: METHOD_BINDING,
      class: "success",
      transactionId: TXID,
      attributes: [textAttr(StunAttr.SOFTWARE, "x")],
    }),
  },
];

for (const c of nullCases) {
  Deno.test(`parseBindingResponse -> null: ${c.name}`, () => {
    assert.equal(parseBindingResponse(c.bytes, c.txid ?? TXID), null);
  });
}

Deno.test("bindingResponse echoes the request's transaction id", () => {
  const msg = decodeOk(bindingResponse(decodeOk(bindingRequest(TXID)), V6));
  assert.deepEqual(msg.transactionId, TXID);
  assert.ok(findAttr(msg, StunAttr.XOR_MAPPED_ADDRESS));
});
