/**
 * TCP hole punching behind real kernel NAT: two peers whose routers drop UDP between them find
 * no direct UDP path, then connect to each other at once over TCP (a simultaneous open through
 * both NATs) and chat over it. Each pair runs with UDP dropped only between the two sites'
 * public addresses (the server still gets UDP), and cone pairs also with all UDP dropped on
 * both routers (the server then only over its WebSocket). Prints the table of
 * docs/NAT_MATRIX.md's TCP section.
 */
import assert from "node:assert/strict";
import { type Lab, type NatType, type SiteSpec, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "TCP punching tests");

/** What a router drops: UDP to and from the other site only, or all UDP it forwards. */
type Block = "peer" | "all";

/** An nft table on a site's router that drops forwarded UDP (to and from `other`, or all). */
function udpBlock(block: Block, other: string): string {
  const rules = block === "all"
    ? ["meta l4proto udp drop"]
    : [`meta l4proto udp ip daddr ${other} drop`, `meta l4proto udp ip saddr ${other} drop`];
  return [
    "table ip natlab_noudp {",
    "  chain drop_udp {",
    "    type filter hook forward priority filter - 10; policy accept;",
    ...rules.map((r) => `    ${r}`),
    "  }",
    "}",
  ].join("\n") + "\n";
}

const lastPath = (p: Proc, peer: string) =>
  p.events.filter((e) => e.type === "path" && e.peer === peer).at(-1);

interface Case {
  a: NatType;
  b: NatType;
  block: Block;
  /** What the pair must end with: a direct TCP path, or the relay. */
  want: "tcp" | "relay";
  /** Both peers run with --no-tcp-punch: the negative control (a pair that punches otherwise). */
  noPunch?: boolean;
}

interface Row extends Case {
  path: string;
  transport: string;
  /** From both knowing each other to the final path. */
  pathS: number;
}

const CONES: NatType[] = ["full-cone", "restricted", "port-restricted"];
const PAIRS: [NatType, NatType][] = [
  ...CONES.flatMap((a, i) => CONES.slice(i).map((b): [NatType, NatType] => [a, b])),
  ["open", "port-restricted"],
  ["symmetric-seq", "port-restricted"],
  ["symmetric", "port-restricted"],
  ["symmetric", "symmetric"],
];
/** Random ports for TCP too: no port to aim at (measured: the lab's symmetric NAT maps TCP randomly). */
const wantFor = (a: NatType, b: NatType) =>
  a === "symmetric" || b === "symmetric" ? "relay" : "tcp";
const CASES: Case[] = [
  ...PAIRS.map(([a, b]): Case => ({ a, b, block: "peer", want: wantFor(a, b) })),
  { a: "port-restricted", b: "port-restricted", block: "all", want: "tcp" },
  { a: "full-cone", b: "restricted", block: "all", want: "tcp" },
  { a: "full-cone", b: "port-restricted", block: "peer", want: "relay", noPunch: true },
];

/** How long a pair that should relay is watched for a direct path it should not get. */
const RELAY_WATCH_MS = 30_000;

