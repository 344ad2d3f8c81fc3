import assert from "node:assert/strict";
import fc from "fast-check";
import { x25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";
import {
  dh,
  fingerprint,
  generateKeyPair,
  isValidPublicKey,
  keyPairFromPrivate,
  publicKeyFromPrivate,
} from "../../lib/crypto/keys.ts";

// RFC 7748 section 6.1 test vector.
const ALICE_PRIV = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
const ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PRIV = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
const BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

Deno.test("keys: RFC 7748 public keys and shared secret", () => {
  assert.equal(toHex(publicKeyFromPrivate(ALICE_PRIV)), ALICE_PUB);
  assert.equal(toHex(keyPairFromPrivate(BOB_PRIV).publicKey), BOB_PUB);
  assert.equal(toHex(dh(ALICE_PRIV, fromHex(BOB_PUB))!), SHARED);
  assert.equal(toHex(dh(BOB_PRIV, fromHex(ALICE_PUB))!), SHARED);
});

Deno.test("keys: generated pairs agree and use the injected random source", () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  assert.deepEqual(dh(a.privateKey, b.publicKey), dh(b.privateKey, a.publicKey));
  const fixed = generateKeyPair((n) => new Uint8Array(n).fill(9));
  assert.deepEqual(fixed.publicKey, publicKeyFromPrivate(new Uint8Array(32).fill(9)));
  assert.throws(() => publicKeyFromPrivate(new Uint8Array(31)), /Cannot derive public key/);
});

Deno.test("keys: low-order and malformed public keys are refused", () => {
  const lowOrder = [
    new Uint8Array(32), // 0
    Uint8Array.of(1, ...new Array(31).fill(0)), // 1
    fromHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), // order 8
    fromHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p - 1
  ];
  for (const k of lowOrder) {
    assert.equal(isValidPublicKey(k), false, toHex(k));
    assert.equal(dh(ALICE_PRIV, k), null);
  }
  assert.equal(isValidPublicKey(new Uint8Array(31)), false);
  assert.equal(isValidPublicKey(fromHex(BOB_PUB)), true);
});

Deno.test("keys: fingerprint is the grouped hex of SHA-256's first 8 bytes", () => {
  const fp = fingerprint(fromHex(ALICE_PUB));
  assert.match(fp, /^[0-9a-f]{4}(-[0-9a-f]{4}){3}$/);
  assert.equal(fp, fingerprint(fromHex(ALICE_PUB)));
  assert.notEqual(fp, fingerprint(fromHex(BOB_PUB)));
  // sha256("") = e3b0c442 98fc1c14 ...
  assert.equal(fingerprint(new Uint8Array()), "e3b0-c442-98fc-1c14");
});

// @noble/curves serves as an independent reference implementation below.
Deno.test("keys: the low-order table is exactly what makes X25519 output zero", () => {
  const table = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  ].map(fromHex);
  // Bit 255 is ignored by X25519, so each entry also counts with it set.
  const withHighBit = table.map((k) => Uint8Array.of(...k.subarray(0, 31), k[31]! | 0x80));
  for (const k of [...table, ...withHighBit]) {
    assert.throws(() => x25519.getSharedSecret(ALICE_PRIV, k), Error, toHex(k));
    assert.equal(isValidPublicKey(k), false, toHex(k));
    assert.equal(dh(ALICE_PRIV, k), null, toHex(k));
  }
});

Deno.test("keys: DH and public keys match the reference, for random and unreduced keys", () => {
  const unreduced: Uint8Array[] = [];
  for (let low = 0xef; low <= 0xff; low++) {
    // p + 2 ... p + 18: accepted by X25519 and reduced mod p.
    unreduced.push(Uint8Array.of(low, ...new Array(30).fill(0xff), 0x7f));
  }
  const bob = fromHex(BOB_PUB);
  unreduced.push(Uint8Array.of(...bob.subarray(0, 31), bob[31]! | 0x80));
  for (const k of unreduced) {
    assert.equal(toHex(dh(ALICE_PRIV, k)!), toHex(x25519.getSharedSecret(ALICE_PRIV, k)), toHex(k));
  }
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (priv, peer) => {
        assert.equal(toHex(publicKeyFromPrivate(priv)), toHex(x25519.getPublicKey(priv)));
        assert.equal(isValidPublicKey(peer), true);
        assert.equal(toHex(dh(priv, peer)!), toHex(x25519.getSharedSecret(priv, peer)));
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("keys: a private key overwritten in place is used with its new bytes", () => {
  const priv = ALICE_PRIV.slice();
  assert.equal(toHex(dh(priv, fromHex(BOB_PUB))!), SHARED);
  assert.equal(toHex(publicKeyFromPrivate(priv)), ALICE_PUB);
  priv.set(BOB_PRIV);
  assert.equal(toHex(publicKeyFromPrivate(priv)), BOB_PUB);
  assert.equal(toHex(dh(priv, fromHex(ALICE_PUB))!), SHARED);
});

Deno.test("keys: results are plain arrays that own their buffers", () => {
  const pair = keyPairFromPrivate(ALICE_PRIV);
  const secret = dh(pair.privateKey, fromHex(BOB_PUB))!;
  for (const b of [pair.publicKey, secret]) {
    assert.equal(Object.getPrototypeOf(b), Uint8Array.prototype);
    assert.equal(b.byteLength, b.buffer.byteLength);
  }
});

Deno.test("keys: dh is null, never a throw, for keys of the wrong length or type", () => {
  const junk = [new Uint8Array(31), new Uint8Array(33), "x", undefined, [
    1,
    2,
  ]] as unknown as Uint8Array[];
  for (const k of junk) {
    assert.equal(dh(ALICE_PRIV, k), null);
    assert.equal(dh(k, fromHex(BOB_PUB)), null);
    assert.equal(isValidPublicKey(k), false);
  }
});
