/**
 * SSDP (UPnP Device Architecture 1.1 §1.3) search codec: the M-SEARCH a control point sends to
 * find Internet gateway devices, and the unicast HTTP-over-UDP answers. Pure, no I/O.
 */
import type { Result } from "../wire/result.ts";

export const SSDP_ADDR = "239.255.255.250";
export const SSDP_PORT = 1900;
/** Search targets: every IGD:2 device also answers IGD:1 searches, but not all do it well. */
export const IGD_SEARCH_TARGETS = [
  "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
  "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
] as const;
/** An SSDP datagram larger than this is not an answer we want. */
export const MAX_SSDP_SIZE = 4096;

/** One M-SEARCH; `mx` (seconds, 1..5) is how long a device may wait before it answers. */
export function encodeSearch(st: string, mx = 1): Uint8Array {
  return new TextEncoder().encode(
    "M-SEARCH * HTTP/1.1\r\n" +
      `HOST: ${SSDP_ADDR}:${SSDP_PORT}\r\n` +
      'MAN: "ssdp:discover"\r\n' +
      `MX: ${mx}\r\n` +
      `ST: ${st}\r\n` +
      "\r\n",
  );
}

export interface SearchAnswer {
  /** The device description URL (http only). */
  location: URL;
  st: string;
  usn: string;
}

/**
 * Decodes an M-SEARCH answer; never throws. It must be `HTTP/1.x 200`, name an IGD or WAN
 * connection service in ST, and carry an http LOCATION whose host is the IPv4 address the answer
 * came from (`from`): a device on the LAN cannot point us at some other host.
 */
export function decodeSearchAnswer(bytes: Uint8Array, from: string): Result<SearchAnswer> {
  if (bytes.length > MAX_SSDP_SIZE) return { ok: false, reason: "too-long" };
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  const lines = text.split(/\r?\n/);
  if (!/^HTTP\/1\.[01] 200\b/i.test(lines[0] ?? "")) return { ok: false, reason: "not-200" };
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  const st = headers.get("st") ?? "";
  if (
    !/^urn:schemas-upnp-org:(device:InternetGatewayDevice|service:WAN(IP|PPP)Connection):\d+$/.test(
      st,
    )
  ) {
    return { ok: false, reason: "not-igd" };
  }
  const loc = headers.get("location") ?? "";
  if (!URL.canParse(loc)) return { ok: false, reason: "bad-location" };
  const location = new URL(loc);
  if (location.protocol !== "http:") return { ok: false, reason: "bad-location" };
  if (location.hostname !== from) return { ok: false, reason: "foreign-location" };
  return { ok: true, value: { location, st, usn: headers.get("usn") ?? "" } };
}
