/**
 * Stateless registration cookies: a keyed MAC over the source address (its transport too: a
 * WebSocket connection's cookie is not a UDP endpoint's) and a time bucket.
 * Only a sender that receives at its source address can echo one, so a spoofed source can
 * never complete a registration.
 */
import { hmacSha256 } from "../crypto/hash.ts";
import { type Addr, addrKey } from "../wire/addr.ts";
import { COOKIE_LEN } from "../wire/codec.ts";
import { equalBytes } from "../wire/bytes.ts";

const enc = new TextEncoder();
/** A cookie is valid in the bucket it was made in and the next one: 60-120 s. */
const BUCKET_MS = 60_000;

export class Cookies {
  constructor(private secret: Uint8Array) {}

  private mac(from: Addr, bucket: number): Uint8Array {
    return hmacSha256(this.secret, enc.encode(`${bucket}|${addrKey(from)}`)).subarray(
      0,
      COOKIE_LEN,
    );
  }

  make(from: Addr, now: number): Uint8Array {
    return this.mac(from, Math.floor(now / BUCKET_MS));
  }

  check(cookie: Uint8Array, from: Addr, now: number): boolean {
    if (cookie.length !== COOKIE_LEN) return false;
    const b = Math.floor(now / BUCKET_MS);
    return equalBytes(cookie, this.mac(from, b)) || equalBytes(cookie, this.mac(from, b - 1));
  }
}
