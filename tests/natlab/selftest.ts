/**
 * Proves that every lab NAT type has the mapping and filtering behaviour it claims, with UDP
 * probes between one host per site and the server's two public addresses.
 *
 * Mapping: one host socket sends to S1:3478, S2:3478 and S1:3479; the server reports the
 * public endpoint each saw. Filtering: a second host socket sends only to S1:3478, then the
 * server answers from S1:3478 (exact), S1:3479 (same address, other port) and S2:3478 (other
 * address) to the mapped endpoint; the host reports which arrive.
 */
import { Probe } from "./_probe_client.ts";
import type { RecvEvent } from "./_probe_client.ts";
import { SEQ_PORT_BASE, SEQ_PORT_COUNT } from "./_nft.ts";
import { NAT_TYPES } from "./_plan.ts";
import type { NatType } from "./_plan.ts";
import { listLabs, up } from "./lab.ts";
import type { Lab } from "./lab.ts";

export interface Check {
  site: string;
  nat: NatType | "-";
  check: string;
  expected: string;
  actual: string;
  ok: boolean;
  /** What was observed in detail, e.g. the public endpoints. */
  detail?: string;
}

/** Which unsolicited senders reach a mapping after the host sent to S1:3478 only. */
export const EXPECTED_FILTERING: Record<NatType, { exact: boolean; port: boolean; ip: boolean }> = {
  "open": { exact: true, port: true, ip: true },
  "full-cone": { exact: true, port: true, ip: true },
  "restricted": { exact: true, port: true, ip: false },
  "port-restricted": { exact: true, port: false, ip: false },
  "symmetric": { exact: true, port: false, ip: false },
  "symmetric-seq": { exact: true, port: false, ip: false },
};

const SITE_NAMES: Record<NatType, string> = {
  "open": "open",
  "full-cone": "full",
  "restricted": "rest",
  "port-restricted": "port",
  "symmetric": "sym",
  "symmetric-seq": "seq",
};

export const STUN_PORTS = [3478, 3479] as const;
const MAP_PORT = 40000;
const FILTER_PORT = 40001;
/** How long a datagram that should arrive may take; also how long we wait for one that should not. */
const ARRIVAL_MS = 1500;

/** Starts a probe in the server bound to both ports on both addresses (ids s1a s1b s2a s2b). */
export async function startServerProbe(lab: Lab): Promise<Probe> {
  const server = await Probe.start(lab, "server");
  const [s1, s2] = lab.server.addrs;
  await Promise.all([
    server.bind("s1a", STUN_PORTS[0], s1),
    server.bind("s1b", STUN_PORTS[1], s1),
    server.bind("s2a", STUN_PORTS[0], s2),
    server.bind("s2b", STUN_PORTS[1], s2),
  ]);
  return server;
}

/** Sends `data` from the host socket and returns the endpoint the server socket saw. */
export async function observe(
  host: Probe,
  hostSock: string,
  server: Probe,
  serverSock: string,
  to: string,
  port: number,
  data: string,
): Promise<RecvEvent | undefined> {
  await host.send(hostSock, to, port, data);
  return await server.recv(serverSock, data, ARRIVAL_MS);
}

function ep(e: RecvEvent | undefined): string {
  return e ? `${e.from}:${e.fromPort}` : "nothing";
}

function seqNext(p: number): number {
  return SEQ_PORT_BASE + ((p - SEQ_PORT_BASE + 1) % SEQ_PORT_COUNT);
}

