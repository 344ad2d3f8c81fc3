/** Whether this host can open IPv6 sockets on loopback at all (some containers cannot). */
export function hasIpv6Loopback(): boolean {
  try {
    Deno.listenDatagram({ hostname: "::1", port: 0, transport: "udp" }).close();
    return true;
  } catch {
    return false;
  }
}
