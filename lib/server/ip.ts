/**
 * What a source IP counts as: the unit per-source limits count by (an IPv4 address or an
 * IPv6 /64), and the address classes the server accepts as announced LAN addresses.
 * IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 clients) is IPv4.
 */
import { ipFromBytes, ipv4Bytes, ipv6Bytes } from "../wire/addr.ts";
import { toHex } from "../wire/bytes.ts";

/** The address as 4 bytes (IPv4, also when v4-mapped) or 16 (IPv6), or null if not an IP. */
export function ipBytes(host: string): Uint8Array | null {
  if (!host.includes(":")) return ipv4Bytes(host);
  const b = ipv6Bytes(host);
  if (!b) return null;
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? b.slice(12) : b;
}

/**
 * What the per-source limits count by: the IPv4 address, or the IPv6 /64 (one subscriber
 * usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
 */
export function limitKey(host: string): string {
  const b = ipBytes(host);
  if (!b) return host;
  return b.length === 4 ? ipFromBytes(b) : `${toHex(b.subarray(0, 8))}/64`;
}
