/**
 * What a source IP counts as: the unit per-source limits count by (an IPv4 address or an
 * IPv6 /64), and the address classes the server accepts as announced local addresses (LAN,
 * and a few global IPv6). IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports
 * IPv4 clients) is IPv4.
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

/**
 * The LAN ranges, by family, as [leading bytes, prefix length in bits]: unicast ranges that
 * are not reachable across the internet (RFC 6890's "globally reachable: false").
 */
const LAN4: [number[], number][] = [
  [[10], 8], // RFC 1918
  [[172, 16], 12], // RFC 1918
  [[192, 168], 16], // RFC 1918
  [[100, 64], 10], // RFC 6598 shared address space (carrier-grade NAT)
  [[169, 254], 16], // link-local
  [[127], 8], // loopback: peers on one host (tests, a server next to its peers)
  // Documentation and benchmarking ranges (RFC 5737, RFC 2544): never routed on the internet,
  // but labs and test hosts number their networks from them.
  [[192, 0, 2], 24],
  [[198, 51, 100], 24],
  [[203, 0, 113], 24],
  [[198, 18], 15],
];
// The IPv6 documentation prefix 2001:db8::/32 (RFC 3849) is not here: it lies inside global
// unicast 2000::/3, and labs number their IPv6 internet from it, so it counts as global.
const LAN6: [number[], number][] = [
  [[0xfc], 7], // unique local
  [[0xfe, 0x80], 10], // link-local
  [[...new Array(15).fill(0), 1], 128], // ::1
];

function inPrefix(b: Uint8Array, prefix: number[], bits: number): boolean {
  for (let i = 0; i * 8 < bits; i++) {
    const mask = bits - i * 8 >= 8 ? 0xff : (0xff << (8 - (bits - i * 8))) & 0xff;
    if ((b[i]! & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * Whether `host` can be a LAN address worth announcing to a room: private (RFC 1918),
 * carrier-grade NAT (100.64/10), unique local (fc00::/7), link-local, loopback, or an IPv4
 * documentation or benchmarking range. Peers send handshakes to the locals the server
 * announces, so anything else would let a member aim a whole room's probes at an address of
 * its choice on the internet (global IPv6 is let through only a few at a time: isGlobalV6).
 */
export function isLanAddress(host: string): boolean {
  const b = ipBytes(host);
  if (!b) return false;
  return (b.length === 4 ? LAN4 : LAN6).some(([p, bits]) => inPrefix(b, p, bits));
}

/**
 * Whether `host` is a global unicast IPv6 address (2000::/3, the documentation prefix
 * 2001:db8::/32 included), not v4-mapped. A host's own global IPv6 addresses are reachable
 * through stateful firewalls by hole punching, so the server passes a few of them on as locals
 * (it cannot check them: they are bounded in number instead, see lib/server/state.ts).
 */
export function isGlobalV6(host: string): boolean {
  const b = ipBytes(host);
  return b !== null && b.length === 16 && (b[0]! & 0xe0) === 0x20;
}
