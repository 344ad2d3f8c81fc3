/**
 * A small lab for port-mapping tests: one home router that can run miniupnpd (UPnP IGD, NAT-PMP
 * and PCP over nftables) or a fake gateway, a LAN host behind it, a host outside, and a host
 * with no network at all. lab.ts's routers sit on TEST-NET addresses, which miniupnpd refuses as
 * WAN addresses, so this topology gets a public-looking WAN of its own:
 *
 * ```
 *  out (<p>-out) 100.63.0.2/24 ── wan 100.63.0.1/24  gw (<p>-gw)  lan 192.168.77.1/24 ── in (<p>-in) 192.168.77.10/24
 *  bare (<p>-bare): loopback only, no routes
 * ```
 *
 * 100.63.0.0/24 lies just below RFC 6598's 100.64.0.0/10, so miniupnpd takes it for public;
 * it exists only on veth links between these namespaces, which have no link to the host.
 * Namespace names use lab.ts's prefix form, so `lab.ts down` also removes a crashed run's.
 */
import { newPrefix } from "./lab.ts";
import { lines } from "./probe.ts";
import { must, run } from "./_sh.ts";

export const LAN = { gateway: "192.168.77.1", host: "192.168.77.10", prefix: 24 } as const;
export const WAN = { router: "100.63.0.1", outside: "100.63.0.2", prefix: 24 } as const;

/** Programs these tests run, with the Debian package of each. */
export const PORTMAP_TOOLS: Readonly<Record<string, string>> = {
  miniupnpd: "miniupnpd-nftables",
  upnpc: "miniupnpc",
  natpmpc: "natpmpc",
};

export type Node = "in" | "gw" | "out" | "bare";
const NODES: Node[] = ["in", "gw", "out", "bare"];

/**
 * The nftables ruleset miniupnpd fills in: its own chains, masquerade for the LAN. With
 * `randomPorts` the masquerade picks a random port per flow (`fully-random`), so the router is a
 * symmetric NAT except for the ports miniupnpd maps.
 */
function gatewayRuleset(opts: { randomPorts?: boolean } = {}): string {
  return `table inet miniupnpd {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname "wan" masquerade${opts.randomPorts ? " fully-random" : ""}
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`;
}

/** miniupnpd.conf for this lab; `igdV1` makes it describe itself as an IGD v1 device. */
export function miniupnpdConf(opts: { igdV1?: boolean; leaseFile: string }): string {
  return [
    "ext_ifname=wan",
    "listening_ip=lan",
    "http_port=0",
    "enable_upnp=yes",
    // NAT-PMP and PCP share this switch and port 5351.
    "enable_natpmp=yes",
    "secure_mode=yes",
    "system_uptime=yes",
    `force_igd_desc_v1=${opts.igdV1 ? "yes" : "no"}`,
    "uuid=6a1f3b2c-7d4e-4f5a-8b6c-9d0e1f2a3b4c",
    `lease_file=${opts.leaseFile}`,
    "upnp_table_name=miniupnpd",
    "upnp_nat_table_name=miniupnpd",
    "upnp_forward_chain=miniupnpd",
    "upnp_nat_chain=prerouting_miniupnpd",
    "upnp_nat_postrouting_chain=postrouting_miniupnpd",
    // PCP lifetimes below this are raised to it (low, so renewals can be tested quickly).
    "min_lifetime=2",
    "max_lifetime=86400",
    `allow 1024-65535 ${LAN.gateway.replace(/\.1$/, ".0")}/${LAN.prefix} 1024-65535`,
    "deny 0-65535 0.0.0.0/0 0-65535",
    "",
  ].join("\n");
}

/** A process in the lab whose stderr and stdout are collected as text. */
export class LabProcess {
  out = "";
  err = "";
  readonly done: Promise<Deno.CommandStatus>;

  constructor(readonly child: Deno.ChildProcess, onLine?: (line: string) => void) {
    const collect = async (s: ReadableStream<Uint8Array>, into: "out" | "err") => {
      for await (const line of s.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
        this[into] += line + "\n";
        onLine?.(line);
      }
    };
    const reading = Promise.allSettled([
      collect(child.stdout, "out"),
      collect(child.stderr, "err"),
    ]);
    this.done = reading.then(() => child.status);
  }

