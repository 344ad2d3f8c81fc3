/**
 * This host's own addresses worth announcing to a room (the server passes them on as `locals`):
 * LAN IPv4 for LAN-first handshakes, and global or unique-local IPv6, which a peer with IPv6 can
 * reach directly through stateful firewalls that would need no NAT traversal at all.
 */
import { type Addr, ipv6Bytes } from "../wire/addr.ts";
import { MAX_LOCALS } from "../wire/codec.ts";

/**
 * IPv6 addresses announced, at most. The server passes on at most this many global IPv6 locals
 * per member (lib/server/state.ts), and two cover a host with two prefixes (two uplinks, or an
 * old and a new prefix during renumbering); the remaining MAX_LOCALS - 2 slots stay for IPv4,
 * which is ranked first, so a multi-homed IPv4 host (LAN plus a VPN) keeps its addresses.
 */
export const MAX_LOCALS_V6 = 2;

/** /proc/net/if_inet6 flags (linux/if_addr.h) that make an address a poor one to announce. */
const IFA_F_TEMPORARY = 0x01; // privacy address: changes every day or so, outgoing use only
const IFA_F_DADFAILED = 0x08;
const IFA_F_DEPRECATED = 0x20; // preferred lifetime over: no new connections
const IFA_F_TENTATIVE = 0x40; // duplicate address detection still running: not usable yet
const SKIP_FLAGS = IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE;
const IF_INET6 = "/proc/net/if_inet6";

/** IPv4 ranking, lower first: private LAN ranges (what a neighbour reaches), others, loopback. */
function rank4(ip: string): number {
  if (/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip)) return 0;
  if (ip.startsWith("127.")) return 2;
  return 1;
}

/**
 * IPv6 ranking, lower first: global unicast (2000::/3), then unique local (fc00::/7); null for
 * everything else (link-local needs a zone id a peer cannot use, loopback, multicast, mapped).
 */
function rank6(ip: string): number | null {
  const b = ipv6Bytes(ip);
  if (!b) return null;
  if ((b[0]! & 0xe0) === 0x20) return 0;
  if ((b[0]! & 0xfe) === 0xfc) return 1;
  return null;
}

/**
 * The flags of each IPv6 address from /proc/net/if_inet6 (Linux), keyed by its 32 hex digits;
 * empty where that cannot be read (not Linux, no read permission: then no address is skipped).
 */
function inet6Flags(): Map<string, number> {
  const flags = new Map<string, number>();
  try {
    // Ask first: without the permission, reading would prompt on a terminal.
    if (Deno.permissions.querySync({ name: "read", path: IF_INET6 }).state !== "granted") {
      return flags;
    }
    for (const line of Deno.readTextFileSync(IF_INET6).split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 6 && /^[0-9a-f]{32}$/.test(f[0]!)) flags.set(f[0]!, parseInt(f[4]!, 16));
    }
  } catch {
    // Not there: announce what networkInterfaces lists.
  }
  return flags;
}

const hex32 = (ip: string) =>
  Array.from(ipv6Bytes(ip) ?? [], (x) => x.toString(16).padStart(2, "0")).join("");

/**
 * Picks the addresses to announce from interface entries (as `Deno.networkInterfaces` lists
 * them) and the /proc/net/if_inet6 flags: IPv4 first (private, other, loopback only if there
 * is nothing else at all), then up to MAX_LOCALS_V6 IPv6 (global before unique local), at most
 * MAX_LOCALS in all. IPv4 link-local, IPv6 link-local, and temporary, deprecated, tentative or
 * failed IPv6 addresses are left out.
 */
export function pickLocals(
  ifaces: readonly { family: string; address: string }[],
  port: number,
  flags: ReadonlyMap<string, number> = new Map(),
): Addr[] {
  const v4 = [
    ...new Set(
      ifaces.filter((i) => i.family === "IPv4" && !i.address.startsWith("169.254."))
        .map((i) => i.address),
    ),
  ].sort((a, b) => rank4(a) - rank4(b));
  const v6 = [
    ...new Set(
      ifaces.filter((i) => i.family === "IPv6" && rank6(i.address) !== null)
        .filter((i) => ((flags.get(hex32(i.address)) ?? 0) & SKIP_FLAGS) === 0)
        .map((i) => i.address),
    ),
  ].sort((a, b) => rank6(a)! - rank6(b)!).slice(0, MAX_LOCALS_V6);
  const nonLoop = v4.filter((ip) => !ip.startsWith("127."));
  const chosen4 = nonLoop.length > 0 || v6.length > 0 ? nonLoop : ["127.0.0.1"];
  // IPv4 first, but never crowding IPv6 out of the slots kept for it.
  const room4 = MAX_LOCALS - v6.length;
  return [...chosen4.slice(0, room4), ...v6].map((host) => ({ host, port }));
}

/** Up to MAX_LOCALS addresses of this host (see pickLocals); loopback only if nothing else. */
export function localAddrs(port: number): Addr[] {
  let ifaces: Deno.NetworkInterfaceInfo[] = [];
  try {
    ifaces = Deno.networkInterfaces();
  } catch {
    // No permission or no such API: fall back to loopback only.
  }
  return pickLocals(
    ifaces,
    port,
    ifaces.some((i) => i.family === "IPv6") ? inet6Flags() : new Map(),
  );
}
