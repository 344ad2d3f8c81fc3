import assert from "node:assert/strict";
import fc from "fast-check";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";
import { hkdfSha256, hmacSha256, sha256, sha512 } from "../../lib/crypto/hash.ts";

const text = new TextEncoder();

const vectors: { name: string; got: () => Uint8Array; want: string }[] = [
  {
    name: "SHA-256 of the empty string",
    got: () => sha256(new Uint8Array()),
    want: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  },
  {
    name: 'SHA-256 "abc" (FIPS 180-2)',
    got: () => sha256(text.encode("abc")),
    want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  },
  {
    name: 'SHA-256 "abc" given in parts',
    got: () => sha256(text.encode("a"), new Uint8Array(), text.encode("bc")),
    want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  },
  {
    name: 'SHA-512 "abc" (FIPS 180-2)',
    got: () => sha512(text.encode("abc")),
    want: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" +
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
  },
  {
    name: "HMAC-SHA256 RFC 4231 test case 2",
    got: () => hmacSha256(text.encode("Jefe"), text.encode("what do ya want for nothing?")),
    want: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  },
  {
    name: "HKDF-SHA256 RFC 5869 test case 3 (empty salt and info)",
    got: () => hkdfSha256(new Uint8Array(), new Uint8Array(22).fill(0x0b), 42),
    want: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  },
];
for (const v of vectors) {
  Deno.test(`hash: ${v.name}`, () => {
    const got = v.got();
    assert.equal(toHex(got), v.want);
    assert.equal(Object.getPrototypeOf(got), Uint8Array.prototype, "a plain Uint8Array");
    assert.equal(got.byteLength, got.buffer.byteLength, "owns its buffer");
  });
}

Deno.test("hash: HKDF is Noise's HMAC chain (section 4.3), empty key material included", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 64 }),
      (ck, ikm) => {
        const temp = hmacSha256(ck, ikm);
        const o1 = hmacSha256(temp, Uint8Array.of(1));
        const o2 = hmacSha256(temp, Uint8Array.of(...o1, 2));
        const o3 = hmacSha256(temp, Uint8Array.of(...o2, 3));
        assert.equal(toHex(hkdfSha256(ck, ikm, 96)), toHex(o1) + toHex(o2) + toHex(o3));
      },
    ),
    { numRuns: 100 },
  );
  assert.equal(hkdfSha256(fromHex("00".repeat(32)), new Uint8Array(), 64).length, 64);
});
