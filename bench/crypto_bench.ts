/**
 * The encryption layer's costs (`deno bench bench/crypto_bench.ts`): a whole Noise IK handshake
 * (what connecting to a peer adds), sealing and opening one full DATA fragment, and the two
 * public-key operations underneath: one X25519 DH and one Ed25519 sign plus strict verify; and the
 * AEAD alone, what seal + open costs without the transport's framing.
 */
import { SecureLayer } from "../lib/peer/secure.ts";
import { newIdentity, sign, verify } from "../lib/identity/identity.ts";
import { dh } from "../lib/crypto/keys.ts";
import { CipherState } from "../lib/crypto/noise.ts";

const A = "00000000000000a1", B = "00000000000000b2";
const ids = [newIdentity(), newIdentity()];
const layer = (i: number, self: string) =>
  new SecureLayer({
    staticKey: { publicKey: ids[i]!.xPublic, privateKey: ids[i]!.xSecret },
    sessionId: self,
  });
const alice = layer(0, A), bob = layer(1, B);
alice.addPeer(B, ids[1]!.xPublic);
bob.addPeer(A, ids[0]!.xPublic);
const header = Uint8Array.of(0x50, 1, 0x50);
let wall = Date.now();

function handshake(): void {
  alice.restartHandshake(B);
  const r = bob.onHandshakeInit(alice.handshakeInit(B, 0, ++wall), 0);
  if (!r.ok || !alice.onHandshakeResp(r.reply, 0).ok) throw new Error("handshake failed");
}

Deno.bench("Noise IK handshake (both sides)", handshake);

handshake();
const fragment = new Uint8Array(1058); // a full DATA fragment: 1024 bytes of text plus fields
Deno.bench("seal + open one 1058-byte DATA fragment", () => {
  const body = alice.seal(B, header, fragment, 0)!;
  if (!bob.open(header, body, 0).ok) throw new Error("open failed");
});

// The AEAD alone, as Noise's CipherState calls node:crypto (one createCipheriv or
// createDecipheriv per message): the floor under the row above, which adds framing and replay.
const [tx, rx] = [
  new CipherState("ChaChaPoly", new Uint8Array(32)),
  new CipherState("ChaChaPoly", new Uint8Array(32)),
];
const ad = new Uint8Array(15);
Deno.bench("ChaCha20-Poly1305 alone: encrypt + decrypt 1058 bytes", () => {
  if (!rx.decryptWithAd(ad, tx.encryptWithAd(ad, fragment)).ok) throw new Error("decrypt failed");
});

// The handshake does eight of these; static keys are the common case.
Deno.bench("X25519 DH (static keys)", () => {
  if (dh(ids[0]!.xSecret, ids[1]!.xPublic) === null) throw new Error("dh failed");
});

const message = new Uint8Array(128); // about the size of a signed REGISTER
Deno.bench("Ed25519 sign + strict verify (128-byte message)", () => {
  if (!verify(ids[0]!.edPublic, message, sign(ids[0]!, message))) throw new Error("verify failed");
});
