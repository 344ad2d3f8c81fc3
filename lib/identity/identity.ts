/**
 * A long-term peer identity: one Ed25519 key that signs, plus the X25519 pair derived from it
 * for Noise static keys, so one fingerprint names both. Also the identity file codec. Pure:
 * no I/O, no clock; randomness is injectable.
 *
 * @example
 * const me = newIdentity();
 * const sig = sign(me, bytes);
 * verify(me.edPublic, bytes, sig); // true
 * fingerprint(me.edPublic); // "3f1c-09ab-77d2-e410"
 * @module
 */
import {
  montgomeryPublic,
  montgomerySecret,
  publicFromSecret,
  signWith,
  verifyStrict,
} from "../crypto/ed25519.ts";
import {
  fingerprint as keyFingerprint,
  isValidPublicKey,
  publicKeyFromPrivate,
  type RandomBytes,
  systemRandom,
} from "../crypto/keys.ts";
import { fromHex, toHex } from "../wire/bytes.ts";

/** Length in bytes of Ed25519 secret and public keys and of the derived X25519 keys. */
export const KEY_LEN = 32;
/** Length in bytes of an Ed25519 signature. */
export const SIGNATURE_LEN = 64;
/** Version written to, and required in, identity files. */
export const IDENTITY_FILE_VERSION = 1;

/** Outcome of decoding untrusted text; failures carry a short reason and never throw. */
export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * A peer's keys, all 32 bytes. `xSecret`/`xPublic` are derived from the Ed25519 pair
 * (RFC 7748 birational map), so Noise can use them as the static key.
 */
export interface Identity {
  readonly edSecret: Uint8Array;
  readonly edPublic: Uint8Array;
  readonly xSecret: Uint8Array;
  readonly xPublic: Uint8Array;
}

/** Generate a fresh identity from 32 random bytes (the Ed25519 secret key). */
export function newIdentity(random: RandomBytes = systemRandom): Identity {
  return identityFromSecret(random(KEY_LEN));
}

/**
 * Rebuild an identity from its 32-byte Ed25519 secret key (copied, so later changes by the
 * caller do not leak in). Throws on a wrong length.
 */
export function identityFromSecret(edSecret: Uint8Array): Identity {
  if (edSecret.length !== KEY_LEN) {
    throw new Error(`Cannot derive identity: secret key is ${edSecret.length} bytes, not 32`);
  }
  const secret = edSecret.slice();
  const xSecret = montgomerySecret(secret);
  // X25519's base point is the image of Ed25519's, so [xSecret]9 is the map of edPublic.
  return {
    edSecret: secret,
    edPublic: publicFromSecret(secret),
    xSecret,
    xPublic: publicKeyFromPrivate(xSecret),
  };
}

/**
 * Short fingerprint for humans to compare out of band: the first 8 bytes of SHA-256 of the
 * Ed25519 public key as hex in four groups of four.
 * @example
 * fingerprint(id.edPublic); // "3f1c-09ab-77d2-e410"
 */
export function fingerprint(edPublic: Uint8Array): string {
  return keyFingerprint(edPublic);
}

/** True when `s` has the shape `fingerprint` produces. */
export function isFingerprint(s: string): boolean {
  return /^[0-9a-f]{4}(-[0-9a-f]{4}){3}$/.test(s);
}

/** Sign `msg` with the identity's Ed25519 key; returns 64 bytes. */
export function sign(id: Identity, msg: Uint8Array): Uint8Array {
  return signWith(id.edSecret, msg);
}

/**
 * Check an Ed25519 signature (RFC 8032 strict: canonical encodings, small-order keys refused).
 * Never throws: any malformed key, signature or message gives `false`.
 */
export function verify(edPublic: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  return verifyStrict(edPublic, msg, sig);
}

/**
 * The X25519 public key that belongs to an Ed25519 public key, e.g. to check that a peer's
 * Noise static key matches its signed identity. `null` (never a throw) when the key is not
 * 32 bytes, is not a point on the curve, or maps to a low-order X25519 key.
 */
export function xPublicFromEd(edPublic: Uint8Array): Uint8Array | null {
  try {
    if (!(edPublic instanceof Uint8Array) || edPublic.length !== KEY_LEN) return null;
    const x = montgomeryPublic(edPublic);
    return isValidPublicKey(x) ? x : null;
  } catch {
    return null;
  }
}

/**
 * The identity file: one JSON object and a newline. Only `ed25519_secret` is needed to load
 * it; `public` and `fingerprint` let a human see which identity it is, and are checked.
 * @example
 * encodeIdentityFile(id);
 * // {"version":1,"ed25519_secret":"9d61…","public":"d75a…","fingerprint":"21fe-31df-a154-a661"}\n
 */
export function encodeIdentityFile(id: Identity): string {
  return JSON.stringify({
    version: IDENTITY_FILE_VERSION,
    ed25519_secret: toHex(id.edSecret),
    public: toHex(id.edPublic),
    fingerprint: fingerprint(id.edPublic),
  }) + "\n";
}

const KEY_HEX = /^[0-9a-fA-F]{64}$/;

/** Parse an identity file; never throws. Refuses a `public` key that is not the secret's. */
export function decodeIdentityFile(text: string): Decoded<Identity> {
  const fail = (reason: string): Decoded<Identity> => ({ ok: false, reason });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return fail("not valid JSON");
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return fail("not a JSON object");
  }
  const file = data as Record<string, unknown>;
  if (file.version !== IDENTITY_FILE_VERSION) {
    return fail(`unsupported version ${JSON.stringify(file.version) ?? "(missing)"}`);
  }
  const secretHex = file.ed25519_secret;
  if (typeof secretHex !== "string" || !KEY_HEX.test(secretHex)) {
    return fail("ed25519_secret is not 64 hex digits");
  }
  const publicHex = file.public;
  if (typeof publicHex !== "string" || !KEY_HEX.test(publicHex)) {
    return fail("public is not 64 hex digits");
  }
  const id = identityFromSecret(fromHex(secretHex));
  if (toHex(id.edPublic) !== publicHex.toLowerCase()) {
    return fail("public does not match ed25519_secret");
  }
  if (file.fingerprint !== undefined && file.fingerprint !== fingerprint(id.edPublic)) {
    return fail("fingerprint does not match the key");
  }
  return { ok: true, value: id };
}
