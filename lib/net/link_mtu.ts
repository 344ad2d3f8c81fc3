/**
 * The MTU of the link our datagrams to a destination leave on, conservatively: peers send DATA
 * datagrams bigger than 1200 bytes only where that link carries them without IP fragmentation.
 *
 * The rule (linkMtuFor), for a destination address:
 * 1. IPv4, IPv6, or IPv4-mapped IPv6 (`::ffff:1.2.3.4`, taken as IPv4); a `%zone` suffix is
 *    dropped. Anything else → DEFAULT_MTU.
 * 2. Loopback (127.0.0.0/8, ::1), or one of our own interface addresses (datagrams to our own
 *    addresses go over the loopback device on every OS) → the loopback MTU, or 65536 if unknown:
 *    such datagrams never leave the machine, so even where the kernel fragments them (macOS's
 *    lo0 is 16384) nothing can lose or drop a fragment. (Deno reads /sys only with every
 *    permission granted, denoland/deno#27564; with FFI, as the compiled binary has, the kernel
 *    is asked instead; without either the MTU is unknown.)
 * 3. Inside the subnet of one of our non-loopback interface addresses of the same family,
 *    link-local fe80::/10 included → that interface's MTU (DEFAULT_MTU if unknown); the smallest
 *    if several match.
 * 4. Otherwise (through a router) → the smallest of DEFAULT_MTU and the known MTUs of our
 *    non-loopback interfaces of that family with a non-link-local address: the route may leave
 *    on any of them (a VPN or PPPoE link of 1420, say), and we do not read the routing table.
 * 5. Every result is clamped to [576, 65536] (the IPv4 minimum reassembly size; the largest
 *    loopback MTU Linux uses).
 */
import { ipv4Bytes, ipv6Bytes } from "../wire/addr.ts";
import { ioctlMtu } from "./if_mtu.ts";

/**
 * One address of one interface, as Deno.networkInterfaces() lists it, with that interface's MTU
 * (null: unknown).
 */
export interface LinkAddr {
  name: string;
  address: string;
  cidr: string;
  family: "IPv4" | "IPv6";
  mtu: number | null;
}

/** What readLinks reports: every interface address, and the loopback device's MTU. */
export interface Links {
  links: LinkAddr[];
  loopbackMtu: number | null;
}

/** The MTU assumed where nothing better is known: Ethernet's. */
export const DEFAULT_MTU = 1500;
const MIN_MTU = 576;
const MAX_MTU = 65536;
/** How long a read of the interfaces is trusted: links change rarely (VPN up, Wi-Fi switch). */
const DEFAULT_TTL_MS = 30_000;

/** 4 bytes (IPv4, also when v4-mapped) or 16 (IPv6), without any `%zone`; null if not an IP. */
function parseIp(text: string): Uint8Array | null {
  const host = text.split("%")[0]!;
  if (!host.includes(":")) return ipv4Bytes(host);
  const b = ipv6Bytes(host);
  if (!b) return null;
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? b.slice(12) : b;
}

