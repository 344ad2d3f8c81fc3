/**
 * `p2pchat nat` behind real kernel NATs: for every lab NAT type the report must match what the
 * lab's nftables recipe is (README.md, "NAT behaviours"). The server node has two addresses
 * (198.51.100.2 and .3), so `serve --alt-host` is a full RFC 5780 server. Interop both ways
 * with coturn: its turnutils_natdiscovery against `p2pchat serve --alt-host`, and `p2pchat nat
 * --stun` against its turnserver on the same two addresses. All sites run at once.
 */
import assert from "node:assert/strict";
import { type Lab, type NatType, unsupported, up } from "./lab.ts";
import { labTests, missingTool, PORT, wrap } from "./_labtest.ts";
import { Harness } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "NAT discovery lab tests");
const coturnTest = labTests(
  unsupported() ??
    missingTool({ turnutils_natdiscovery: "coturn", turnserver: "coturn" }),
  "NAT discovery interop lab tests (coturn)",
);

type Term = "endpoint-independent" | "address-dependent" | "address-and-port-dependent";
const EIM: Term = "endpoint-independent";
const ADM: Term = "address-dependent";
const APDM: Term = "address-and-port-dependent";

interface Truth {
  mapping: Term;
  filtering: Term;
  allocation: "preserving" | "sequential" | "random";
}

/** What each lab NAT type is, from its recipe (tests/natlab/_nft.ts, README.md). */
const TRUTH: Record<NatType, Truth> = {
  // No NAT: the host's own address, nothing filtered; a port is "preserved" trivially.
  "open": { mapping: EIM, filtering: EIM, allocation: "preserving" },
  "full-cone": { mapping: EIM, filtering: EIM, allocation: "preserving" },
  "restricted": { mapping: EIM, filtering: ADM, allocation: "preserving" },
  "port-restricted": { mapping: EIM, filtering: APDM, allocation: "preserving" },
  "symmetric": { mapping: APDM, filtering: APDM, allocation: "random" },
  "symmetric-seq": { mapping: APDM, filtering: APDM, allocation: "sequential" },
};

/** One site per NAT type; hairpinning on for half of them, so both answers are checked. */
const SITES: { name: string; nat: NatType; hairpin: boolean }[] = [
  { name: "o", nat: "open", hairpin: false },
  { name: "f", nat: "full-cone", hairpin: true },
  { name: "r", nat: "restricted", hairpin: false },
  { name: "p", nat: "port-restricted", hairpin: true },
  { name: "s", nat: "symmetric", hairpin: false },
  { name: "q", nat: "symmetric-seq", hairpin: true },
];

const [S1, S2] = ["198.51.100.2", "198.51.100.3"];
const STUN_PORT = 3478;

interface NatJson {
  udp: boolean;
  public: string;
  mapping: string;
  filtering: string;
  allocation: string;
  hairpin: boolean | string;
  natted: boolean | string;
  otherAddress: string | null;
  notes: string[];
}

