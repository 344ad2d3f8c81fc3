/**
 * Two home networks and a public node, for traversal tests with a port-mapping router: _upnp.ts's
 * lab (miniupnpd router, here with a symmetric masquerade) plus a second site behind the lab's
 * `symmetric` NAT. Both routers reach the public node, which routes between their WANs:
 *
 * ```
 *  a (<p>-in) 192.168.77.10 ── gw (<p>-gw): miniupnpd, masquerade fully-random, wan 100.63.0.1
 *                                              │
 *  pub (<p>-out) 100.63.0.2 (the server), 100.63.1.2; forwards between 100.63.0.0/24 and .1.0/24
 *                                              │
 *  b (<p>-b) 192.168.78.10 ── gwb (<p>-gwb): `snat ... fully-random` (_nft.ts), wan 100.63.1.1
 * ```
 *
 * The WANs stay in 100.63.0.0/16, below RFC 6598's 100.64.0.0/10, because miniupnpd refuses
 * reserved WAN addresses; they exist only on veth links between these namespaces. All names use
 * lab.ts's prefix form, so `lab.ts down` also removes a crashed run's.
 */
import { type GatewayLab, upGatewayLab } from "./_upnp.ts";
import { routerRuleset } from "./_nft.ts";
import { must, run } from "./_sh.ts";

export const SITE_B = {
  /** The link between the public node and gwb. */
  wanSubnet: "100.63.1.0/24",
  /** gwb's WAN address: the public address site B's host gets (with random ports). */
  router: "100.63.1.1",
  /** The public node's address on gwb's link. */
  upstream: "100.63.1.2",
  lanSubnet: "192.168.78.0/24",
  gateway: "192.168.78.1",
  host: "192.168.78.10",
  prefix: 24,
} as const;

/** The p2pchat server's address (the public node on site A's WAN link). */
export const SERVER_HOST = "100.63.0.2";

export type SiteNode = "a" | "gw" | "pub" | "gwb" | "b";

export interface TwoSites {
  prefix: string;
  /** Site A's router lab: `in` is host a, `gw` the miniupnpd router, `out` the public node. */
  gateway: GatewayLab;
  ns: Record<SiteNode, string>;
  /** Prefix that runs a command in `node` (for the harness). */
  wrap(node: SiteNode): string[];
  /** Kills every process and deletes every namespace. Idempotent. */
  down(): Promise<void>;
}

async function killIn(ns: string): Promise<void> {
  const pids = await run("ip", ["netns", "pids", ns]);
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

/** Builds both sites; on any failure deletes what it made, then throws. */
export async function upTwoSites(): Promise<TwoSites> {
  const gateway = await upGatewayLab({ randomPorts: true });
  const p = gateway.prefix;
  const ns: Record<SiteNode, string> = {
    a: gateway.ns.in,
    gw: gateway.ns.gw,
    pub: gateway.ns.out,
    gwb: `${p}-gwb`,
    b: `${p}-b`,
  };
  const extra = [ns.gwb, ns.b];
  let downed: Promise<void> | undefined;
  const down = () =>
    downed ??= (async () => {
      for (const n of extra) await killIn(n);
      await run("ip", ["-force", "-batch", "-"], extra.map((n) => `netns del ${n}\n`).join(""));
      await gateway.down();
    })();
  const ip = (node: SiteNode, what: string, batch: string[]) =>
    must(what, "ip", ["-n", ns[node], "-batch", "-"], batch.join("\n") + "\n");
  const sysctl = (node: SiteNode, settings: string[]) =>
    must(`set sysctls in ${node}`, "ip", [
      "netns",
      "exec",
      ns[node],
      "sysctl",
      "-q",
      "-w",
      ...settings,
    ]);
  try {
    await must(
      "create site B",
      "ip",
      ["-batch", "-"],
      extra.map((n) => `netns add ${n}\n`).join(""),
    );
    for (const n of extra) {
      await must(`bring up lo in ${n}`, "ip", ["-n", n, "link", "set", "lo", "up"]);
    }
    await sysctl("pub", ["net.ipv4.ip_forward=1"]);
    await sysctl("gwb", ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1"]);
    await ip("pub", "link the public node to site B's router", [
      `link add wanb type veth peer name wan netns ${ns.gwb}`,
      `addr add ${SITE_B.upstream}/${SITE_B.prefix} dev wanb`,
      "link set wanb up",
      // The server answers from 0.0.0.0: site B must see replies from the address it sent to.
      `route replace ${SITE_B.wanSubnet} dev wanb src ${SERVER_HOST}`,
    ]);
    await ip("gwb", "set up site B's router", [
      `link add lan type veth peer name eth0 netns ${ns.b}`,
      `addr add ${SITE_B.router}/${SITE_B.prefix} dev wan`,
      `addr add ${SITE_B.gateway}/${SITE_B.prefix} dev lan`,
      "link set wan up",
      "link set lan up",
      `route add default via ${SITE_B.upstream}`,
    ]);
    await ip("b", "address site B's host", [
      `addr add ${SITE_B.host}/${SITE_B.prefix} dev eth0`,
      "link set eth0 up",
      `route add default via ${SITE_B.gateway}`,
    ]);
    // Site A's router knows only its own links; the way to site B's WAN is via the public node.
    await ip("gw", "route site A's router to site B", [
      `route add ${SITE_B.wanSubnet} via ${SERVER_HOST}`,
    ]);
    const ruleset = routerRuleset({
      site: "b",
      nat: "symmetric",
      publicAddr: SITE_B.router,
      lanSubnet: SITE_B.lanSubnet,
      lanAddr: SITE_B.gateway,
      hairpin: false,
      lossPct: 0,
      delayMs: 0,
      upstreamNs: ns.pub,
      upstreamIf: "wanb",
    });
    await must("load site B's NAT", "ip", ["netns", "exec", ns.gwb, "nft", "-f", "-"], ruleset);
  } catch (e) {
    await down();
    throw e;
  }
  return {
    prefix: p,
    gateway,
    ns,
    wrap: (node) => ["ip", "netns", "exec", ns[node]],
    down,
  };
}
