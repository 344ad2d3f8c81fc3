/**
 * Raw 32-byte X25519 and Ed25519 keys as `node:crypto` KeyObjects, which the runtime's native,
 * synchronous DH, sign and verify take. Parsing a key costs a few microseconds, so keys are
 * cached: private keys by array (static keys keep theirs for the process's life, ephemeral
 * keys for their handshake), public keys by value in a small table (peers and members reuse
 * theirs). A cached entry is checked against the array's current bytes before use, so a caller
 * that overwrites a key never gets the old one back.
 * @module
 */
import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { equalBytes, fromHex } from "../wire/bytes.ts";

/** The two curves whose keys are 32 raw bytes. */
export type Curve = "x25519" | "ed25519";

// RFC 8410 DER encodings are a fixed header followed by the raw key.
const PKCS8_HEADER: Record<Curve, Uint8Array> = {
  x25519: fromHex("302e020100300506032b656e04220420"),
  ed25519: fromHex("302e020100300506032b657004220420"),
};
const SPKI_HEADER: Record<Curve, Uint8Array> = {
  x25519: fromHex("302a300506032b656e032100"),
  ed25519: fromHex("302a300506032b6570032100"),
};
const SPKI_LEN = 44;

/** Public keys remembered by value: peers of a busy agent, members of a busy server. */
export const PUBLIC_KEY_CACHE_SIZE = 1024;

interface Entry {
  readonly raw: Uint8Array;
  readonly key: KeyObject;
}

const privateKeys: Record<Curve, WeakMap<Uint8Array, Entry>> = {
  x25519: new WeakMap(),
  ed25519: new WeakMap(),
};
const publicKeys = new Map<string, KeyObject>();

function der(header: Uint8Array, raw: Uint8Array): Buffer {
  const out = Buffer.alloc(header.length + raw.length);
  out.set(header);
  out.set(raw, header.length);
  return out;
}

/** The KeyObject of a 32-byte private key. Throws when the runtime refuses the key. */
export function privateKeyObject(curve: Curve, raw: Uint8Array): KeyObject {
  const hit = privateKeys[curve].get(raw);
  if (hit && equalBytes(hit.raw, raw)) return hit.key;
  const key = createPrivateKey({
    key: der(PKCS8_HEADER[curve], raw),
    format: "der",
    type: "pkcs8",
  });
  privateKeys[curve].set(raw, { raw: raw.slice(), key });
  return key;
}

/** The KeyObject of a 32-byte public key. Throws when the runtime refuses the key. */
export function publicKeyObject(curve: Curve, raw: Uint8Array): KeyObject {
  const id = curve + String.fromCharCode(...raw);
  const hit = publicKeys.get(id);
  if (hit) return hit;
  const key = createPublicKey({ key: der(SPKI_HEADER[curve], raw), format: "der", type: "spki" });
  // Oldest first out: Map iteration follows insertion order.
  if (publicKeys.size >= PUBLIC_KEY_CACHE_SIZE) publicKeys.delete(publicKeys.keys().next().value!);
  publicKeys.set(id, key);
  return key;
}

/** The raw 32-byte public key of a private or public KeyObject, in a buffer of its own. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const spki = (key.type === "private" ? createPublicKey(key) : key)
    .export({ format: "der", type: "spki" });
  if (spki.length !== SPKI_LEN) throw new Error(`Cannot export public key: ${spki.length} bytes`);
  return new Uint8Array(spki.subarray(SPKI_LEN - 32));
}
