/**
 * X25519 keys: generation, derivation, Diffie-Hellman and short human-readable fingerprints.
 * Pure apart from the default random source, which callers can replace.
 * @module
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";

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
  return x25519.getPublicKey(privateKey);
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
  if (privateKey.length !== KEY_LEN || publicKey.length !== KEY_LEN) return null;
  try {
    return x25519.getSharedSecret(privateKey, publicKey);
  } catch {
    // noble throws exactly when the shared point is the identity, i.e. a low-order peer key.
    return null;
  }
}

// Any clamped scalar is 8·m with 0 < m < the group order, so it maps a point to the identity
// iff the point has small order: one fixed scalar decides validity for every private key.
const PROBE_SCALAR = new Uint8Array(KEY_LEN).fill(0x42);

/** True when `publicKey` is 32 bytes and not a low-order point, so DH with it cannot fail. */
export function isValidPublicKey(publicKey: Uint8Array): boolean {
  return dh(PROBE_SCALAR, publicKey) !== null;
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