async function runCase(lab: Lab, h: Harness, addr: string, c: Case, i: number): Promise<Row> {
  const what = `${c.a} <-> ${c.b}, UDP dropped ${
    c.block === "all" ? "everywhere" : "between them"
  }${c.noPunch ? ", --no-tcp-punch" : ""}`;
  const [sa, sb] = [`t${i}a`, `t${i}b`];
  // An open site's host has its own public address; a NAT site's hosts have the router's.
  const pubOf = (site: string, nat: NatType) =>
    nat === "open" ? lab.hosts[`${site}1`]!.addr : lab.routers[site]!.publicAddr;
  const pa = pubOf(sa, c.a);
  const pb = pubOf(sb, c.b);
  for (const [site, other] of [[sa, pb], [sb, pa]]) {
    const r = await lab.exec(`router:${site}`, ["nft", "-f", "-"], udpBlock(c.block, other!));
    assert.equal(r.code, 0, `Cannot drop UDP on router ${site}: ${r.stderr}`);
  }
  const args = ["--room", `r${i}`, "--log-level", "info", "--no-portmap"];
  if (c.noPunch) args.push("--no-tcp-punch");
  const a = h.peer("a", addr, args, wrap(lab, `${sa}1`));
  await a.waitFor(isType("ready", { name: "a" }), 30000, `${what}: a registered`);
  const b = h.peer("b", addr, args, wrap(lab, `${sb}1`));
  await a.waitFor(isType("peer", { name: "b", state: "joined" }), 30000, `${what}: a knows b`);
  const t0 = Date.now();
  await a.write(`first (${what})`);
  await b.waitFor(isType("message", { from: "a", text: `first (${what})` }), 30000, what);
  const direct = (peer: string) => isType("path", { peer, path: "direct" });
  if (c.want === "tcp") {
    await a.waitFor(direct("b"), 40000, `${what}: a direct`);
    await b.waitFor(direct("a"), 15000, `${what}: b direct`);
  } else {
    try {
      await a.waitFor(direct("b"), RELAY_WATCH_MS);
    } catch { /* stayed relayed */ }
  }
  const pathS = (Date.now() - t0) / 1000;
  const ea = lastPath(a, "b");
  const eb = lastPath(b, "a");
  if (c.block === "all") {
    const ws = (e: Record<string, unknown>) =>
      (e.type === "ready" || e.type === "transport") && e.transport === "ws";
    assert.ok(a.events.some(ws) && b.events.some(ws), `${what}: both reach the server over ws`);
  }
  const row: Row = {
    ...c,
    path: String(ea?.path),
    transport: String(ea?.transport ?? "udp"),
    pathS,
  };
  if (c.want === "tcp") {
    for (const [e, pub] of [[ea, pb], [eb, pa]] as const) {
      assert.equal(e?.path, "direct", `${what}: ${JSON.stringify(e)}`);
      assert.equal(e?.transport, "tcp", `${what}: ${JSON.stringify(e)}`);
      assert.ok(String(e?.addr).startsWith(`${pub}:`), `${what}: path to ${e?.addr}`);
    }
  } else {
    assert.equal(ea?.path, "relay", `${what}: ${JSON.stringify(ea)}`);
  }
  // Both ways, over whatever carries the path now.
  for (let k = 0; k < 3; k++) {
    await a.write(`a${k} (${what})`);
    await b.write(`b${k} (${what})`);
  }
  for (let k = 0; k < 3; k++) {
    await b.waitFor(isType("message", { from: "a", text: `a${k} (${what})` }), 20000, what);
    await a.waitFor(isType("message", { from: "b", text: `b${k} (${what})` }), 20000, what);
  }
  const texts = b.events.filter((e) => e.type === "message" && e.from === "a").map((e) => e.text);
  assert.deepEqual(
    texts,
    [`first (${what})`, ...[0, 1, 2].map((k) => `a${k} (${what})`)],
    `${what}: exactly once, in order`,
  );
  return row;
}

labTest("tcp punch: cone NATs with UDP blocked between them go direct over TCP", async () => {
  const sites: SiteSpec[] = CASES.flatMap((c, i) => [
    c.a === "open" ? { name: `t${i}a`, nat: c.a, subnet: `198.18.${i}.0/24` } : {
      name: `t${i}a`,
      nat: c.a,
    },
    { name: `t${i}b`, nat: c.b },
  ]);
  const lab = await up({ sites });
  const h = new Harness();
  let rows: Row[] = [];
  try {
    const server = h.server(PORT, ["--log-level", "info"], wrap(lab, "server"));
    await server.waitStderr(/listening on/);
    const addr = `${lab.server.addrs[0]}:${PORT}`;
    rows = await Promise.all(CASES.map((c, i) => runCase(lab, h, addr, c, i)));
  } finally {
    await h.cleanup();
    await lab.down();
  }
  const table = [
    "| A | B | UDP dropped | path | transport | s to final path |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) =>
      `| ${r.a} | ${r.b}${r.noPunch ? " (--no-tcp-punch)" : ""} | ${
        r.block === "all" ? "everywhere" : "between A and B"
      } | ${r.path} | ` +
      `${r.transport} | ${r.pathS.toFixed(1)} |`
    ),
  ].join("\n");
  console.log("\n" + table);
});
