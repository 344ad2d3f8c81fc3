/** What a NAT report means for p2pchat, in one plain sentence (no I/O). */
import type { NatReport } from "./discovery.ts";
import type { NatMapping } from "../wire/codec.ts";

/**
 * The one-line verdict `p2pchat nat` prints: who this host gets a direct path with. Based on
 * docs/NAT_MATRIX.md: two-sided punching works unless one side's mapping depends on the
 * destination and the other side filters by port (or both depend on it).
 * @example verdict(report) // "direct with everyone except peers behind symmetric NATs ..."
 */
export function verdict(r: NatReport): string {
  if (!r.udp) return "no answer over UDP: p2pchat cannot reach its server from here";
  if (r.natted === false && r.filtering === "endpoint-independent") {
    return "no NAT and no filtering: direct with everyone";
  }
  switch (r.mapping) {
    case "endpoint-independent":
      if (r.filtering === "endpoint-independent" || r.filtering === "address-dependent") {
        return "direct with everyone: one public port for all peers, and peers you have " +
          "sent to get in";
      }
      if (r.filtering === "address-and-port-dependent") {
        return "direct with everyone except peers behind symmetric NATs (those need port " +
          "prediction or birthday punching, else the relay)";
      }
      return "direct with most peers: one public port for all peers (filtering unknown)";
    case "address-dependent":
    case "address-and-port-dependent":
      if (r.allocation === "sequential") {
        return "symmetric NAT with sequential ports: direct with peers behind no NAT or cone " +
          "NATs (port prediction), relayed with other symmetric NATs";
      }
      return "symmetric NAT: direct with peers behind no NAT, full-cone or restricted NATs; " +
        "port-restricted ones need birthday punching, other symmetric NATs the relay";
    default:
      return "mapping unknown: p2pchat tries direct paths and falls back to the relay";
  }
}

/**
 * The mapping behaviour birthday punching goes by. With a server that has one address but a
 * second port, a public port that stayed the same towards both ports leaves RFC 5780 unable to
 * tell endpoint-independent from address-dependent mapping; the latter is rare (RFC 4787 asks
 * NATs for the former), so we punch as if endpoint-independent. A port that changed is
 * decided (address-and-port-dependent) either way.
 */
export function forPunching(r: NatReport | null): NatMapping {
  if (!r) return "unknown";
  const portStayed = r.mapping === "unknown" && r.natted !== false && r.public !== null &&
    r.server.other === null && r.server.secondPort !== null;
  return portStayed ? "endpoint-independent" : r.mapping;
}
