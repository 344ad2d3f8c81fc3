/** Local (LAN) IPv4 addresses of this host, for LAN-first handshakes. */
import type { Addr } from "../wire/addr.ts";
import { MAX_LOCALS } from "../wire/codec.ts";

function rank(ip: string): number {
  // Private LAN ranges first: they are the ones a neighbour can reach.
  if (/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip)) return 0;
  if (ip.startsWith("127.")) return 2;
  return 1;
}

/** Up to MAX_LOCALS addresses; loopback only if nothing else exists. */
export function localAddrs(port: number): Addr[] {
  let ips: string[] = [];
  try {
    ips = Deno.networkInterfaces()
      .filter((i) => i.family === "IPv4" && !i.address.startsWith("169.254."))
      .map((i) => i.address);
  } catch {
    // No permission or no such API: fall back to loopback only.
  }
  ips = [...new Set(ips)].sort((a, b) => rank(a) - rank(b));
  const nonLoop = ips.filter((ip) => !ip.startsWith("127."));
  const chosen = nonLoop.length > 0 ? nonLoop : ["127.0.0.1"];
  return chosen.slice(0, MAX_LOCALS).map((host) => ({ host, port }));
}