/** Whether the first `bits` bits of a and b agree (both of one length). */
function samePrefix(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  for (let i = 0; i * 8 < bits; i++) {
    const mask = bits - i * 8 >= 8 ? 0xff : (0xff << (8 - (bits - i * 8))) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

const isLoopback = (b: Uint8Array) =>
  b.length === 4 ? b[0] === 127 : b.every((x, i) => x === (i === 15 ? 1 : 0));
const isLinkLocal = (b: Uint8Array) =>
  b.length === 4 ? b[0] === 169 && b[1] === 254 : b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
const known = (mtu: number | null) => mtu !== null && Number.isFinite(mtu) && mtu > 0;
const clamp = (mtu: number) => Math.min(MAX_MTU, Math.max(MIN_MTU, Math.floor(mtu)));

/**
 * The MTU of the link datagrams to `dest` leave on, by the rule in the module comment.
 *
 * @example
 * const links: LinkAddr[] = [
 *   { name: "eth0", address: "10.0.0.2", cidr: "10.0.0.2/24", family: "IPv4", mtu: 9000 },
 * ];
 * linkMtuFor("10.0.0.7", links, 65536); // 9000: same subnet
 * linkMtuFor("198.51.100.1", links, 65536); // 1500: beyond the LAN
 */
export function linkMtuFor(
  dest: string,
  links: readonly LinkAddr[],
  loopbackMtu: number | null,
): number {
  const d = parseIp(dest);
  if (!d) return DEFAULT_MTU;
  const ours = links.flatMap((l) => {
    const ip = parseIp(l.address);
    if (!ip || ip.length !== d.length) return [];
    const bits = Number(l.cidr.split("/")[1]);
    const prefix = Number.isInteger(bits) && bits >= 0 && bits <= ip.length * 8 ? bits : null;
    return [{ ip, prefix, mtu: known(l.mtu) ? l.mtu! : null }];
  });
  if (isLoopback(d) || ours.some((o) => o.ip.every((x, i) => x === d[i]))) {
    return clamp(known(loopbackMtu) ? loopbackMtu! : MAX_MTU);
  }
  const lan = ours.filter((o) => !isLoopback(o.ip));
  const onLink = lan.filter((o) => o.prefix !== null && samePrefix(o.ip, d, o.prefix));
  if (onLink.length > 0) return clamp(Math.min(...onLink.map((o) => o.mtu ?? DEFAULT_MTU)));
  const uplinks = lan.filter((o) => !isLinkLocal(o.ip) && o.mtu !== null).map((o) => o.mtu!);
  return clamp(Math.min(DEFAULT_MTU, ...uplinks));
}

/** Interface names as the kernel allows them, and nothing that could leave /sys/class/net. */
const SAFE_NAME = /^[A-Za-z0-9_.:@-]{1,64}$/;

/**
 * /sys/class/net/<name>/mtu (Linux), or null: not Linux, no permission, no such device. Deno
 * (2.9) reads /sys only with --allow-all, not --allow-read (denoland/deno#27564), so under
 * `deno task join` and the compiled binary this is null (the binary then asks the kernel).
 */
function sysMtu(name: string): number | null {
  if (!SAFE_NAME.test(name) || name.includes("..") || name === ".") return null;
  const path = `/sys/class/net/${name}/mtu`;
  try {
    // Ask first: without the permission, reading would prompt on a terminal.
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return null;
    const text = Deno.readTextFileSync(path).trim();
    return /^\d{1,6}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** An interface's MTU; an IPv4 alias label ("eth0:1") has its device's. */
function deviceMtu(name: string): number | null {
  const colon = name.indexOf(":");
  const device = colon > 0 ? name.slice(0, colon) : name;
  return sysMtu(name) ?? (colon > 0 ? sysMtu(device) : null) ?? ioctlMtu(device);
}

/**
 * I/O: Deno.networkInterfaces() plus /sys/class/net/<name>/mtu, or where that cannot be read
 * the kernel's answer through FFI (lib/net/if_mtu.ts; Linux); mtu null where neither works.
 * Never throws.
 */
export function readLinks(): Links {
  let ifaces: Deno.NetworkInterfaceInfo[] = [];
  try {
    // Ask first, as for files: a prompt in the middle of a chat would be worse than no answer.
    const sys = Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" });
    if (sys.state === "granted") ifaces = Deno.networkInterfaces();
  } catch {
    // No such API or no permission: no links, so every answer is DEFAULT_MTU.
  }
  const mtus = new Map<string, number | null>();
  const mtuOf = (name: string) => {
    if (!mtus.has(name)) mtus.set(name, deviceMtu(name));
    return mtus.get(name)!;
  };
  const links = ifaces.map((i): LinkAddr => ({
    name: i.name,
    address: i.address,
    cidr: i.cidr,
    family: i.family,
    mtu: mtuOf(i.name),
  }));
  const lo = links.find((l) => l.address === "127.0.0.1" || l.address === "::1");
  return { links, loopbackMtu: lo ? lo.mtu : null };
}

/**
 * linkMtuFor over this host's links, for the socket edge: the links are read at the first
 * lookup and again once `ttlMs` has passed (or the clock went back). Never throws: a failed
 * read counts as no links for one ttl (so it is not retried per datagram), giving DEFAULT_MTU.
 *
 * @example
 * const mtuTo = linkMtuLookup();
 * const big = mtuTo("192.168.1.20") >= 9000;
 */
export function linkMtuLookup(
  opts: { ttlMs?: number; read?: () => Links; clock?: () => number } = {},
): (dest: string) => number {
  const { ttlMs = DEFAULT_TTL_MS, read = readLinks, clock = Date.now } = opts;
  let snap: Links | null = null;
  let readAt = 0;
  // Asked for on every send burst: answers per destination, until the links are read again.
  const memo = new Map<string, number>();
  return (dest) => {
    try {
      const now = clock();
      if (snap === null || !(now - readAt < ttlMs) || now < readAt) {
        readAt = now;
        memo.clear();
        try {
          snap = read();
        } catch {
          snap = { links: [], loopbackMtu: null };
        }
      }
      let mtu = memo.get(dest);
      if (mtu === undefined) {
        mtu = linkMtuFor(dest, snap.links, snap.loopbackMtu);
        if (memo.size >= 1024) memo.clear();
        memo.set(dest, mtu);
      }
      return mtu;
    } catch {
      return DEFAULT_MTU;
    }
  };
}
