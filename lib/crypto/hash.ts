/**
 * SHA-256, SHA-512, HMAC-SHA256 and HKDF-SHA256 through the runtime's native `node:crypto`,
 * synchronously, so the sans-IO state machines can call them. Every result is a fresh
 * `Uint8Array` that owns its buffer.
 * @module
 */
import { createHash, createHmac, hkdfSync } from "node:crypto";

/** SHA-256 output length in bytes. */
export const SHA256_LEN = 32;

const EMPTY = new Uint8Array(0);

/**
 * SHA-256 of the concatenation of `parts` (hashed in place, not copied together first).
 * @example
 * sha256(h, data); // Noise MixHash: h = HASH(h || data)
 */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** SHA-512 of `data`. */
export function sha512(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha512").update(data).digest());
}

/** HMAC-SHA256 of `data` under `key`. */
export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

/**
 * HKDF-SHA256 (RFC 5869): extract with `salt`, then `length` bytes of output for `info`
 * (empty by default). Noise's HKDF(ck, ikm) is exactly this with salt = ck and empty info,
 * its outputs the 32-byte slices.
 * @example
 * const okm = hkdfSha256(ck, dhOutput, 64); // ck' = okm[0..32], k = okm[32..64]
 */
export function hkdfSha256(
  salt: Uint8Array,
  ikm: Uint8Array,
  length: number,
  info: Uint8Array = EMPTY,
): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", ikm, salt, info, length));
}
