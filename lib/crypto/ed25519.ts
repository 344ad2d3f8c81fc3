/**
 * Ed25519 signatures (RFC 8032) through the runtime's native, synchronous `node:crypto`, plus
 * the maps from an Ed25519 key to the X25519 key of the same secret (RFC 7748 birational map).
 * Verification is strict: the checks the native verifier does not promise are made here first.
 *
 * `node:crypto` cannot map a public key from one curve to the other, so
 * {@link montgomeryPublic} alone still uses @noble/curves; it runs once per member learned,
 * not per packet.
 * @example
 * const edPublic = publicFromSecret(secret);
 * verifyStrict(edPublic, msg, signWith(secret, msg)); // true
 * @module
 */
import { sign as nodeSign, verify as nodeVerify } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { privateKeyObject, publicKeyObject, rawPublicKey } from "./_key_objects.ts";
import { sha512 } from "./hash.ts";
import { fromHex } from "../wire/bytes.ts";

/** Length in bytes of Ed25519 secret and public keys, and of the matching X25519 keys. */
export const KEY_LEN = 32;
/** Length in bytes of an Ed25519 signature: R (a point) then S (a scalar). */
export const SIGNATURE_LEN = 64;

function secretKey(action: string, secret: Uint8Array) {
  if (secret.length !== KEY_LEN) {
    throw new Error(`Cannot ${action}: secret key is ${secret.length} bytes, not 32`);
  }
  return privateKeyObject("ed25519", secret);
}

/** The public key of a 32-byte secret key (a seed, RFC 8032 section 5.1.5). */
export function publicFromSecret(secret: Uint8Array): Uint8Array {
  return rawPublicKey(secretKey("derive public key", secret));
}

/** Sign `msg` with a 32-byte secret key (deterministic, RFC 8032); returns 64 bytes. */
export function signWith(secret: Uint8Array, msg: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, msg, secretKey("sign", secret)));
}

// Bits 0..254 of an encoding hold y; bit 255 the sign of x.
const Y_MASK = 0x7f;
/** p = 2^255 - 19, little-endian. */
const P = fromHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
/** The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const L = fromHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
// The y of each of the 8 points of small order (1, 2, 4, 8), all canonical: y = 0 and the two
// order-8 values occur with either sign of x, y = 1 and y = -1 only with x = 0.
const SMALL_ORDER_Y = [
  "0000000000000000000000000000000000000000000000000000000000000000", // order 4
  "0100000000000000000000000000000000000000000000000000000000000000", // the identity
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1, order 2
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
].map(fromHex);

/** Little-endian `a < b` over 32 bytes, after clearing bit 255 of `a` when `mask`. */
function lessThan(a: Uint8Array, b: Uint8Array, mask: boolean): boolean {
  for (let i = 31; i >= 0; i--) {
    const x = i === 31 && mask ? a[i]! & Y_MASK : a[i]!;
    if (x !== b[i]) return x < b[i]!;
  }
  return false;
}

function yIs(encoding: Uint8Array, y: Uint8Array): boolean {
  let diff = (encoding[31]! & Y_MASK) ^ y[31]!;
  for (let i = 0; i < 31; i++) diff |= encoding[i]! ^ y[i]!;
  return diff === 0;
}

/**
 * Whether a point encoding is one RFC 8032 section 5.1.3 accepts: y < p, and no sign bit on
 * x = 0 (y = 1 or y = -1). Whether the point is on the curve is left to the native decoder.
 */
function isCanonicalPoint(encoding: Uint8Array): boolean {
  if (!lessThan(encoding, P, true)) return false;
  const xZero = yIs(encoding, SMALL_ORDER_Y[1]!) || yIs(encoding, SMALL_ORDER_Y[2]!);
  return !(xZero && (encoding[31]! & 0x80) !== 0);
}

/** Whether an encoding's y belongs to one of the 8 points of small order. */
function hasSmallOrder(encoding: Uint8Array): boolean {
  return SMALL_ORDER_Y.some((y) => yIs(encoding, y));
}

/**
 * Strict Ed25519 verification, as strict as @noble/curves with `zip215: false`: A and R
 * canonical, S < L, and small-order public keys refused (with one, anybody can sign any
 * message; the native verifier accepts such forgeries). The native verifier then checks the
 * cofactorless equation [S]B = R + [k]A, which accepts a subset of what the cofactored one
 * accepts. Never throws: anything malformed gives `false`.
 */
export function verifyStrict(edPublic: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    if (
      !(edPublic instanceof Uint8Array) || !(msg instanceof Uint8Array) ||
      !(sig instanceof Uint8Array) || edPublic.length !== KEY_LEN ||
      sig.length !== SIGNATURE_LEN
    ) return false;
    if (!isCanonicalPoint(edPublic) || hasSmallOrder(edPublic)) return false;
    if (!isCanonicalPoint(sig.subarray(0, 32)) || !lessThan(sig.subarray(32), L, false)) {
      return false;
    }
    return nodeVerify(null, msg, publicKeyObject("ed25519", edPublic), sig);
  } catch {
    // The runtime refuses to import a public key that is not a point on the curve.
    return false;
  }
}

/** The X25519 private key of an Ed25519 secret: the clamped first half of SHA-512(secret). */
export function montgomerySecret(secret: Uint8Array): Uint8Array {
  const x = sha512(secret).slice(0, KEY_LEN);
  x[0]! &= 248;
  x[31]! &= 127;
  x[31]! |= 64;
  return x;
}

/**
 * The X25519 public key of an Ed25519 public key: u = (1 + y) / (1 - y) mod p, after a strict
 * decoding of the point. Throws when `edPublic` is not a canonical curve point. Uses
 * @noble/curves: `node:crypto` cannot convert a public key between the two curves.
 */
export function montgomeryPublic(edPublic: Uint8Array): Uint8Array {
  return ed25519.utils.toMontgomery(edPublic);
}
