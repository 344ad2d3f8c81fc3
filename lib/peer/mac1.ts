/**
 * HELLO's mac1 (after WireGuard's): a MAC over the datagram keyed by a hash of the responder's
 * static public key. Checking it costs one HMAC, so handshake inits from anyone who does not
 * even know our key — random junk, scanners — are dropped before any Diffie-Hellman work.
 * Members know our key, so floods from them are bounded by the agent's init rate limits.
 */
import { hmacSha256, sha256 } from "../crypto/hash.ts";
import { equalBytes } from "../wire/bytes.ts";
import { helloMacInput, type Message } from "../wire/codec.ts";
import { MAC1_LEN } from "../wire/sizes.ts";

type Hello = Extract<Message, { type: "hello" }>;

const LABEL = new TextEncoder().encode("p2pchat mac1----");

/** The mac1 key of a responder, from its X25519 static public key. */
export function mac1Key(responderStatic: Uint8Array): Uint8Array {
  return sha256(LABEL, responderStatic);
}

/** `m` with its mac1 filled in for the responder whose mac1 key is `key`. */
export function withMac1(m: Omit<Hello, "mac1">, key: Uint8Array): Hello {
  const h: Hello = { ...m, mac1: new Uint8Array(MAC1_LEN) };
  h.mac1 = hmacSha256(key, helloMacInput(h)).subarray(0, MAC1_LEN);
  return h;
}

/** Whether `m`'s mac1 is right for our mac1 key (constant time). */
export function checkMac1(m: Hello, key: Uint8Array): boolean {
  return equalBytes(m.mac1, hmacSha256(key, helloMacInput(m)).subarray(0, MAC1_LEN));
}