/** A lab with one site per NAT type and `p2pchat serve --alt-host` on the server node. */
async function withLab(fn: (lab: Lab, h: Harness) => Promise<void>): Promise<void> {
  const lab = await up({ sites: SITES.map(({ name, nat, hairpin }) => ({ name, nat, hairpin })) });
  const h = new Harness();
  try {
    const server = h.spawn(
      ["serve", "--host", S1, "--port", String(PORT), "--alt-host", S2, "--log-level", "info"],
      { wrap: wrap(lab, "server") },
    );
    await server.waitStderr(/RFC 5780 NAT discovery/);
    await fn(lab, h);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

/** Runs `p2pchat nat ARGS --json` on a site's host and returns the report. */
async function natReport(lab: Lab, h: Harness, site: string, args: string[]): Promise<NatJson> {
  const p = h.spawn(["nat", ...args, "--json"], { wrap: wrap(lab, `${site}1`) });
  await p.closeStdin();
  const st = await p.status;
  assert.equal(st.code, 0, `nat on ${site}1: ${p.stderr.join("\n")}`);
  assert.equal(p.lines.length, 1, "one JSON object");
  return JSON.parse(p.lines[0]!);
}

/** The public address a site's host should be seen at. */
const publicHost = (lab: Lab, s: { name: string; nat: NatType }) =>
  s.nat === "open" ? lab.hosts[`${s.name}1`]!.addr : lab.routers[s.name]!.publicAddr;

function checkReport(lab: Lab, s: (typeof SITES)[number], r: NatJson, what: string): void {
  const t = TRUTH[s.nat];
  const got = { mapping: r.mapping, filtering: r.filtering, allocation: r.allocation };
  assert.deepEqual(got, t, `${what}, ${s.nat}: ${JSON.stringify(r)}`);
  assert.equal(r.udp, true);
  assert.equal(r.public.split(":")[0], publicHost(lab, s), `${what}, ${s.nat}: public address`);
  assert.equal(r.natted, s.nat !== "open", `${what}, ${s.nat}: natted`);
  // A host without NAT reaches its own address whatever; a NAT only with hairpinning on.
  assert.equal(r.hairpin, s.nat === "open" || s.hairpin, `${what}, ${s.nat}: hairpin`);
}

/** Prints what every site reported, for the record (README, PR notes). */
function table(rows: { nat: NatType; r: NatJson }[]): string {
  return rows.map(({ nat, r }) =>
    `${nat.padEnd(16)} ${r.mapping.padEnd(27)} ${r.filtering.padEnd(27)} ${
      r.allocation.padEnd(11)
    } hairpin=${r.hairpin} public=${r.public}`
  ).join("\n");
}

labTest("nat: every lab NAT type reports its true mapping, filtering and allocation", async () => {
  await withLab(async (lab, h) => {
    const t0 = Date.now();
    const rows = await Promise.all(SITES.map(async (s) => {
      const r = await natReport(lab, h, s.name, ["--server", `${S1}:${PORT}`]);
      return { s, nat: s.nat, r };
    }));
    console.log(`\n${table(rows)}\n(${SITES.length} sites at once, ${Date.now() - t0} ms)`);
    for (const { s, r } of rows) {
      checkReport(lab, s, r, "p2pchat serve");
      assert.equal(r.otherAddress, `${S2}:${PORT + 1}`);
      assert.deepEqual(r.notes, [], "nothing undecided");
    }
  });
});

/** coturn's verdict lines, e.g. "NAT with Address and Port Dependent Filtering!". */
function coturnTerm(text: string, kind: "Mapping" | "Filtering"): string | undefined {
  const all = [...text.matchAll(new RegExp(`NAT with (.+?) ${kind}!`, "g"))];
  const last = all.at(-1)?.[1];
  const terms: Record<string, Term> = {
    "Endpoint Independent": EIM,
    "Address Dependent": ADM,
    "Address and Port Dependent": APDM,
  };
  return last === undefined ? undefined : terms[last] ?? last;
}

coturnTest(
  "nat interop: coturn's turnutils_natdiscovery against p2pchat serve --alt-host",
  async () => {
    await withLab(async (lab) => {
      const rows = await Promise.all(SITES.map(async (s) => {
        // -L makes it reuse one local port across its mapping tests, as RFC 5780 4.3 needs.
        const host = lab.hosts[`${s.name}1`]!.addr;
        const r = await lab.exec(`${s.name}1`, [
          "turnutils_natdiscovery",
          "-m",
          "-f",
          "-L",
          host,
          "-p",
          String(PORT),
          S1,
        ]);
        const text = r.stdout + r.stderr;
        return { s, code: r.code, text };
      }));
      for (const { s, code, text } of rows) {
        assert.equal(code, 0, text);
        const got = {
          mapping: coturnTerm(text, "Mapping"),
          filtering: coturnTerm(text, "Filtering"),
        };
        console.log(`turnutils_natdiscovery, ${s.nat}: ${got.mapping} / ${got.filtering}`);
        const t = TRUTH[s.nat];
        assert.deepEqual(got, { mapping: t.mapping, filtering: t.filtering }, `${s.nat}:\n${text}`);
      }
    });
  },
);

/** Starts coturn's turnserver (STUN only) on both server addresses; resolves once it listens. */
async function coturn(lab: Lab): Promise<{ dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "p2pchat-coturn-" });
  const conf = [
    `listening-ip=${S1}`,
    `listening-ip=${S2}`,
    `listening-port=${STUN_PORT}`,
    `alt-listening-port=${STUN_PORT + 1}`,
    "stun-only",
    "no-tcp",
    "no-tls",
    "no-dtls",
    "no-cli",
    "no-tcp-relay",
    "log-file=stdout",
    "simple-log",
    `pidfile=${dir}/turnserver.pid`,
    `userdb=${dir}/turndb`,
  ].join("\n") + "\n";
  await Deno.writeTextFile(`${dir}/turnserver.conf`, conf);
  const child = lab.spawn("server", ["turnserver", "-c", `${dir}/turnserver.conf`], {
    stdin: "null",
    stdout: "null",
    stderr: "null",
  });
  // It logs no line per listener: wait until all four UDP sockets are bound.
  const want = [S1, S2].flatMap((ip) => [`${ip}:${STUN_PORT}`, `${ip}:${STUN_PORT + 1}`]);
  const deadline = Date.now() + 10_000;
  let exited = false;
  child.status.then(() => exited = true);
  for (;;) {
    const ss = (await lab.exec("server", ["ss", "-Hnlu"])).stdout;
    if (want.every((a) => ss.includes(`${a} `))) break;
    if (exited) throw new Error("Cannot start turnserver: it exited");
    if (Date.now() > deadline) throw new Error(`Cannot start turnserver: bound only\n${ss}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { dir };
}

coturnTest(
  "nat interop: p2pchat nat --stun against coturn's turnserver says what it says against p2pchat",
  async () => {
    await withLab(async (lab, h) => {
      const { dir } = await coturn(lab);
      try {
        const rows = await Promise.all(SITES.map(async (s) => {
          const coturnR = await natReport(lab, h, s.name, ["--stun", `${S1}:${STUN_PORT}`]);
          const ours = await natReport(lab, h, s.name, ["--server", `${S1}:${PORT}`]);
          return { s, nat: s.nat, r: coturnR, ours };
        }));
        console.log(`\nagainst turnserver:\n${table(rows)}`);
        for (const { s, r, ours } of rows) {
          checkReport(lab, s, r, "coturn turnserver");
          assert.equal(r.otherAddress, `${S2}:${STUN_PORT + 1}`);
          const pick = (x: NatJson) => [x.mapping, x.filtering, x.allocation, x.hairpin];
          assert.deepEqual(pick(r), pick(ours), `${s.nat}: same against coturn and p2pchat`);
        }
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    });
  },
);
