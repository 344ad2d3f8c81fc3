/**
 * Where the gateway is, and which of our addresses it sees: the default route's gateway from
 * Linux's /proc/net/route, and the local interface address on the gateway's subnet. Pure.
 */
import { ipv4Bytes } from "../wire/addr.ts";

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

/** An IPv4 address in /proc/net/route's form: 8 hex digits, host (little-endian) byte order. */
function procAddr(hex: string): string | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  const n = parseInt(hex, 16);
  return `${n & 0xff}.${(n >>> 8) & 0xff}.${(n >>> 16) & 0xff}.${(n >>> 24) & 0xff}`;
}

/**
 * The default IPv4 gateway in /proc/net/route's text (lowest metric wins), or null when there is
 * none. Tolerates junk lines; never throws.
 *
 * @example
 * defaultGateway("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n" +
 *   "eth0\t00000000\t014DA8C0\t0003\t0\t0\t0\t00000000\n"); // { iface: "eth0", gateway: "192.168.77.1" }
 */
export function defaultGateway(procNetRoute: string): { iface: string; gateway: string } | null {
  let best: { iface: string; gateway: string; metric: number } | null = null;
  for (const line of procNetRoute.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dest, gw, flagsHex, , , metricText, mask] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (dest !== "00000000" || mask !== "00000000") continue;
    const flags = parseInt(flagsHex, 16);
    if (!(flags & RTF_UP) || !(flags & RTF_GATEWAY)) continue;
    const gateway = procAddr(gw);
    const metric = Number(metricText);
    if (!gateway || gateway === "0.0.0.0" || !Number.isFinite(metric)) continue;
    if (!best || metric < best.metric) best = { iface, gateway, metric };
  }
  return best && { iface: best.iface, gateway: best.gateway };
}

/** What {@link localAddressFor} needs of `Deno.networkInterfaces()`. */
export interface Iface {
  family: "IPv4" | "IPv6";
  address: string;
  netmask: string;
}

function u32(host: string): number | null {
  const b = ipv4Bytes(host);
  return b ? ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 : null;
}

/**
 * Our IPv4 address on the subnet that holds `gateway`, or null when no interface does. This is
 * the address the gateway sees our requests come from, which PCP and UPnP must name.
 */
export function localAddressFor(gateway: string, ifaces: Iface[]): string | null {
  const g = u32(gateway);
  if (g === null) return null;
  for (const i of ifaces) {
    if (i.family !== "IPv4") continue;
    const a = u32(i.address);
    const m = u32(i.netmask);
    if (a === null || m === null || m === 0 || a === g) continue;
    if (((a & m) >>> 0) === ((g & m) >>> 0)) return i.address;
  }
  return null;
}

/**
 * Ranges an external address must not be in to be worth announcing: this network, private
 * (RFC 1918), shared/CGNAT (RFC 6598), loopback, link-local, multicast and reserved. A gateway
 * reporting one of these sits behind another NAT, so its mapping is unreachable from outside.
 * Documentation ranges are allowed: labs use them as public addresses.
 */
const NOT_PUBLIC: [number, number][] = [
  [0x00000000, 8],
  [0x0a000000, 8],
  [0x64400000, 10],
  [0x7f000000, 8],
  [0xa9fe0000, 16],
  [0xac100000, 12],
  [0xc0a80000, 16],
  [0xe0000000, 3],
];

/** Whether an address can stand as a mapped external address others can reach. */
export function usableExternal(host: string): boolean {
  const v = u32(host);
  if (v === null) return false;
  return !NOT_PUBLIC.some(([net, bits]) => (v >>> (32 - bits)) === (net >>> (32 - bits)));
}

/** At most this many guessed gateways are probed. */
export const MAX_GUESSES = 3;

/**
 * Likely gateways when the route table cannot be read (Deno refuses /proc reads without
 * --allow-all): the first host address (`.1` on a /24) of each non-loopback, non-link-local
 * IPv4 interface's subnet, as home routers are numbered. Our own address is never a guess.
 *
 * @example
 * guessGateways([{ family: "IPv4", address: "192.168.77.10", netmask: "255.255.255.0" }]);
 * // ["192.168.77.1"]
 */
export function guessGateways(ifaces: Iface[]): string[] {
  const out: string[] = [];
  for (const i of ifaces) {
    if (i.family !== "IPv4") continue;
    const a = u32(i.address);
    const m = u32(i.netmask);
    if (a === null || m === null) continue;
    if (a >>> 24 === 127 || (a >>> 16) === 0xa9fe) continue; // loopback, link-local
    // /31 and /32 links have no "first host"; shorter than /8 is not a LAN.
    if ((m >>> 0) > 0xfffffffc || (m >>> 24) !== 0xff) continue;
    const g = (((a & m) >>> 0) + 1) >>> 0;
    if (g === a) continue;
    const text = `${g >>> 24}.${(g >>> 16) & 0xff}.${(g >>> 8) & 0xff}.${g & 0xff}`;
    if (!out.includes(text)) out.push(text);
    if (out.length === MAX_GUESSES) break;
  }
  return out;
}
