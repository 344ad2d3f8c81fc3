/** A UDP endpoint. `host` is a dotted IPv4 or an IPv6 literal without brackets. */
export interface Addr {
  host: string;
  port: number;
  /**
   * Reached over a TCP/WebSocket connection, not a UDP endpoint: `host:port` is the
   * connection's remote end, never the same endpoint as UDP's `host:port`.
   */
  tcp?: true;
}

/** "1.2.3.4:5" or "[::1]:5". */
export function formatAddr(a: Addr): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export function sameAddr(a: Addr, b: Addr): boolean {
  return a.port === b.port && a.host === b.host && (a.tcp === true) === (b.tcp === true);
}

/** Map key for an address: formatAddr, with "/tcp" after a TCP/WebSocket one. */
export function addrKey(a: Addr): string {
  return a.tcp ? `${formatAddr(a)}/tcp` : formatAddr(a);
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted IPv4 into 4 bytes, or null. */
export function ipv4Bytes(host: string): Uint8Array | null {
  const m = IPV4.exec(host);
  if (!m) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = Number(m[i + 1]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Parses an IPv6 literal (no zone id) into 16 bytes, or null. */
export function ipv6Bytes(host: string): Uint8Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(host) || !host.includes(":")) return null;
  let head = host;
  let tail4: Uint8Array | null = null;
  const lastColon = host.lastIndexOf(":");
  if (host.slice(lastColon + 1).includes(".")) {
    tail4 = ipv4Bytes(host.slice(lastColon + 1));
    if (!tail4) return null;
    head = host.slice(0, lastColon + 1) + "0:0";
  }
  const parts = head.split("::");
  if (parts.length > 2) return null;
  const left = parts[0] ? parts[0].split(":") : [];
  const right = parts.length === 2 && parts[1] ? parts[1].split(":") : [];
  const missing = 8 - left.length - right.length;
  if (parts.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...left, ...Array(parts.length === 2 ? missing : 0).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i] ?? "";
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

/** Formats 4 or 16 address bytes as text. */
export function ipFromBytes(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/**
 * Parses "HOST:PORT" as typed by a user ("[v6]:port" for IPv6). Hostnames are allowed here;
 * resolution happens at the edge. Returns an error string on failure.
 */
export function parseHostPort(
  text: string,
  defaultPort?: number,
): { ok: true; value: Addr } | { ok: false; reason: string } {
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
    if (!ipv6Bytes(host)) return { ok: false, reason: `"${host}" is not an IPv6 address` };
  } else {
    const i = text.lastIndexOf(":");
    if (i >= 0 && text.indexOf(":") !== i) {
      return { ok: false, reason: "write IPv6 addresses as [ADDR]:PORT" };
    }
    host = i >= 0 ? text.slice(0, i) : text;
    portText = i >= 0 ? text.slice(i + 1) : undefined;
    if (!/^[A-Za-z0-9.-]{1,253}$/.test(host) || host.startsWith("-")) {
      return { ok: false, reason: `"${host}" is not a host name or address` };
    }
    if (/^[\d.]+$/.test(host) && !ipv4Bytes(host)) {
      return { ok: false, reason: `"${host}" is not an IPv4 address` };
    }
    // The OS resolver reads "010" as octal 8: refuse rather than reach a different address.
    if (/^[\d.]+$/.test(host) && /(^|\.)0\d/.test(host)) {
      return { ok: false, reason: `"${host}" is not an IPv4 address (leading zero)` };
    }
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      return { ok: false, reason: `"${portText}" is not a port (1-65535)` };
    }
    port = Number(portText);
  }
  if (port === undefined) return { ok: false, reason: "a port is required (HOST:PORT)" };
  return { ok: true, value: { host, port } };
}