  /** Waits (up to `ms`, then throws) until `check()` holds. */
  async until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${ms} ms waiting for ${what}; stderr:\n${this.err}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export interface GatewayLab {
  prefix: string;
  ns: Record<Node, string>;
  exec(node: Node, cmd: string[], stdin?: string): ReturnType<typeof run>;
  spawn(node: Node, cmd: string[], onLine?: (line: string) => void): LabProcess;
  /** Starts miniupnpd in the router, in the foreground; resolves once it listens. */
  miniupnpd(opts?: { igdV1?: boolean }): Promise<LabProcess>;
  /** Kills every process, deletes every namespace. Idempotent. */
  down(): Promise<void>;
}

async function deleteAll(namespaces: string[]): Promise<void> {
  await run("ip", ["-force", "-batch", "-"], namespaces.map((ns) => `netns del ${ns}\n`).join(""));
}

/**
 * Builds the lab; on any failure deletes what it made, then throws. `randomPorts`: the router's
 * masquerade is symmetric (see {@link gatewayRuleset}).
 */
export async function upGatewayLab(opts: { randomPorts?: boolean } = {}): Promise<GatewayLab> {
  const prefix = newPrefix();
  const ns = Object.fromEntries(NODES.map((n) => [n, `${prefix}-${n}`])) as Record<Node, string>;
  const procs = new Set<LabProcess>();
  const temp = await Deno.makeTempDir({ prefix: "portmap-lab-" });
  const ip = (node: Node, what: string, batch: string[]) =>
    must(what, "ip", ["-n", ns[node], "-batch", "-"], batch.join("\n") + "\n");
  const all = Object.values(ns);
  try {
    await must(
      "create namespaces",
      "ip",
      ["-batch", "-"],
      all.map((n) => `netns add ${n}\n`).join(""),
    );
    for (const n of all) {
      await must(`bring up lo in ${n}`, "ip", ["-n", n, "link", "set", "lo", "up"]);
    }
    await must("enable forwarding", "ip", [
      "netns",
      "exec",
      ns.gw,
      "sysctl",
      "-q",
      "-w",
      "net.ipv4.ip_forward=1",
      "net.ipv6.conf.all.disable_ipv6=1",
    ]);
    await ip("gw", "create links", [
      `link add wan type veth peer name eth0 netns ${ns.out}`,
      `link add lan type veth peer name eth0 netns ${ns.in}`,
      `addr add ${WAN.router}/${WAN.prefix} dev wan`,
      `addr add ${LAN.gateway}/${LAN.prefix} dev lan`,
      "link set wan up",
      "link set lan up",
    ]);
    await ip("out", "address the outside host", [
      `addr add ${WAN.outside}/${WAN.prefix} dev eth0`,
      "link set eth0 up",
    ]);
    await ip("in", "address the LAN host", [
      `addr add ${LAN.host}/${LAN.prefix} dev eth0`,
      "link set eth0 up",
      `route add default via ${LAN.gateway}`,
    ]);
    await must(
      "load the router's nftables",
      "ip",
      ["netns", "exec", ns.gw, "nft", "-f", "-"],
      gatewayRuleset(opts),
    );
  } catch (e) {
    await deleteAll(all);
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    throw e;
  }
  const spawn = (node: Node, cmd: string[], onLine?: (line: string) => void) => {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns[node], ...cmd],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const p = new LabProcess(child, onLine);
    procs.add(p);
    p.done.finally(() => procs.delete(p));
    return p;
  };
  let downed: Promise<void> | undefined;
  return {
    prefix,
    ns,
    exec: (node, cmd, stdin) => run("ip", ["netns", "exec", ns[node], ...cmd], stdin),
    spawn,
    async miniupnpd(opts = {}) {
      const dir = await Deno.makeTempDir({ dir: temp });
      const conf = `${dir}/miniupnpd.conf`;
      await Deno.writeTextFile(conf, miniupnpdConf({ ...opts, leaseFile: `${dir}/leases` }));
      const p = spawn("gw", ["miniupnpd", "-d", "-f", conf, "-P", `${dir}/pid`]);
      await p.until(
        () => /Listening for NAT-PMP\/PCP/.test(p.err) && /HTTP listening on port/.test(p.err),
        "miniupnpd to listen",
      );
      return p;
    },
    down() {
      downed ??= (async () => {
        for (const p of [...procs]) {
          p.kill("SIGKILL");
          await p.done.catch(() => {});
        }
        for (const n of all) {
          const pids = await run("ip", ["netns", "pids", n]);
          for (const pid of pids.stdout.split(/\s+/).filter(Boolean).map(Number)) {
            try {
              Deno.kill(pid, "SIGKILL");
            } catch {
              // gone meanwhile
            }
          }
        }
        await deleteAll(all);
        await Deno.remove(temp, { recursive: true }).catch(() => {});
      })();
      return downed;
    },
  };
}