async function checkSite(lab: Lab, nat: NatType, server: Probe): Promise<Check[]> {
  const site = SITE_NAMES[nat];
  const hostName = `${site}1`;
  const hostAddr = lab.hosts[hostName]!.addr;
  const pub = lab.routers[site]!.publicAddr;
  const [s1, s2] = lab.server.addrs;
  const checks: Check[] = [];
  const add = (check: string, expected: string, actual: string, detail?: string) =>
    checks.push({ site, nat, check, expected, actual, ok: expected === actual, detail });

  const host = await Probe.start(lab, hostName);
  try {
    await host.bind("m", MAP_PORT);
    await host.bind("f", FILTER_PORT);

    // Mapping.
    const seen: (RecvEvent | undefined)[] = [];
    for (
      const [sock, to, port] of [["s1a", s1, 3478], ["s2a", s2, 3478], ["s1b", s1, 3479]] as const
    ) {
      seen.push(await observe(host, "m", server, sock, to, port, `map:${site}:${sock}`));
    }
    const eps = seen.map(ep);
    const ports = seen.map((e) => e?.fromPort ?? -1);
    const actualMapping = (() => {
      if (seen.some((e) => !e)) return `lost (${eps.join(", ")})`;
      if (seen.some((e) => e!.from !== seen[0]!.from)) return `address varies (${eps.join(", ")})`;
      if (new Set(eps).size === 1) return "endpoint-independent";
      if (new Set(eps).size !== eps.length) return `partly dependent (${eps.join(", ")})`;
      const sequential = seqNext(ports[0]!) === ports[1] && seqNext(ports[1]!) === ports[2];
      return sequential ? "address-and-port-dependent, sequential" : "address-and-port-dependent";
    })();
    const expectedMapping = nat === "symmetric"
      ? "address-and-port-dependent"
      : nat === "symmetric-seq"
      ? "address-and-port-dependent, sequential"
      : "endpoint-independent";
    add("mapping", expectedMapping, actualMapping, eps.join(" "));
    add("public address", nat === "open" ? hostAddr : pub, seen[0]?.from ?? "nothing");
    if (nat !== "symmetric" && nat !== "symmetric-seq") {
      add("port preserved", String(MAP_PORT), String(ports[0]));
    }

    // Filtering.
    const mapped = await observe(host, "f", server, "s1a", s1, 3478, `flt:${site}`);
    if (!mapped) {
      add("filtering setup", "mapping seen", "nothing arrived");
      return checks;
    }
    const want = EXPECTED_FILTERING[nat];
    const probes = [
      ["exact", "s1a", "from the contacted ip:port"],
      ["port", "s1b", "from the contacted ip, other port"],
      ["ip", "s2a", "from another ip"],
    ] as const;
    for (const [kind, sock] of probes) {
      await server.send(sock, mapped.from, mapped.fromPort, `${kind}:${site}`);
    }
    const got = await Promise.all(
      probes.map(([kind]) => host.recv("f", `${kind}:${site}`, ARRIVAL_MS)),
    );
    probes.forEach(([kind, , label], i) => {
      add(`inbound ${label}`, want[kind] ? "arrives" : "blocked", got[i] ? "arrives" : "blocked");
    });
  } finally {
    await host.close();
  }
  return checks;
}

/** Builds one site per NAT type, runs the probes, tears the lab down and reports every check. */
export async function selftest(
  opts: { log?: (line: string) => void; types?: readonly NatType[] } = {},
): Promise<{ checks: Check[]; ms: number }> {
  const log = opts.log ?? (() => {});
  const types = opts.types ?? NAT_TYPES;
  const t0 = performance.now();
  const lab = await up({ sites: types.map((nat) => ({ name: SITE_NAMES[nat], nat })) });
  log(`natlab selftest: lab ${lab.prefix} up in ${Math.round(performance.now() - t0)} ms`);
  const checks: Check[] = [];
  try {
    const server = await startServerProbe(lab);
    try {
      const perSite = await Promise.all(types.map((nat) => checkSite(lab, nat, server)));
      checks.push(...perSite.flat());
    } finally {
      await server.close();
    }
  } finally {
    await lab.down();
  }
  const left = (await listLabs()).get(lab.prefix) ?? [];
  checks.push({
    site: "-",
    nat: "-",
    check: "down() removes all namespaces",
    expected: "0 left",
    actual: `${left.length} left`,
    ok: left.length === 0,
  });
  return { checks, ms: Math.round(performance.now() - t0) };
}

/** One aligned line per check. */
export function formatChecks(checks: Check[]): string[] {
  const w = (k: keyof Check) => Math.max(...checks.map((c) => String(c[k]).length), 4);
  const [ws, wn, wc, we] = [w("site"), w("nat"), w("check"), w("expected")];
  return checks.map((c) =>
    `${c.ok ? "ok  " : "FAIL"} ${c.site.padEnd(ws)} ${c.nat.padEnd(wn)} ${c.check.padEnd(wc)} ` +
    `expected ${c.expected.padEnd(we)} got ${c.actual}${c.detail ? ` [${c.detail}]` : ""}`
  );
}
