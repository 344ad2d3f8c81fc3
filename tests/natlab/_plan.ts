/**
 * Pure planning for the NAT lab: validates a {@link LabSpec} and turns it into namespaces,
 * links, addresses and routes. No I/O, so it is unit-testable without root.
 */

/** NAT behaviours a lab router can have (RFC 4787 mapping / filtering terms in README.md). */
export type NatType =
  | "open"
  | "full-cone"
  | "restricted"
  | "port-restricted"
  | "symmetric"
  | "symmetric-seq";

/** Every {@link NatType}, in order from most to least permissive. */
export const NAT_TYPES: readonly NatType[] = [
  "open",
  "full-cone",
  "restricted",
  "port-restricted",
  "symmetric",
  "symmetric-seq",
];

/** One site: a router namespace with a private LAN and `hosts` host namespaces behind it. */
export interface SiteSpec {
  /** `[a-z][a-z0-9]{0,7}`; hosts are named `<name>1`, `<name>2`, ... */
  name: string;
  nat: NatType;
  /** Hosts on the LAN, 0..20; default 1. */
  hosts?: number;
  /** LAN subnet such as "192.168.1.0/24" (prefix /16../27); two sites may share one. */
  subnet?: string;
  /** Translate LAN traffic sent to the router's own public address back into the LAN. */
  hairpin?: boolean;
  /** UDP conntrack timeout (unreplied and assured) and lifetime of learned NAT state. */
  udpTimeoutSec?: number;
  /** Random loss in percent, each direction, on the router's upstream link. */
  lossPct?: number;
  /** One-way delay in ms, each direction, on the router's upstream link (needs tc netem). */
  delayMs?: number;
  /** Name of another site whose LAN is this router's upstream (double NAT). */
  behind?: string;
  /**
   * IPv6 on the LAN, from 2001:db8:N::/64 (N: the site's position, from 1), routed (no NAT)
   * behind a stateful firewall on the router: outbound and replies pass, unsolicited inbound
   * is dropped. `"only"`: the hosts get IPv6 and no IPv4 at all. Top-level sites only.
   */
  ipv6?: boolean | "only";
}

/** A whole lab: the server is always there; `publicHosts` are named pub1, pub2, ... */
export interface LabSpec {
  sites: SiteSpec[];
  /** Hosts with a public address and no NAT, 0..50; default 0. */
  publicHosts?: number;
  /**
   * IPv6 on the internet segment (2001:db8:ffff::/64), the server and the public hosts too.
   * Implied by any site with `ipv6`; default false (every namespace has IPv6 off).
   */
  ipv6?: boolean;
}

/** The public segment ("the internet"); the internet namespace routes between both ranges. */
export const INTERNET = {
  serverNet: "198.51.100.0/24",
  serverGateway: "198.51.100.1",
  serverAddrs: ["198.51.100.2", "198.51.100.3"] as [string, string],
  edgeNet: "203.0.113.0/24",
  edgeGateway: "203.0.113.1",
  /** Default pool for the LANs of open sites (TEST-NET-1, cut into /27 blocks). */
  openPool: "192.0.2.0/24",
} as const;

/**
 * The IPv6 internet, when a lab has one: one /64 from the documentation prefix, routed by the
 * internet namespace; each IPv6 site gets 2001:db8:N::/64 (`site6Net`). Interface ids mirror
 * the IPv4 plan: server ::2 and ::3, routers ::10, ::11, ..., public hosts ::100, ::101, ...
 */
export const INTERNET6 = {
  net: "2001:db8:ffff::/64",
  gateway: "2001:db8:ffff::1",
  serverAddrs: ["2001:db8:ffff::2", "2001:db8:ffff::3"] as [string, string],
} as const;

/** The IPv6 /64 of the site at position `n` (from 1) in the spec: 2001:db8:N::/64, N in hex. */
export const site6Net = (n: number) => `2001:db8:${n.toString(16)}::/64`;
const site6Addr = (n: number, id: number | string) => `2001:db8:${n.toString(16)}::${id}`;

/** A veth pair: `parentIf` in `parentNs` (attached to `bridge`), `childIf` in `childNs`. */
export interface LinkPlan {
  parentNs: string;
  parentIf: string;
  bridge: string;
  childNs: string;
  childIf: string;
}

