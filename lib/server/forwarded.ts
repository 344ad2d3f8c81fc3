/**
 * Who a connection through a reverse proxy comes from: the trusted proxies as CIDR ranges, and
 * the client address a trusted proxy reports in `X-Forwarded-For`. Pure: text in, an address
 * out, never throws.
 *
 * The rule is the standard safe one (nginx's `real_ip_recursive on`): read the header's entries
 * from the right, skip those inside a trusted range (proxies of ours), and take the first one
 * that is not. Everything left of it was written by the client or by proxies we do not know,
 * so a client can put anything there and it is never read. Only `X-Forwarded-For` is read:
 * a proxy passes on the headers it does not set itself, so honouring `Forwarded` or
 * `X-Real-IP` as well would let a client behind a proxy that sets only one of them pick its
 * address with another. `X-Forwarded-Port` is the port the proxy was reached on, not the
 * client's, and is never read either.
 *
 * The rule is only as good as the ranges: a host inside a trusted range is believed when it
 * names a client, so the ranges must hold the proxies and nothing else, never clients (a /8
 * that is also the LAN lets every LAN host pick its address). `isWideRange` flags the ones to
 * warn about. The header is read from its end, at most MAX_FORWARDED_HOPS entries, so a huge
 * one (Deno takes heads up to about 400 KB) costs no more than a short one.
 */
import { ipFromBytes } from "../wire/addr.ts";
import type { Result } from "../wire/result.ts";
import { ipBytes } from "./ip.ts";

/** An address range: 4 bytes (IPv4) or 16 (IPv6), host bits zero, and the prefix length. */
export interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

/**
 * Entries of X-Forwarded-For read at most, from the right: a chain of more trusted proxies than
 * this counts as malformed. 32 is far more hops than any deployment has.
 */
export const MAX_FORWARDED_HOPS = 32;

/**
 * Longest entry read (characters, spaces included): `[IPv6]:port` is at most 47 characters;
 * anything far longer is malformed without running a parser over it.
 */
const MAX_ENTRY_CHARS = 128;

/** "10.0.0.0/8", "::1/128". */
export function formatCidr(c: Cidr): string {
  return `${ipFromBytes(c.bytes)}/${c.bits}`;
}

/**
 * Parses one range: `ADDR/BITS` or a bare address (one address: /32 or /128). Host bits are
 * cleared (`10.1.2.3/8` is 10.0.0.0/8); a v4-mapped IPv6 range of /96 or more is the IPv4 one.
 *
 * @example
 * parseCidr("192.0.2.0/24"); // { ok: true, value: { bytes: [192, 0, 2, 0], bits: 24 } }
 */