/** Namespaces of this file's prefix form still present (for the cleanup check). */
export async function namespacesOf(prefix: string): Promise<string[]> {
  const r = await run("ip", ["netns", "list"]);
  return r.stdout.split("\n").map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.startsWith(`${prefix}-`));
}

// ---- the port-mapping agent (tests/natlab/_portmap_agent.ts) ------------------------------

const AGENT = new URL("./_portmap_agent.ts", import.meta.url).pathname;

export interface AgentEvent {
  ev: string;
  [k: string]: unknown;
}

/** Drives one `_portmap_agent.ts` in a lab node: a UDP socket plus a PortMapper for its port. */
export class PortmapAgent {
  private constructor(readonly proc: LabProcess, readonly events: AgentEvent[]) {}

  /**
   * Starts the agent with what `join` has for this (network, interface list), so it must guess
   * the gateway; `allowAll` lets it read /proc/net/route, which Deno allows only with -A.
   */
  static start(lab: GatewayLab, node: Node, args: string[], allowAll = false): PortmapAgent {
    const events: AgentEvent[] = [];
    const perms = allowAll ? ["--allow-all"] : ["--allow-net", "--allow-sys=networkInterfaces"];
    const cmd = [
      Deno.execPath(),
      "run",
      "--quiet",
      "--no-config",
      "--unstable-net",
      ...perms,
      AGENT,
      ...args,
    ];
    const proc = lab.spawn(node, cmd, (line) => {
      if (line.startsWith("{")) events.push(JSON.parse(line));
    });
    return new PortmapAgent(proc, events);
  }

  /** The first event named `ev` (waiting up to `ms` for it). */
  async event(ev: string, ms = 10_000): Promise<AgentEvent> {
    await this.proc.until(() => this.events.some((e) => e.ev === ev), `agent event "${ev}"`, ms);
    return this.events.find((e) => e.ev === ev)!;
  }

  logs(): string[] {
    return this.events.filter((e) => e.ev === "log").map((e) => String(e.msg));
  }

  async send(line: string): Promise<void> {
    const w = this.proc.child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(line + "\n"));
    } finally {
      w.releaseLock();
    }
  }

  /** Asks the agent to stop its PortMapper and exit; resolves to the stop event. */
  async stop(): Promise<AgentEvent> {
    await this.send("stop");
    const e = await this.event("stopped");
    await this.proc.done;
    return e;
  }
}

/** The description URL of a running miniupnpd (its HTTP port is random). */
export function rootDesc(daemon: LabProcess): string {
  const port = /HTTP listening on port (\d+)/.exec(daemon.err)?.[1];
  if (!port) throw new Error(`Cannot find miniupnpd's HTTP port in its log:\n${daemon.err}`);
  return `http://${LAN.gateway}:${port}/rootDesc.xml`;
}

/**
 * `upnpc -l` in the LAN host: the UDP mappings the router lists, as "ext->int:port" strings
 * (NAT-PMP and PCP mappings are listed too: miniupnpd keeps one table).
 */
export async function listedMappings(lab: GatewayLab, daemon: LabProcess): Promise<string[]> {
  const r = await lab.exec("in", ["upnpc", "-u", rootDesc(daemon), "-l"]);
  return [...r.stdout.matchAll(/^\s*\d+\s+UDP\s+(\d+->[\d.]+:\d+)/gm)].map((m) => m[1]!);
}