/** What a router namespace needs besides links and addresses. */
export interface RouterPlan {
  site: string;
  nat: NatType;
  /** Address on the upstream link: public for top-level sites, private behind another site. */
  publicAddr: string;
  lanSubnet: string;
  lanAddr: string;
  hairpin: boolean;
  udpTimeoutSec?: number;
  lossPct: number;
  delayMs: number;
  /** Namespace and interface of the far end of the upstream link (for delay on both ends). */
  upstreamNs: string;
  upstreamIf: string;
  /** The site's IPv6 /64 when it has IPv6 (routed, behind the stateful firewall). */
  lan6?: string;
}

/** One namespace and everything configured inside it. */
export interface NsPlan {
  /** Lab-level name: "internet", "server", "pub1", "a1", "router:a". */
  node: string;
  ns: string;
  role: "internet" | "server" | "host" | "router";
  site?: string;
  /** Bridges created in this namespace (the internet segment, a router's LAN). */
  bridges: { name: string; addrs: string[] }[];
  /** Links this namespace is the parent of (created from here). */
  links: LinkPlan[];
  /**
   * The interface towards the parent, with CIDR addresses and the default gateway (none for
   * an IPv6-only host); `addrs6` and `gateway6` when the namespace has IPv6 (an `addrs6` entry
   * may carry `ip addr` options after the CIDR, e.g. "preferred_lft 0").
   */
  uplink?: {
    ifname: string;
    addrs: string[];
    gateway?: string;
    addrs6?: string[];
    gateway6?: string;
  };
  routes: { dst: string; via: string }[];
  sysctls: [string, string][];
  router?: RouterPlan;
}

export interface Plan {
  prefix: string;
  /** Parents before children, so links can be created in order. */
  namespaces: NsPlan[];
  /** `addrs6` when the lab has IPv6. */
  server: { ns: string; addrs: [string, string]; addrs6?: [string, string] };
  /** `addr` is "" for an IPv6-only host; `addr6` when the host has IPv6. */
  hosts: Record<string, { ns: string; addr: string; addr6?: string; site?: string }>;
  /** `publicAddr6`: the router's IPv6 address on the internet, when its site has IPv6. */
  routers: Record<string, { ns: string; publicAddr: string; publicAddr6?: string }>;
}

/** Namespace prefixes look like `nl<pid><3 letters>`; pid 0 marks a detached (kept) lab. */
export const PREFIX_RE = /^nl(\d+)([a-z]{3})$/;

/** Namespace name of a lab node. */
export function nsName(prefix: string, node: string): string {
  if (node === "internet") return `${prefix}-inet`;
  if (node === "server") return `${prefix}-srv`;
  if (node.startsWith("router:")) return `${prefix}-r-${node.slice("router:".length)}`;
  return `${prefix}-${node}`;
}

/** Splits a lab namespace name into prefix and node, or returns undefined. */
export function parseNsName(ns: string): { prefix: string; node: string } | undefined {
  const dash = ns.indexOf("-");
  if (dash < 0) return undefined;
  const prefix = ns.slice(0, dash);
  if (!PREFIX_RE.test(prefix)) return undefined;
  const rest = ns.slice(dash + 1);
  if (rest === "inet") return { prefix, node: "internet" };
  if (rest === "srv") return { prefix, node: "server" };
  if (rest.startsWith("r-")) return { prefix, node: `router:${rest.slice(2)}` };
  return { prefix, node: rest };
}

export function ipToInt(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4) throw new Error(`Cannot parse address "${ip}": not dotted IPv4`);
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255) {
      throw new Error(`Cannot parse address "${ip}": bad octet "${p}"`);
    }
    n = n * 256 + v;
  }
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export interface Cidr {
  base: number;
  len: number;
  size: number;
}

export function parseCidr(text: string): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
  if (!m) throw new Error(`Cannot parse subnet "${text}": expected a.b.c.d/len`);
  const base = ipToInt(m[1]!);
  const len = Number(m[2]);
  if (len > 32) throw new Error(`Cannot parse subnet "${text}": prefix length over 32`);
  const size = 2 ** (32 - len);
  if (base % size !== 0) {
    throw new Error(
      `Cannot parse subnet "${text}": host bits set (use ${intToIp(base - base % size)}/${len})`,
    );
  }
  return { base, len, size };
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}

