/**
 * A locked room's keys, all derived from the room's secret (a passphrase, or the random secret
 * of an invite), so that the server can refuse strangers without learning the secret and
 * members can prove it to each other:
 *
 * - room key = scrypt(UTF-8 of the NFC-normalised secret, salt `"p2pchat room v1"` · 0x00 ·
 *   room name, N = 2^15, r = 8, p = 1), 32 bytes
 * - signing = HKDF-SHA256(room key, empty salt, info `"p2pchat room signing"`), an Ed25519 seed
 * - verifier = the Ed25519 public key of `signing`: all the server ever keeps
 * - psk = HKDF-SHA256(room key, empty salt, info `"p2pchat room psk"`): the Noise IKpsk1 psk
 *
 * The room name is in the salt, so one secret gives unrelated keys in two rooms; scrypt makes
 * every guess at a typed secret cost 0.1-0.2 s of CPU and 32 MiB, whoever guesses (the
 * server holds the verifier, anyone on the path sees proofs). HKDF's labels keep the psk out
 * of reach of whoever holds only the verifier.
 * @example
 * const keys = deriveRoomKeys("correct horse battery staple", "family");
 * const proof = proveRoom(keys, input); // verifier · signature, in a REGISTER
 * roomProofValid(proof, input); // true
 * @module
 */
import { scryptSync } from "node:crypto";
import { hkdfSha256 } from "./hash.ts";
import { publicFromSecret, signWith, verifyStrict } from "./ed25519.ts";
import { concat } from "../wire/bytes.ts";
import { ROOM_PROOF_LEN } from "../wire/sizes.ts";

/** scrypt cost: about 0.1-0.2 s and 32 MiB per derivation, once per join. */
export const ROOM_SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
/** Length of the verifier (an Ed25519 public key) and of the psk. */
export const ROOM_KEY_LEN = 32;
/** A proof, as REGISTER carries it: the verifier it claims, then the signature (96 bytes). */
export { ROOM_PROOF_LEN };

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);
const SALT = enc.encode("p2pchat room v1\0");
const SIGNING = enc.encode("p2pchat room signing");
const PSK = enc.encode("p2pchat room psk");

/** What a member of a locked room holds. Only `verifier` may leave the machine. */
export interface RoomKeys {
  /** Ed25519 public key the server keeps for the room and checks proofs against. */
  readonly verifier: Uint8Array;
  /** Ed25519 secret seed that signs proofs. */
  readonly signing: Uint8Array;
  /** The Noise pre-shared key of the room's handshakes. */
  readonly psk: Uint8Array;
}

/**
 * The keys of `room` locked with `secret`. Throws "Cannot use room secret: ..." when the
 * secret is empty. Deterministic: everyone with the secret derives the same keys.
 */
export function deriveRoomKeys(secret: string, room: string): RoomKeys {
  const s = enc.encode(secret.normalize("NFC"));
  if (s.length === 0) throw new Error("Cannot use room secret: it is empty");
  const roomKey = new Uint8Array(
    scryptSync(s, concat(SALT, enc.encode(room)), ROOM_KEY_LEN, ROOM_SCRYPT),
  );
  const signing = hkdfSha256(EMPTY, roomKey, ROOM_KEY_LEN, SIGNING);
  return {
    verifier: publicFromSecret(signing),
    signing,
    psk: hkdfSha256(EMPTY, roomKey, ROOM_KEY_LEN, PSK),
  };
}

/** A proof of knowing the room's secret, bound to `input`: the verifier and its signature. */
export function proveRoom(keys: RoomKeys, input: Uint8Array): Uint8Array {
  return concat(keys.verifier, signWith(keys.signing, input));
}

/** The verifier a proof claims (a view into it). */
export function proofVerifier(proof: Uint8Array): Uint8Array {
  return proof.subarray(0, ROOM_KEY_LEN);
}

/**
 * Whether `proof` signs `input` with the key it claims (strict RFC 8032). The caller still
 * checks that the claimed verifier is the room's.
 */
export function roomProofValid(proof: Uint8Array, input: Uint8Array): boolean {
  if (proof.length !== ROOM_PROOF_LEN) return false;
  return verifyStrict(proofVerifier(proof), input, proof.subarray(ROOM_KEY_LEN));
}
