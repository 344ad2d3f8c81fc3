/** Room secret derivations: fixed answers, separation by room and label, proofs. */
import assert from "node:assert/strict";
import {
  deriveRoomKeys,
  proofVerifier,
  proveRoom,
  ROOM_PROOF_LEN,
  roomProofValid,
} from "../../lib/crypto/room.ts";
import { toHex } from "../../lib/wire/bytes.ts";

const SECRET = "correct horse battery staple";
const keys = deriveRoomKeys(SECRET, "family");

Deno.test("room keys: a fixed answer, from another implementation (Python hashlib scrypt and hmac, pyca Ed25519)", () => {
  // Pinned so the derivation never changes by accident: members on two versions must agree.
  assert.equal(
    toHex(keys.signing),
    "8ba445a3b813e07d7cb8130bd603d93958d9338c29da85fe6f914a933ffd5648",
  );
  assert.equal(
    toHex(keys.verifier),
    "6b1b21d85baa1ee820405cc7f8d6bef1ae3180092b5f548af89ea366d20c790c",
  );
  assert.equal(toHex(keys.psk), "432853981f77f558103e586c733d270a046ae6061c1f50361d4acfe1aa821bee");
});

Deno.test("room keys: the same secret and room give the same keys; any change gives others", () => {
  assert.deepEqual(deriveRoomKeys(SECRET, "family"), keys);
  const others = [
    deriveRoomKeys(SECRET, "Family"),
    deriveRoomKeys(SECRET + " ", "family"),
    deriveRoomKeys("another secret", "family"),
  ];
  for (const o of others) {
    assert.notEqual(toHex(o.verifier), toHex(keys.verifier));
    assert.notEqual(toHex(o.psk), toHex(keys.psk));
  }
  // Labels separate the keys: the server's verifier tells nothing about the psk.
  const all = new Set([toHex(keys.verifier), toHex(keys.signing), toHex(keys.psk)]);
  assert.equal(all.size, 3);
});

Deno.test("room keys: a secret typed composed or decomposed is the same secret (NFC)", () => {
  const composed = deriveRoomKeys("caf\u00e9 secret", "r");
  const decomposed = deriveRoomKeys("cafe\u0301 secret", "r");
  assert.deepEqual(composed, decomposed);
});

Deno.test("room keys: an empty secret is refused", () => {
  assert.throws(() => deriveRoomKeys("", "family"), /Cannot use room secret: it is empty/);
});

Deno.test("room proof: verifies for its input only, with the verifier it carries", () => {
  const input = new TextEncoder().encode("a registration");
  const proof = proveRoom(keys, input);
  assert.equal(proof.length, ROOM_PROOF_LEN);
  assert.deepEqual(proofVerifier(proof), keys.verifier);
  assert.ok(roomProofValid(proof, input));
  assert.equal(roomProofValid(proof, new TextEncoder().encode("another registration")), false);
  for (const pos of [0, 31, 32, 95]) {
    const bad = proof.slice();
    bad[pos]! ^= 1;
    assert.equal(roomProofValid(bad, input), false, `flipped byte ${pos}`);
  }
  assert.equal(roomProofValid(proof.subarray(0, 95), input), false);
  // A proof made with another room's key does not pass as this room's verifier.
  const other = proveRoom(deriveRoomKeys("guess", "family"), input);
  assert.ok(roomProofValid(other, input), "valid for its own verifier...");
  assert.notDeepEqual(proofVerifier(other), keys.verifier, "...which is not the room's");
});
