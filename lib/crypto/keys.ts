/**
 * X25519 keys: generation, derivation, Diffie-Hellman and short human-readable fingerprints,
 * computed natively by the runtime (`node:crypto`, synchronous). Pure apart from the default
 * random source, which callers can replace.
 * @module
 */
import { diffieHellman } from "node:crypto";
import { privateKeyObject, publicKeyObject, rawPublicKey } from "./_key_objects.ts";
import { sha256 } from "./hash.ts";
import { fromHex } from "../wire/bytes.ts";

/** Length in bytes of X25519 private keys, public keys and shared secrets. */
export const KEY_LEN = 32;

/** An X25519 key pair; both halves are 32 bytes. */
export interface KeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

/** Source of random bytes; injectable so tests and vectors can be deterministic. */
export type RandomBytes = (length: number) => Uint8Array;

/** Cryptographically secure random bytes from `crypto.getRandomValues`. */
export const systemRandom: RandomBytes = (length) => crypto.getRandomValues(new Uint8Array(length));

/**
 * Generate a fresh X25519 key pair.
 * @example
 * const me = generateKeyPair();
 * console.log(fingerprint(me.publicKey)); // "3f1c-09ab-77d2-e410"
 */
export function generateKeyPair(random: RandomBytes = systemRandom): KeyPair {
  return keyPairFromPrivate(random(KEY_LEN));
}

/** Derive the public key of a 32-byte X25519 private key. Throws on a wrong length. */
export function publicKeyFromPrivate(privateKey: Uint8Array): Uint8Array {
  if (privateKey.length !== KEY_LEN) {
    throw new Error(`Cannot derive public key: private key is ${privateKey.length} bytes, not 32`);
  }
  return rawPublicKey(privateKeyObject("x25519", privateKey));
}

/** Build a key pair from a private key (copied, so later changes by the caller do not leak in). */
export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  const priv = privateKey.slice();
  return { privateKey: priv, publicKey: publicKeyFromPrivate(priv) };
}

/**
 * X25519 Diffie-Hellman. Returns `null` instead of the all-zero secret when the peer's key
 * has low order (or a wrong length): such a key would let an attacker force a known secret.
 */
export function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | null {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== KEY_LEN) return null;
  if (!isValidPublicKey(publicKey)) return null;
  let secret: Uint8Array;
  try {
    secret = diffieHellman({
      privateKey: privateKeyObject("x25519", privateKey),
      publicKey: publicKeyObject("x25519", publicKey),
    });
  } catch {
    // Not reached for 32-byte keys; the runtime also refuses an all-zero output by throwing.
    return null;
  }
  let bits = 0;
  for (const b of secret) bits |= b;
  return bits === 0 ? null : new Uint8Array(secret);
}

// Every u-coordinate of a point of order 1, 2, 4 or 8 on the curve or its twist, as X25519
// reads it (bit 255 ignored, values up to 2^255 - 1 accepted unreduced). A clamped scalar is
// 8·m, so it maps exactly these to the all-zero output, whatever the private key (libsodium
// keeps the same list).
const LOW_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000", // 0, order 2
  "0100000000000000000000000000000000000000000000000000000000000000", // 1, order 4
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1, order 4
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p, i.e. 0
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p + 1, i.e. 1
].map(fromHex);

/**
 * True when `publicKey` is 32 bytes and not a low-order point, so DH with it cannot fail.
 * A table look-up, no curve arithmetic.
 */
export function isValidPublicKey(publicKey: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_LEN) return false;
  return !LOW_ORDER.some((bad) => {
    let diff = (publicKey[31]! & 0x7f) ^ bad[31]!;
    for (let i = 0; i < 31; i++) diff |= publicKey[i]! ^ bad[i]!;
    return diff === 0;
  });
}

/**
 * Short fingerprint for humans to compare out of band: the first 8 bytes of SHA-256 of the
 * public key as hex in groups of four.
 * @example
 * fingerprint(publicKey); // "ab12-cd34-ef56-7890"
 */
export function fingerprint(publicKey: Uint8Array): string {
  const digest = sha256(publicKey).subarray(0, 8);
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g)!.join("-");
}
