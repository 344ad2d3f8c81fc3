/** Host name resolution for the server address the user typed. */
import { lookup } from "node:dns/promises";
import { type Addr, ipFromBytes, ipv4Bytes, ipv6Bytes } from "../wire/addr.ts";

/**
 * An IP literal in the form received datagrams report it, so the server's answers compare equal
 * to it: IPv4 as it is, v4-mapped IPv6 as its IPv4, other IPv6 as RFC 5952 text (lower case,
 * longest zero run compressed); null if `host` is not an IP literal.
 */
export function canonicalIp(host: string): string | null {
  if (ipv4Bytes(host)) return host;
  const b = ipv6Bytes(host);
  if (!b) return null;
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return ipFromBytes(mapped ? b.subarray(12) : b);
}

/**
 * Resolves to an IP address (IPv4 or IPv6: peers bind dual-stack sockets). A host name with
 * both gets its IPv4 address: it works behind every NAT, while IPv6 may be missing on the
 * path (the peer's own IPv6 addresses are announced to the room either way). Throws an Error
 * with a user-facing message on failure.
 */
export async function resolveAddr(a: Addr): Promise<Addr> {
  const literal = canonicalIp(a.host);
  if (literal) return { host: literal, port: a.port };
  let found: { address: string; family: number }[];
  try {
    found = await lookup(a.host, { all: true });
  } catch {
    throw new Error(`Cannot resolve server host "${a.host}"`);
  }
  const pick = found.find((r) => r.family === 4) ?? found.find((r) => r.family === 6);
  const host = pick && canonicalIp(pick.address);
  if (!host) throw new Error(`Cannot resolve server host "${a.host}": no address`);
  return { host, port: a.port };
}
