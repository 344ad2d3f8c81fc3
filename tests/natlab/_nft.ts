/**
 * nftables rulesets for lab routers. Pure text generation; README.md explains each recipe.
 *
 * Every NAT router translates LAN -> "wan" traffic to its public address. What differs:
 * - the port choice of the source NAT (port-preserving, fully random, or sequential), and
 * - which unsolicited inbound UDP is DNAT'ed to the internal endpoint that owns a mapping.
 * Mappings are learned on egress, after source NAT, into `@pmap` (public port -> internal
 * address . port); `restricted` also learns `@peers` (public port . remote address).
 */
import type { NatType, RouterPlan } from "./_plan.ts";

/** First port and size of the sequential port pool of `symmetric-seq`. */
export const SEQ_PORT_BASE = 20000;
export const SEQ_PORT_COUNT = 1000;

/** Lifetime of learned mappings when the site sets no udpTimeoutSec (the kernel's assured UDP timeout). */
export const DEFAULT_MAPPING_TIMEOUT_SEC = 120;

function snatStatement(nat: NatType, pub: string): string {
  switch (nat) {
    case "symmetric":
      return `snat ip to ${pub} fully-random`;
    case "symmetric-seq": {
      // `numgen inc ... offset N` straight into the port lands in host byte order (nft 1.0.6
      // inserts no byteorder conversion: 20000 becomes 8270); a literal map of typed ports
      // is converted correctly.
      const ports = Array.from({ length: SEQ_PORT_COUNT }, (_, i) => `${i} : ${SEQ_PORT_BASE + i}`);
      return `snat ip to ${pub} : numgen inc mod ${SEQ_PORT_COUNT} map { ${ports.join(", ")} }`;
    }
    default:
      // Linux keeps the source port when the resulting tuple is free: endpoint-independent.
      return `snat ip to ${pub}`;
  }
}

/** The `table ip natlab` ruleset for one router. */
export function routerRuleset(r: RouterPlan): string {
  if (r.nat === "open") {
    // Routed, no translation, no filtering.
    return "table ip natlab {\n}\n";
  }
  const pub = r.publicAddr;
  const t = r.udpTimeoutSec ?? DEFAULT_MAPPING_TIMEOUT_SEC;
  const snat = snatStatement(r.nat, pub);
  const seq = r.nat === "symmetric-seq";
  const lines: string[] = [];
  const out = (s: string) => lines.push(s);
  out("table ip natlab {");
  out(
    `  map pmap { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout ${t}s; }`,
  );
  if (r.nat === "restricted") {
    out(`  set peers { type inet_service . ipv4_addr; flags dynamic,timeout; timeout ${t}s; }`);
  }
  out("  chain pre {");
  out("    type nat hook prerouting priority dstnat; policy accept;");
  if (r.nat === "full-cone") {
    out(`    iifname "wan" udp dport @pmap dnat ip to udp dport map @pmap`);
  } else if (r.nat === "restricted") {
    out(`    iifname "wan" udp dport . ip saddr @peers dnat ip to udp dport map @pmap`);
  }
  if (r.hairpin) {
    out(`    iifname "lan" ip daddr ${pub} udp dport @pmap dnat ip to udp dport map @pmap`);
  }
  out("  }");
  out("  chain post {");
  out("    type nat hook postrouting priority srcnat; policy accept;");
  if (r.hairpin) {
    out(`    iifname "lan" oifname "lan" ct status dnat meta l4proto udp ${snat}`);
  }
  if (seq) out(`    oifname "wan" meta l4proto udp ${snat}`);
  out(`    oifname "wan" ${seq ? `snat ip to ${pub}` : snat}`);
  out("  }");
  out("  chain learn {");
  out("    type filter hook postrouting priority srcnat + 10; policy accept;");
  out(
    `    oifname "wan" ct direction original ct status snat update @pmap { udp sport timeout ${t}s : ct original ip saddr . ct original proto-src }`,
  );
  out(
    `    oifname "wan" ct direction reply ct status dnat update @pmap { udp sport timeout ${t}s : ct reply ip saddr . ct reply proto-src }`,
  );
  if (r.nat === "restricted") {
    out(`    oifname "wan" meta l4proto udp update @peers { udp sport . ip daddr timeout ${t}s }`);
  }
  out("  }");
  out("  chain forward_filter {");
  out("    type filter hook forward priority filter; policy accept;");
  out(`    iifname "wan" ct state established,related accept`);
  out(`    iifname "wan" ct status dnat accept`);
  out(`    iifname "wan" drop`);
  out("  }");
  out("  chain input_filter {");
  out("    type filter hook input priority filter; policy accept;");
  out("    ct state established,related accept");
  out("    meta l4proto icmp accept");
  out(`    iifname "wan" drop`);
  out(`    ip daddr ${pub} drop`);
  out("  }");
  out("}");
  return lines.join("\n") + "\n";
}

/**
 * The `table inet natlab6` ruleset of a router whose site has IPv6: routed, no translation, a
 * stateful firewall as home routers have (RFC 6092): everything from the LAN goes out, and
 * from "wan" only replies to it (conntrack established/related) and the ICMPv6 errors and
 * neighbour discovery IPv6 needs come in; unsolicited inbound IPv6 is dropped silently.
 * IPv4 is left to `table ip natlab`.
 */
export function firewall6Ruleset(): string {
  return [
    "table inet natlab6 {",
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    meta nfproto ipv6 iifname "wan" ct state established,related accept`,
    `    meta nfproto ipv6 iifname "wan" icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept`,
    `    meta nfproto ipv6 iifname "wan" drop`,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    "    meta nfproto ipv6 ct state established,related accept",
    `    meta nfproto ipv6 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept`,
    `    meta nfproto ipv6 iifname "wan" drop`,
    "  }",
    "}",
  ].join("\n") + "\n";
}

/**
 * Replaces the loss table on a router's "wan" link; `pct` 0 removes it. Drops IPv4 only, so
 * ARP keeps working and loss stays a property of the datagrams.
 */
export function lossRuleset(pct: number): string {
  const lines = ["add table netdev natlab_loss", "delete table netdev natlab_loss"];
  if (pct > 0) {
    const n = Math.round(pct);
    const rule = n >= 100
      ? "meta protocol ip drop"
      : `meta protocol ip numgen random mod 100 < ${n} drop`;
    lines.push(
      "table netdev natlab_loss {",
      `  chain drop_in { type filter hook ingress device "wan" priority filter; policy accept; ${rule}; }`,
      `  chain drop_out { type filter hook egress device "wan" priority filter; policy accept; ${rule}; }`,
      "}",
    );
  }
  return lines.join("\n") + "\n";
}