const NAME_RE = /^[a-z][a-z0-9]{0,7}$/;
const MAX_HOSTS = 20;
const MAX_NESTED = 8;
const HOST_OFFSET = 10;
const NESTED_OFFSET = 2;

function fail(reason: string): never {
  throw new Error(`Cannot plan NAT lab: ${reason}`);
}

function checkNumber(site: string, field: string, v: number | undefined, min: number, max: number) {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v < min || v > max) {
    fail(`site "${site}": ${field} must be between ${min} and ${max}, got ${v}`);
  }
}

/**
 * Validates `spec` and computes the full lab layout for namespace prefix `prefix`.
 * Throws `Cannot plan NAT lab: ...` on an invalid spec.
 *
 * @example
 * const plan = planLab({ sites: [{ name: "a", nat: "symmetric" }] }, "nl42abc");
 * plan.hosts.a1; // { ns: "nl42abc-a1", addr: "10.0.1.10", site: "a" }
 */
export function planLab(spec: LabSpec, prefix: string): Plan {
  if (!PREFIX_RE.test(prefix)) fail(`prefix "${prefix}" does not match ${PREFIX_RE}`);
  if (!Array.isArray(spec.sites)) fail("spec.sites must be an array");
  const publicHosts = spec.publicHosts ?? 0;
  if (!Number.isInteger(publicHosts) || publicHosts < 0 || publicHosts > 50) {
    fail(`publicHosts must be an integer 0..50, got ${publicHosts}`);
  }
  const byName = new Map<string, SiteSpec>();
  for (const s of spec.sites) {
    if (typeof s.name !== "string" || !NAME_RE.test(s.name)) {
      fail(`site name "${s.name}" must match ${NAME_RE}`);
    }
    if (byName.has(s.name)) fail(`site name "${s.name}" is used twice`);
    if (!NAT_TYPES.includes(s.nat)) {
      fail(`site "${s.name}": nat "${s.nat}" is not one of ${NAT_TYPES.join(", ")}`);
    }
    const hosts = s.hosts ?? 1;
    if (!Number.isInteger(hosts) || hosts < 0 || hosts > MAX_HOSTS) {
      fail(`site "${s.name}": hosts must be an integer 0..${MAX_HOSTS}, got ${hosts}`);
    }
    checkNumber(s.name, "lossPct", s.lossPct, 0, 100);
    checkNumber(s.name, "delayMs", s.delayMs, 0, 10_000);
    checkNumber(s.name, "udpTimeoutSec", s.udpTimeoutSec, 1, 86_400);
    if (s.udpTimeoutSec !== undefined && !Number.isInteger(s.udpTimeoutSec)) {
      fail(`site "${s.name}": udpTimeoutSec must be a whole number of seconds`);
    }
    if (s.ipv6 !== undefined && s.ipv6 !== true && s.ipv6 !== false && s.ipv6 !== "only") {
      fail(`site "${s.name}": ipv6 must be true, false or "only", got ${JSON.stringify(s.ipv6)}`);
    }
    if (s.ipv6 && s.behind !== undefined) {
      fail(`site "${s.name}": ipv6 is for top-level sites only, not behind "${s.behind}"`);
    }
    byName.set(s.name, s);
  }
  if (spec.sites.length > 80) fail(`at most 80 sites, got ${spec.sites.length}`);

  // Parents before children; reject unknown parents and cycles.
  const ordered: SiteSpec[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (s: SiteSpec, path: string[]) => {
    const st = state.get(s.name);
    if (st === "done") return;
    if (st === "visiting") {
      fail(`sites are behind each other in a loop: ${[...path, s.name].join(" -> ")}`);
    }
    state.set(s.name, "visiting");
    if (s.behind !== undefined) {
      const parent = byName.get(s.behind);
      if (!parent) fail(`site "${s.name}" is behind unknown site "${s.behind}"`);
      if (parent === s) fail(`site "${s.name}" cannot be behind itself`);
      visit(parent, [...path, s.name]);
    }
    state.set(s.name, "done");
    ordered.push(s);
  };
  for (const s of spec.sites) visit(s, []);

  // Subnets.
  const subnets = new Map<string, Cidr>();
  let openIndex = 0;
  spec.sites.forEach((s, i) => {
    let text = s.subnet;
    if (text === undefined) {
      if (s.nat === "open") {
        if (openIndex >= 8) fail("at most 8 open sites can use the default 192.0.2.0/24 pool");
        text = `192.0.2.${32 * openIndex++}/27`;
      } else {
        if (i + 1 > 255) fail("too many sites for default 10.0.N.0/24 subnets");
        text = `10.0.${i + 1}.0/24`;
      }
    }
    let c: Cidr;
    try {
      c = parseCidr(text);
    } catch (e) {
      fail(`site "${s.name}": ${(e as Error).message}`);
    }
    if (c.len < 16 || c.len > 27) fail(`site "${s.name}": subnet ${text} must be /16../27`);
    const needed = HOST_OFFSET + (s.hosts ?? 1) + 1;
    if (needed > c.size - 1) fail(`site "${s.name}": subnet ${text} is too small for its hosts`);
    for (const pub of [INTERNET.serverNet, INTERNET.edgeNet]) {
      if (overlaps(c, parseCidr(pub))) fail(`site "${s.name}": subnet ${text} overlaps ${pub}`);
    }
    subnets.set(s.name, c);
  });
  // Open subnets are routed upstream, so nothing else may overlap them; a site must also
  // differ from every site it is (transitively) behind.
  for (const s of spec.sites) {
    const c = subnets.get(s.name)!;
    for (const o of spec.sites) {
      if (o === s) continue;
      const oc = subnets.get(o.name)!;
      if (!overlaps(c, oc)) continue;
      if (s.nat === "open" || o.nat === "open") {
        fail(`sites "${s.name}" and "${o.name}": an open site's subnet must not overlap another`);
      }
    }
    for (let p = s.behind; p !== undefined; p = byName.get(p)!.behind) {
      if (overlaps(c, subnets.get(p)!)) {
        fail(`site "${s.name}": subnet overlaps the LAN of site "${p}" it is behind`);
      }
    }
  }

  const namespaces: NsPlan[] = [];
  const byNode = new Map<string, NsPlan>();
  const add = (p: NsPlan) => {
    if (byNode.has(p.node)) fail(`two lab nodes are both called "${p.node}"`);
    byNode.set(p.node, p);
    namespaces.push(p);
  };
  const hosts: Plan["hosts"] = {};
  const routers: Plan["routers"] = {};
  const commonSysctls: [string, string][] = [
    ["net.ipv6.conf.all.disable_ipv6", "1"],
    ["net.ipv6.conf.default.disable_ipv6", "1"],
  ];
  const routerSysctls: [string, string][] = [
    ...commonSysctls,
    ["net.ipv4.ip_forward", "1"],
    ["net.ipv4.conf.all.send_redirects", "0"],
    ["net.ipv4.conf.default.send_redirects", "0"],
    ["net.bridge.bridge-nf-call-iptables", "0"],
  ];
  // IPv6 where asked for: on, and no duplicate address detection, so addresses work at once.
  const lab6 = spec.ipv6 === true || spec.sites.some((s) => s.ipv6);
  const v6Sysctls = (base: [string, string][], forward: boolean): [string, string][] => [
    ...base.filter(([k]) => !k.includes("disable_ipv6")),
    ["net.ipv6.conf.all.disable_ipv6", "0"],
    ["net.ipv6.conf.default.disable_ipv6", "0"],
    ["net.ipv6.conf.all.accept_dad", "0"],
    ["net.ipv6.conf.default.accept_dad", "0"],
    ["net.ipv6.conf.all.accept_ra", "0"],
    ["net.ipv6.conf.default.accept_ra", "0"],
    ...(forward
      ? [["net.ipv6.conf.all.forwarding", "1"], ["net.bridge.bridge-nf-call-ip6tables", "0"]] as [
        string,
        string,
      ][]
      : []),
  ];
  const hostSysctls6 = lab6 ? v6Sysctls(commonSysctls, false) : commonSysctls;

  const inet: NsPlan = {
    node: "internet",
    ns: nsName(prefix, "internet"),
    role: "internet",
    bridges: [{
      name: "br0",
      addrs: [
        `${INTERNET.serverGateway}/24`,
        `${INTERNET.edgeGateway}/24`,
        ...(lab6 ? [`${INTERNET6.gateway}/64`] : []),
      ],
    }],
    links: [],
    routes: [],
    sysctls: lab6 ? v6Sysctls(routerSysctls, true) : routerSysctls,
  };
  add(inet);
  const up6 = (addr: string) =>
    lab6 ? { addrs6: [`${addr}/64`], gateway6: INTERNET6.gateway as string } : {};

  const server: NsPlan = {
    node: "server",
    ns: nsName(prefix, "server"),
    role: "server",
    bridges: [],
    links: [],
    uplink: {
      ifname: "eth0",
      addrs: INTERNET.serverAddrs.map((a) => `${a}/24`),
      gateway: INTERNET.serverGateway,
      // The second address is deprecated (preferred_lft 0): still reachable, never picked as
      // a source. Otherwise a socket on "::" may answer a request to ::2 from ::3, and a
      // stateful firewall drops that answer as unsolicited (seen: STUN never came back).
      ...(lab6
        ? {
          addrs6: [
            `${INTERNET6.serverAddrs[0]}/64`,
            `${INTERNET6.serverAddrs[1]}/64 preferred_lft 0`,
          ],
          gateway6: INTERNET6.gateway,
        }
        : {}),
    },
    routes: [],
    sysctls: hostSysctls6,
  };
  inet.links.push({
    parentNs: inet.ns,
    parentIf: "srv",
    bridge: "br0",
    childNs: server.ns,
    childIf: "eth0",
  });
  add(server);

  const edge = parseCidr(INTERNET.edgeNet);
  for (let i = 1; i <= publicHosts; i++) {
    const node = `pub${i}`;
    const addr = intToIp(edge.base + 99 + i);
    const addr6 = `2001:db8:ffff::${99 + i}`;
    const p: NsPlan = {
      node,
      ns: nsName(prefix, node),
      role: "host",
      bridges: [],
      links: [],
      uplink: {
        ifname: "eth0",
        addrs: [`${addr}/24`],
        gateway: INTERNET.edgeGateway,
        ...up6(addr6),
      },
      routes: [],
      sysctls: hostSysctls6,
    };
    inet.links.push({
      parentNs: inet.ns,
      parentIf: `p${i}`,
      bridge: "br0",
      childNs: p.ns,
      childIf: "eth0",
    });
    hosts[node] = lab6 ? { ns: p.ns, addr, addr6 } : { ns: p.ns, addr };
    add(p);
  }

  let topIndex = 0;
  const nestedCount = new Map<string, number>();
  const position = new Map(spec.sites.map((s, i) => [s.name, i + 1]));
  for (const s of ordered) {
    const n6 = position.get(s.name)!;
    const v6 = s.ipv6 === true || s.ipv6 === "only";
    const c = subnets.get(s.name)!;
    const node = `router:${s.name}`;
    const ns = nsName(prefix, node);
    const lanAddr = intToIp(c.base + 1);
    let upstream: NsPlan;
    let upstreamIf: string;
    let wanAddr: string;
    let wanLen: number;
    let gateway: string;
    if (s.behind === undefined) {
      upstream = inet;
      topIndex++;
      upstreamIf = `r${topIndex}`;
      wanAddr = intToIp(edge.base + 9 + topIndex);
      wanLen = edge.len;
      gateway = INTERNET.edgeGateway;
    } else {
      upstream = byNode.get(`router:${s.behind}`)!;
      const pc = subnets.get(s.behind)!;
      const j = (nestedCount.get(s.behind) ?? 0) + 1;
      if (j > MAX_NESTED) fail(`at most ${MAX_NESTED} sites can be behind site "${s.behind}"`);
      nestedCount.set(s.behind, j);
      upstreamIf = `n${j}`;
      wanAddr = intToIp(pc.base + NESTED_OFFSET + j - 1);
      wanLen = pc.len;
      gateway = intToIp(pc.base + 1);
    }
    upstream.links.push({
      parentNs: upstream.ns,
      parentIf: upstreamIf,
      bridge: upstream.role === "internet" ? "br0" : "lan",
      childNs: ns,
      childIf: "wan",
    });
    const wan6 = `2001:db8:ffff::${9 + topIndex}`;
    const r: NsPlan = {
      node,
      ns,
      role: "router",
      site: s.name,
      bridges: [{
        name: "lan",
        addrs: [`${lanAddr}/${c.len}`, ...(v6 ? [`${site6Addr(n6, 1)}/64`] : [])],
      }],
      links: [],
      uplink: {
        ifname: "wan",
        addrs: [`${wanAddr}/${wanLen}`],
        gateway,
        ...(v6 ? up6(wan6) : {}),
      },
      routes: [],
      sysctls: [
        ...(v6 ? v6Sysctls(routerSysctls, true) : routerSysctls),
        ...(s.udpTimeoutSec === undefined ? [] : [
          ["net.netfilter.nf_conntrack_udp_timeout", String(s.udpTimeoutSec)] as [string, string],
          ["net.netfilter.nf_conntrack_udp_timeout_stream", String(s.udpTimeoutSec)] as [
            string,
            string,
          ],
        ]),
      ],
      router: {
        site: s.name,
        nat: s.nat,
        publicAddr: wanAddr,
        lanSubnet: `${intToIp(c.base)}/${c.len}`,
        lanAddr,
        hairpin: s.hairpin ?? false,
        udpTimeoutSec: s.udpTimeoutSec,
        lossPct: s.lossPct ?? 0,
        delayMs: s.delayMs ?? 0,
        upstreamNs: upstream.ns,
        upstreamIf,
        ...(v6 ? { lan6: site6Net(n6) } : {}),
      },
    };
    add(r);
    routers[s.name] = v6
      ? { ns, publicAddr: wanAddr, publicAddr6: wan6 }
      : { ns, publicAddr: wanAddr };
    // The site's IPv6 is routed, not translated: the internet routes its /64 to the router.
    if (v6) inet.routes.push({ dst: site6Net(n6), via: wan6 });

    // An open site's LAN is routed, not translated: every open hop upstream needs a route,
    // up to and including the first NAT router (or the internet).
    if (s.nat === "open") {
      let via = wanAddr;
      let up: NsPlan | undefined = upstream;
      while (up) {
        up.routes.push({ dst: r.router!.lanSubnet, via });
        if (up.role !== "router" || up.router!.nat !== "open") break;
        via = up.router!.publicAddr;
        const parentSite: string | undefined = byName.get(up.site!)!.behind;
        up = parentSite === undefined ? inet : byNode.get(`router:${parentSite}`);
      }
    }

    for (let k = 1; k <= (s.hosts ?? 1); k++) {
      const hnode = `${s.name}${k}`;
      const only6 = s.ipv6 === "only";
      const addr = only6 ? "" : intToIp(c.base + HOST_OFFSET + k - 1);
      const addr6 = site6Addr(n6, HOST_OFFSET + k - 1);
      const h: NsPlan = {
        node: hnode,
        ns: nsName(prefix, hnode),
        role: "host",
        site: s.name,
        bridges: [],
        links: [],
        uplink: {
          ifname: "eth0",
          addrs: only6 ? [] : [`${addr}/${c.len}`],
          ...(only6 ? {} : { gateway: lanAddr }),
          ...(v6 ? { addrs6: [`${addr6}/64`], gateway6: site6Addr(n6, 1) } : {}),
        },
        routes: [],
        sysctls: v6 ? v6Sysctls(commonSysctls, false) : commonSysctls,
      };
      r.links.push({
        parentNs: ns,
        parentIf: `h${k}`,
        bridge: "lan",
        childNs: h.ns,
        childIf: "eth0",
      });
      hosts[hnode] = v6
        ? { ns: h.ns, addr, addr6, site: s.name }
        : { ns: h.ns, addr, site: s.name };
      add(h);
    }
  }

  return {
    prefix,
    namespaces,
    server: {
      ns: server.ns,
      addrs: [...INTERNET.serverAddrs] as [string, string],
      ...(lab6 ? { addrs6: [...INTERNET6.serverAddrs] as [string, string] } : {}),
    },
    hosts,
    routers,
  };
}
