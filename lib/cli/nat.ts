/**
 * `p2pchat nat`: runs NAT discovery against a p2pchat server (or any RFC 5780 STUN server)
 * and prints what it found, as a short report or one JSON object.
 */
import { probePortmap } from "../portmap/probe.ts";
import { type Addr, formatAddr } from "../wire/addr.ts";
import type { NatReport } from "../nat/discovery.ts";
import { verdict } from "../nat/verdict.ts";
import { discoverNat, type DiscoverOptions } from "../net/nat_runner.ts";
import { resolveAddr } from "../net/resolve.ts";

export interface NatCommand {
  /** The server as the user typed it (a host name is resolved here). */
  target: Addr;
  /** "p2pchat": also try the server's second STUN port; "stun": OTHER-ADDRESS only. */
  kind: "p2pchat" | "stun";
  json: boolean;
  timeoutMs: number;
}

/**
 * Port mapping protocols found on the gateway (e.g. "UPnP", "NAT-PMP", "PCP"). Plug a prober
 * in through `NatIo.portmap`; without one the report says "not probed".
 */
export type PortmapProbe = () => Promise<string[]>;

export interface NatIo {
  out: (s: string) => void;
  discover?: (o: DiscoverOptions) => Promise<NatReport>;
  resolve?: (a: Addr) => Promise<Addr>;
  portmap?: PortmapProbe;
}

/** What the port mapping probe found; `probed` false when there was no prober. */
export interface PortmapResult {
  probed: boolean;
  found: string[];
}

const yesNo = (v: boolean | "unknown") => (v === "unknown" ? "unknown" : v ? "yes" : "no");

/**
 * The `--json` object: `udp`, `public` ("IP:PORT" or null), `mapping`, `filtering`,
 * `allocation`, `hairpin` (true, false or "unknown"), `portmap` (a list), and more detail.
 */
export function natJson(r: NatReport, pm: PortmapResult): Record<string, unknown> {
  return {
    udp: r.udp,
    public: r.public ? formatAddr(r.public) : null,
    natted: r.natted,
    mapping: r.mapping,
    filtering: r.filtering,
    allocation: r.allocation,
    hairpin: r.hairpin,
    portmap: pm.found.map((f) => f.split(" ")[0]),
    portmapMapped: pm.found[0]?.split(" ")[1] ?? null,
    portmapProbed: pm.probed,
    rttMs: r.rttMs === null ? null : Math.round(r.rttMs * 10) / 10,
    server: formatAddr(r.server.primary),
    otherAddress: r.server.other ? formatAddr(r.server.other) : null,
    secondPort: r.server.secondPort,
    verdict: verdict(r),
    notes: r.notes,
  };
}

/** The human-readable report (netcheck style): one line per finding, then the verdict. */
export function formatNat(r: NatReport, pm: PortmapResult): string {
  const s = r.server;
  const offers = s.other
    ? `RFC 5780, other address ${formatAddr(s.other)}`
    : s.secondPort !== null
    ? `second port ${s.secondPort} only`
    : "no second address or port";
  const pub = r.public
    ? `${formatAddr(r.public)}${
      r.natted === false ? " (this host's own: no NAT)" : r.natted ? " (behind a NAT)" : ""
    }`
    : "unknown";
  const rows: [string, string][] = [
    ["UDP", yesNo(r.udp)],
    ["public", pub],
    ["mapping", r.mapping],
    ["filtering", r.filtering],
    ["allocation", r.allocation],
    ["hairpin", yesNo(r.hairpin)],
    [
      "port mapping",
      pm.probed ? (pm.found.length ? pm.found.join(", ") : "none found") : "not probed",
    ],
    ["RTT", r.rttMs === null ? "unknown" : `${r.rttMs.toFixed(1)} ms`],
  ];
  return [
    `NAT report from ${formatAddr(s.primary)} (${offers})`,
    ...rows.map(([k, v]) => `  ${k.padEnd(13)} ${v}`),
    `verdict: ${verdict(r)}`,
    ...r.notes.map((n) => `  note: ${n}`),
  ].join("\n") + "\n";
}

/**
 * Runs `p2pchat nat`; returns the exit code. No answer at all throws `Cannot reach ...` (exit
 * 1, after the JSON object with `udp: false` when `json`).
 */
export async function runNat(cmd: NatCommand, io: NatIo): Promise<number> {
  const server = await (io.resolve ?? resolveAddr)(cmd.target);
  const discover = io.discover ?? discoverNat;
  const [report, found] = await Promise.all([
    discover({ server, guessAltPort: cmd.kind === "p2pchat", timeoutMs: cmd.timeoutMs }),
    io.portmap ? io.portmap() : Promise.resolve(null),
  ]);
  const pm: PortmapResult = found ? { probed: true, found } : { probed: false, found: [] };
  if (cmd.json) io.out(JSON.stringify(natJson(report, pm)) + "\n");
  if (!report.udp) {
    const what = cmd.kind === "p2pchat" ? "server" : "STUN server";
    // A p2pchat server is still reachable where UDP is blocked: say so rather than just fail.
    const hint = cmd.kind === "p2pchat"
      ? " (if this network blocks UDP, `p2pchat join` still gets through over the server's WebSocket)"
      : "";
    throw new Error(
      `Cannot reach ${what} ${formatAddr(cmd.target)}: no answer within ${
        cmd.timeoutMs / 1000
      } s over UDP${hint}`,
    );
  }
  if (!cmd.json) io.out(formatNat(report, pm));
  return 0;
}

/** The gateway's port-mapping protocol and mapped address, as `nat` prints them ("pcp 203.0.113.7:40112"). */
export async function portmapLines(): Promise<string[]> {
  const m = await probePortmap();
  return m ? [`${m.protocol} ${formatAddr({ host: m.external.host, port: m.external.port })}`] : [];
}
