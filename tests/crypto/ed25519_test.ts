import assert from "node:assert/strict";
import fc from "fast-check";
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";
import { sha512 } from "../../lib/crypto/hash.ts";
import {
  montgomeryPublic,
  montgomerySecret,
  publicFromSecret,
  signWith,
  verifyStrict,
} from "../../lib/crypto/ed25519.ts";

// RFC 8032 section 7.1, TESTs 1-3.
const RFC = [
  {
    secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    message: "",
    sig: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac" +
      "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    message: "72",
    sig: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e" +
      "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
  {
    secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    public: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    message: "af82",
    sig: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290" +
      "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
  },
];

for (const [i, v] of RFC.entries()) {
  Deno.test(`ed25519: RFC 8032 TEST ${i + 1}`, () => {
    const secret = fromHex(v.secret), msg = fromHex(v.message);
    assert.equal(toHex(publicFromSecret(secret)), v.public);
    assert.equal(toHex(signWith(secret, msg)), v.sig);
    assert.equal(verifyStrict(fromHex(v.public), msg, fromHex(v.sig)), true);
  });
}

const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const leToBig = (b: Uint8Array) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n);
const bigToLe = (n: bigint) =>
  Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));

// The 8 points of small order and the other encodings of y = 1, y = -1 and y = 0 (sign bit on
// x = 0, or y + p): A verifier that took one as a public key would accept a forgery.
const P_MINUS_1 = "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
const ORDER_8 = [
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
];
const withSign = (h: string) => h.slice(0, 62) + (parseInt(h.slice(62), 16) | 0x80).toString(16);
const SMALL_ORDER = [
  "01" + "00".repeat(31), // identity
  P_MINUS_1, // order 2
  "00".repeat(32), // order 4
  withSign("00".repeat(32)),
  ...ORDER_8,
  ...ORDER_8.map(withSign),
];
const OTHER_ENCODINGS = [
  withSign("01" + "00".repeat(31)),
  withSign(P_MINUS_1),
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p, i.e. 0
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1, i.e. 1
];

Deno.test("ed25519: the small-order list is the reference's", () => {
  for (const h of SMALL_ORDER) {
    assert.equal(ed25519.Point.fromBytes(fromHex(h)).isSmallOrder(), true, h);
  }
  for (const h of OTHER_ENCODINGS) {
    assert.throws(() => ed25519.Point.fromBytes(fromHex(h)), Error, h);
  }
});

Deno.test("ed25519: forgeries under small-order public keys are refused", () => {
  // R = identity, S = 0: [S]B = R + [k]A holds once k is a multiple of A's order (8 at most).
  const sig = fromHex("01" + "00".repeat(63));
  for (const h of [...SMALL_ORDER, ...OTHER_ENCODINGS]) {
    const a = fromHex(h);
    let msg = new Uint8Array();
    for (let i = 0; i < 1000; i++) {
      msg = new TextEncoder().encode(`register ${i}`);
      const k = leToBig(sha512(Uint8Array.of(...sig.subarray(0, 32), ...a, ...msg))) % L;
      if (k % 8n === 0n) break;
    }
    assert.equal(verifyStrict(a, msg, sig), false, h);
  }
});

Deno.test("ed25519: S must be reduced; R and A must be canonical", () => {
  const v = RFC[1]!;
  const pub = fromHex(v.public), msg = fromHex(v.message), sig = fromHex(v.sig);
  const s = leToBig(sig.subarray(32));
  for (const bad of [s + L, L, (1n << 256n) - 1n]) {
    const forged = Uint8Array.of(...sig.subarray(0, 32), ...bigToLe(bad));
    assert.equal(verifyStrict(pub, msg, forged), false, `S = ${bad}`);
    assert.equal(ed25519.verify(forged, msg, pub, { zip215: false }), false);
  }
  for (const h of OTHER_ENCODINGS) {
    assert.equal(verifyStrict(pub, msg, Uint8Array.of(...fromHex(h), ...sig.subarray(32))), false);
  }
  const notOnCurve = Uint8Array.of(2, ...new Array(31).fill(0));
  assert.equal(verifyStrict(notOnCurve, msg, sig), false);
});

Deno.test("ed25519: agrees with the strict reference on mutated signatures (property)", () => {
  const secret = fromHex(RFC[0]!.secret), pub = publicFromSecret(secret);
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 100 }),
      fc.integer({ min: 0, max: 159 * 8 + 7 }),
      (msg, bit) => {
        const sig = signWith(secret, msg);
        const all = Uint8Array.of(...pub, ...sig);
        if (bit < all.length * 8) all[bit >> 3]! ^= 1 << (bit & 7);
        const [a, s] = [all.subarray(0, 32), all.subarray(32)];
        const want = ed25519.verify(s, msg, a, { zip215: false });
        assert.equal(verifyStrict(a, msg, s), want);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("ed25519: the X25519 keys of an Ed25519 pair agree with the reference", () => {
  for (const v of RFC) {
    const secret = fromHex(v.secret);
    assert.equal(
      toHex(montgomerySecret(secret)),
      toHex(ed25519.utils.toMontgomerySecret(secret)),
    );
    assert.equal(
      toHex(montgomeryPublic(fromHex(v.public))),
      toHex(ed25519.utils.toMontgomery(fromHex(v.public))),
    );
  }
});

Deno.test("ed25519: secret keys must be 32 bytes", () => {
  for (const len of [0, 31, 33, 64]) {
    assert.throws(() => publicFromSecret(new Uint8Array(len)), /Cannot derive public key/);
    assert.throws(() => signWith(new Uint8Array(len), new Uint8Array()), /Cannot sign/);
  }
});
