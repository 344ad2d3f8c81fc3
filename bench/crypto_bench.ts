/**
 * The encryption layer's costs (`deno bench bench/crypto_bench.ts`): a whole Noise IK handshake
 * (what connecting to a peer adds), and sealing and opening one full DATA fragment.
 */
import { SecureLayer } from "../lib/peer/secure.ts";
import { newIdentity } from "../lib/identity/identity.ts";

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