export function parseCidr(text: string): Result<Cidr> {
  const t = text.trim();
  const slash = t.indexOf("/");
  const host = slash < 0 ? t : t.slice(0, slash);
  const raw = ipBytes(host);
  if (!raw) return { ok: false, reason: `"${t}" is not an IP address or ADDRESS/BITS` };
  // ipBytes turns v4-mapped addresses into IPv4: their prefix counts from bit 96.
  const mapped = raw.length === 4 && host.includes(":");
  const max = mapped ? 128 : raw.length * 8;
  let bits = max;
  if (slash >= 0) {
    const b = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b) || Number(b) > max) {
      return { ok: false, reason: `"${t}": the prefix length must be 0 to ${max}` };
    }
    bits = Number(b);
  }
  if (mapped) {
    if (bits < 96) return { ok: false, reason: `"${t}": a v4-mapped range needs /96 or more` };
    bits -= 96;
  }
  const bytes = raw.slice();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.min(8, Math.max(0, bits - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { ok: true, value: { bytes, bits } };
}

/**
 * Whether trusting `c` is likely to trust more than proxies: wider than a /24 (IPv4) or a /64
 * (IPv6), /0 included. The server warns about such ranges at startup.
 */
export function isWideRange(c: Cidr): boolean {
  return c.bits < (c.bytes.length === 4 ? 24 : 64);
}

/** Parses a comma-separated list of ranges (spaces allowed around each). */
export function parseCidrList(text: string): Result<Cidr[]> {
  const out: Cidr[] = [];
  for (const part of text.split(",")) {
    const c = parseCidr(part);
    if (!c.ok) return c;
    out.push(c.value);
  }
  return { ok: true, value: out };
}

/** Whether `host` (an IP literal; v4-mapped counts as IPv4) lies in one of `ranges`. */
export function inCidrs(host: string, ranges: readonly Cidr[]): boolean {
  const b = ipBytes(host);
  return b !== null && ranges.some((c) => inCidr(b, c));
}

function inCidr(b: Uint8Array, c: Cidr): boolean {
  if (b.length !== c.bytes.length) return false;
  for (let i = 0; i * 8 < c.bits; i++) {
    const keep = Math.min(8, c.bits - i * 8);
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((b[i]! & mask) !== c.bytes[i]) return false;
  }
  return true;
}

/** One `X-Forwarded-For` entry: `IPv4`, `IPv4:port`, `IPv6`, `[IPv6]` or `[IPv6]:port`. */
export function parseForwardedEntry(text: string): { host: string; port: number | null } | null {
  if (text.length > MAX_ENTRY_CHARS) return null;
  const t = text.replace(/^[ \t]+|[ \t]+$/g, "");
  let host = t;
  let port: string | null = null;
  const bracket = /^\[([^\]]*)\](?::(\d+))?$/.exec(t);
  const v4port = /^([\d.]+):(\d+)$/.exec(t);
  if (bracket) [host, port] = [bracket[1]!, bracket[2] ?? null];
  else if (v4port) [host, port] = [v4port[1]!, v4port[2]!];
  if (bracket && !host.includes(":")) return null; // brackets are for IPv6 only
  const b = ipBytes(host);
  if (!b) return null;
  if (port !== null && (port.length > 5 || Number(port) < 1 || Number(port) > 65535)) return null;
  return { host: ipFromBytes(b), port: port === null ? null : Number(port) };
}

/**
 * Where a connection comes from. `peer`: the TCP peer itself (no trusted proxy: headers
 * ignored); `forwarded`: the client a trusted proxy named; `missing`: a trusted proxy sent no
 * X-Forwarded-For; `malformed`: it sent one that cannot be read where it matters (the TCP
 * peer is used).
 */
export interface ClientAddress {
  host: string;
  /** The entry's port if it had one, else the TCP peer's port. */
  port: number;
  source: "peer" | "forwarded" | "missing" | "malformed";
}

/**
 * The client behind a connection from `peer` (returned as given when it is the answer) carrying
 * `xff` (the X-Forwarded-For header, several lines joined with ", "; null if absent).
 * Only a peer inside `trusted` is asked; its header is read right to left, past trusted
 * entries, to the first untrusted one. If every entry is trusted, the left-most is the
 * client (a proxy's own health check, a client on the proxy's host). An unreadable entry on
 * the way (`unknown`, a name, an empty entry), or more than MAX_FORWARDED_HOPS entries without
 * an untrusted one, makes the answer the TCP peer, `malformed`. Only the entries read are
 * split off the header.
 *
 * @example
 * const proxy = parseCidr("127.0.0.1");
 * if (proxy.ok) {
 *   clientAddress({ host: "127.0.0.1", port: 40000 }, "6.6.6.6, 203.0.113.9", [proxy.value]);
 * }
 * // { host: "203.0.113.9", port: 40000, source: "forwarded" }
 */
export function clientAddress(
  peer: { host: string; port: number },
  xff: string | null,
  trusted: readonly Cidr[],
): ClientAddress {
  if (trusted.length === 0 || !inCidrs(peer.host, trusted)) return { ...peer, source: "peer" };
  if (xff === null || xff.trim() === "") return { ...peer, source: "missing" };
  let end = xff.length;
  for (let hop = 0; hop < MAX_FORWARDED_HOPS; hop++) {
    const comma = xff.lastIndexOf(",", end - 1);
    // Where this entry starts; a long one is cut to what parseForwardedEntry reads anyway.
    const from = Math.max(comma + 1, end - MAX_ENTRY_CHARS - 1);
    const e = parseForwardedEntry(xff.slice(from, end));
    if (!e) return { ...peer, source: "malformed" };
    if (comma < 0 || !inCidrs(e.host, trusted)) {
      return { host: e.host, port: e.port ?? peer.port, source: "forwarded" };
    }
    end = comma;
  }
  return { ...peer, source: "malformed" };
}
