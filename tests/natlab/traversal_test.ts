/**
 * NAT traversal behind real kernel NAT: real `p2pchat serve` and `p2pchat join --json`
 * processes in lab namespaces. Writes the NAT matrix report (docs/NAT_MATRIX.md when
 * P2PCHAT_WRITE_MATRIX=1; always printed).
 */
import assert from "node:assert/strict";
import { type Lab, type NatType, type SiteSpec, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { count, Harness, isType, type Proc } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "NAT traversal tests");

/** A lab with a server running in it; everything is torn down after `fn`. */
async function withLab(
  sites: SiteSpec[],
  fn: (lab: Lab, h: Harness, server: Proc, addr: string) => Promise<void>,
  serverArgs: string[] = [],
) {
  const lab = await up({ sites });
  const h = new Harness();
  try {
    const server = h.server(PORT, ["--log-level", "info", ...serverArgs], wrap(lab, "server"));
    await server.waitStderr(/listening on/);
    await fn(lab, h, server, `${lab.server.addrs[0]}:${PORT}`);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

const lastPath = (p: Proc, peer: string) =>
  p.events.filter((e) => e.type === "path" && e.peer === peer).at(-1)?.path as string | undefined;

const TYPES: NatType[] = ["open", "full-cone", "restricted", "port-restricted", "symmetric"];
const RELAY_PAIRS = new Set([
  "port-restricted|symmetric",
  "symmetric|port-restricted",
  "symmetric|symmetric",
]);

/** One cell: A was in the room first, B joined it. Seconds count from starting B's process. */
interface Row {
  a: NatType;
  b: NatType;
  path: string;
  connectS: number;
  deliverS: number;
}

/**
 * Matrix pairs run at once (two Deno processes each). Well above the core count: a pair mostly
 * waits (ACK timeout, punch window), and the three relayed pairs idle through theirs.
 */
const MATRIX_PARALLEL = 12;

async function runPair(
  lab: Lab,
  h: Harness,
  addr: string,
  a: NatType,
  b: NatType,
  i: number,
): Promise<Row> {
  const room = `m${i}`;
  const args = ["--room", room, "--keepalive", "5"];
  const what = `${a} (in the room) <-> ${b} (joining)`;
  const pa = h.peer("a", addr, args, wrap(lab, `s${i}a1`));
  await pa.waitFor(isType("ready", { name: "a" }), 30000, `${what}: a registered`);
  const t0 = Date.now();
  const pb = h.peer("b", addr, args, wrap(lab, `s${i}b1`));
  const pathA = await pa.waitFor(isType("path", { peer: "b" }), 30000, `${what}: a's path`);
  await pb.waitFor(isType("path", { peer: "a" }), 30000, `${what}: b's path`);
  const connectS = (Date.now() - t0) / 1000;
  // A relayed pair may still upgrade; a direct pair must not fall back. Give it a moment.
  if (pathA.path === "relay") await new Promise((r) => setTimeout(r, 500));
  await pa.write(`hello from a (${what})`);
  await pb.write(`hello from b (${what})`);
  await pb.waitFor(
    isType("message", { from: "a", text: `hello from a (${what})` }),
    30000,
    `${what}: a->b`,
  );
  await pa.waitFor(
    isType("message", { from: "b", text: `hello from b (${what})` }),
    30000,
    `${what}: b->a`,
  );
  await pa.waitFor(isType("delivered", { to: "b" }), 30000, `${what}: a's delivery report`);
  const deliverS = (Date.now() - t0) / 1000;
  const path = lastPath(pa, "b")!;
  assert.equal(
    lastPath(pb, "a") === "relay",
    path === "relay",
    `${what}: both sides agree on relaying`,
  );
  return { a, b, path, connectS, deliverS };
}

/**
 * Runs `f` on every item, at most `width` at a time, results in item order. After a failure no
 * new item starts; the running ones finish (so nothing is spawned into a lab being torn down),
 * then the first failure is thrown.
 */
async function inParallel<T, R>(
  items: T[],
  width: number,
  f: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await f(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const done = await Promise.allSettled(Array.from({ length: width }, worker));
  const bad = done.find((d) => d.status === "rejected");
  if (bad) throw bad.reason;
  return out;
}

function report(rows: Row[]): string {
  const cell = (a: NatType, b: NatType) => {
    const r = rows.find((x) => x.a === a && x.b === b);
    if (!r) throw new Error(`Cannot write the matrix: no run of ${a} (in the room) <-> ${b}`);
    return `${r.path} ${r.connectS.toFixed(1)} s`;
  };
  const lines = [
    `| A (in the room) \\ B (joins) | ${TYPES.join(" | ")} |`,
    `| --- | ${TYPES.map(() => "---").join(" | ")} |`,
    ...TYPES.map((a) => `| **${a}** | ${TYPES.map((b) => cell(a, b)).join(" | ")} |`),
  ];
  return lines.join("\n");
}

labTest("matrix: every pair of NAT types connects, direct where hole punching allows", async () => {
  // Both orientations of each mixed pair: who is in the room first changes who punches first.
  // The pairs that relay wait out the punch window, so they start first.
  const pairs = TYPES.flatMap((a) => TYPES.map((b): [NatType, NatType] => [a, b]))
    .sort(([a, b], [c, d]) =>
      Number(RELAY_PAIRS.has(`${c}|${d}`)) - Number(RELAY_PAIRS.has(`${a}|${b}`))
    );
  // Open sites outnumber the lab's default pool for their (routed) LANs: number them from
  // 198.18.0.0/15, the benchmarking range.
  let opens = 0;
  const site = (name: string, nat: NatType): SiteSpec =>
    nat === "open" ? { name, nat, subnet: `198.18.${opens++}.0/24` } : { name, nat };
  const sites = pairs.flatMap(([a, b], i) => [site(`s${i}a`, a), site(`s${i}b`, b)]);
  let rows: Row[] = [];
  const t0 = Date.now();
  await withLab(sites, async (lab, h, _server, addr) => {
    rows = await inParallel(pairs, MATRIX_PARALLEL, ([a, b], i) => runPair(lab, h, addr, a, b, i));
  });
  const totalS = (Date.now() - t0) / 1000;
  assert.equal(rows.length, TYPES.length ** 2, "a run for every ordered pair");
  const table = report(rows);
  const detail = TYPES.flatMap((a) => TYPES.map((b) => rows.find((r) => r.a === a && r.b === b)!))
    .map((r) =>
      `| ${r.a} | ${r.b} | ${r.path} | ${r.connectS.toFixed(2)} | ${r.deliverS.toFixed(2)} |`
    ).join("\n");
  const doc =
    `# Which NATs does p2pchat get through?\n\nGenerated by \`tests/natlab/traversal_test.ts\` ` +
    `from a real run behind Linux kernel NAT (nftables), ${
      new Date().toISOString().slice(0, 10)
    }.\n` +
    `Row: the NAT of peer A, registered in the room first; column: the NAT of peer B, which joins ` +
    `it, so each mixed pair is run in both orientations. Cell: the path the two peers ended up ` +
    `with and seconds from starting B's process to both peers' first path event. Up to ` +
    `${MATRIX_PARALLEL} pairs run at once on a ${navigator.hardwareConcurrency}-core machine ` +
    `(${pairs.length} pairs, ${totalS.toFixed(0)} s for the whole run including building the ` +
    `lab), so the times include other peers' start-ups and key agreements competing for the ` +
    `cores; on loopback a single pair's path is up about 0.2 s after the second process ` +
    `starts.\n\n` +
    `${table}\n\n| A (in the room) | B (joins) | path | s to path | s to first delivered message |\n` +
    `| --- | --- | --- | --- | --- |\n${detail}\n`;
  console.log("\n" + doc);
  if (Deno.env.get("P2PCHAT_WRITE_MATRIX") === "1") {
    await Deno.writeTextFile(new URL("../../docs/NAT_MATRIX.md", import.meta.url), doc);
    // The README carries the table itself, between markers, from the same run.
    const readme = new URL("../../README.md", import.meta.url);
    const text = await Deno.readTextFile(readme);
    const re = /(<!-- matrix:start -->\n)[\s\S]*?(<!-- matrix:end -->)/;
    assert.match(text, re, "README.md has the matrix markers");
    await Deno.writeTextFile(readme, text.replace(re, (_, a, b) => `${a}${table}\n${b}`));
  }
  for (const r of rows) {
    const want = RELAY_PAIRS.has(`${r.a}|${r.b}`) ? "relay" : "direct";
    assert.equal(r.path, want, `${r.a} <-> ${r.b}: expected ${want}, got ${r.path}\n${table}`);
  }
});

labTest(
  "same LAN: two peers behind one NAT without hairpinning find each other over `lan`",
  async () => {
    await withLab(
      [{ name: "a", nat: "port-restricted", hosts: 2, hairpin: false }],
      async (lab, h, _s, addr) => {
        const p1 = h.peer("one", addr, [], wrap(lab, "a1"));
        const p2 = h.peer("two", addr, [], wrap(lab, "a2"));
        const e = await p1.waitFor(isType("path", { peer: "two" }), 20000);
        assert.equal(e.path, "lan");
        const local = ((await p2.waitFor(isType("ready"))).local as string[])[0];
        assert.equal(e.addr, local, "the path is two's LAN address");
        assert.ok(local?.startsWith(`${lab.hosts.a2!.addr}:`));
        await p1.write("over the lan");
        await p2.waitFor(isType("message", { text: "over the lan" }));
      },
    );
  },
);

labTest(
  "look-alike LANs: same private subnet and address on two sites is never taken for a path",
  async () => {
    const sites: SiteSpec[] = [
      { name: "c", nat: "full-cone", subnet: "192.168.1.0/24" },
      { name: "d", nat: "full-cone", subnet: "192.168.1.0/24" },
      { name: "e", nat: "port-restricted", subnet: "192.168.1.0/24" },
      { name: "f", nat: "symmetric", subnet: "192.168.1.0/24" },
    ];
    await withLab(sites, async (lab, h, _s, addr) => {
      assert.equal(lab.hosts.c1!.addr, lab.hosts.d1!.addr, "the lab gives both the same address");
      // Same local port too, so the private candidates are exactly identical.
      const c = h.peer("c", addr, ["--room", "x", "--port", "40000"], wrap(lab, "c1"));
      const d = h.peer("d", addr, ["--room", "x", "--port", "40000"], wrap(lab, "d1"));
      const e = h.peer("e", addr, ["--room", "y", "--port", "40000"], wrap(lab, "e1"));
      const f = h.peer("f", addr, ["--room", "y", "--port", "40000"], wrap(lab, "f1"));
      const cd = await c.waitFor(isType("path", { peer: "d" }), 20000);
      assert.equal(cd.path, "direct");
      assert.ok((cd.addr as string).startsWith("203.0.113."), `public address, got ${cd.addr}`);
      const ef = await e.waitFor(isType("path", { peer: "f" }), 20000);
      assert.equal(ef.path, "relay");
      await c.write("to d");
      await d.waitFor(isType("message", { text: "to d" }));
      await f.write("to e");
      await e.waitFor(isType("message", { text: "to e" }));
      for (const p of [c, d, e, f]) {
        assert.equal(count(p, (x) => x.type === "path" && x.path === "lan"), 0);
      }
    });
  },
);

labTest(
  "keepalive: 20 s NAT mapping timeout, 60 s of silence, still direct without re-handshake",
  async () => {
    const sites: SiteSpec[] = [
      { name: "a", nat: "port-restricted", udpTimeoutSec: 20 },
      { name: "b", nat: "restricted", udpTimeoutSec: 20 },
    ];
    await withLab(sites, async (lab, h, server, addr) => {
      const a = h.peer("a", addr, [], wrap(lab, "a1"));
      const b = h.peer("b", addr, [], wrap(lab, "b1"));
      assert.equal((await a.waitFor(isType("path", { peer: "b" }), 20000)).path, "direct");
      await b.waitFor(isType("path", { peer: "a" }), 20000);
      await new Promise((r) => setTimeout(r, 60_000));
      await a.write("after a minute");
      await b.waitFor(isType("message", { text: "after a minute" }), 10000);
      await a.waitFor(isType("delivered", { to: "b" }), 10000);
      assert.equal(count(a, isType("path")), 1, "no path change on a: " + JSON.stringify(a.events));
      assert.equal(count(b, isType("path")), 1, "no path change on b");
      await a.write("/peers");
      const list = (await a.waitFor(isType("peers"))).peers as { path: string }[];
      assert.equal(list[0]?.path, "direct");
      assert.equal(
        server.stderr.some((l) => /left/.test(l)),
        false,
        "nobody timed out at the server",
      );
    });
  },
);

labTest("loss: 20% loss on both public links, every message arrives exactly once", async () => {
  const sites: SiteSpec[] = [
    { name: "a", nat: "full-cone", lossPct: 20 },
    { name: "b", nat: "port-restricted", lossPct: 20 },
  ];
  await withLab(sites, async (lab, h, _s, addr) => {
    const a = h.peer("a", addr, [], wrap(lab, "a1"));
    const b = h.peer("b", addr, [], wrap(lab, "b1"));
    await a.waitFor(isType("path", { peer: "b" }), 30000);
    await b.waitFor(isType("path", { peer: "a" }), 30000);
    const N = 30;
    for (let i = 0; i < N; i++) await a.write(`m${i} ${"x".repeat(i * 300)}`);
    await b.write("y".repeat(16 * 1024));
    for (let i = 0; i < N; i++) {
      await b.waitFor(isType("message", { text: `m${i} ${"x".repeat(i * 300)}` }), 60000);
    }
    await a.waitFor((e) => e.type === "message" && e.text === "y".repeat(16 * 1024), 60000);
    await new Promise((r) => setTimeout(r, 2000));
    const got = b.events.filter((e) => e.type === "message").map((e) =>
      (e.text as string).split(" ")[0]
    );
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => `m${i}`), "exactly once, in order");
    assert.equal(count(a, isType("undelivered")), 0);
  });
});

labTest("server gone: two direct peers keep chatting after the server stops", async () => {
  await withLab(
    [{ name: "a", nat: "full-cone" }, { name: "b", nat: "restricted" }],
    async (lab, h, server, addr) => {
      const a = h.peer("a", addr, [], wrap(lab, "a1"));
      const b = h.peer("b", addr, [], wrap(lab, "b1"));
      assert.equal((await a.waitFor(isType("path", { peer: "b" }), 20000)).path, "direct");
      await b.waitFor(isType("path", { peer: "a" }), 20000);
      server.kill("SIGKILL");
      await server.status;
      for (let i = 0; i < 3; i++) {
        await a.write(`a${i}`);
        await b.write(`b${i}`);
        await b.waitFor(isType("message", { text: `a${i}` }), 10000);
        await a.waitFor(isType("message", { text: `b${i}` }), 10000);
        await new Promise((r) => setTimeout(r, 1000));
      }
    },
  );
});

/**
 * Port prediction, on and off. Plain symmetric <-> port-restricted must relay (see the matrix);
 * with sequential port allocation the probes to the predicted ports (public port + 1..N) get
 * through. With `--predict-ports 0` the same pair must relay: the negative control that shows
 * the direct path really comes from prediction.
 */
const PREDICTION = [
  { predict: 4, want: "direct" },
  { predict: 0, want: "relay" },
] as const;

labTest(
  "port prediction: a sequential symmetric NAT gets a direct path to a port-restricted one, " +
    "and relays with --predict-ports 0",
  async () => {
    const sites: SiteSpec[] = PREDICTION.flatMap((_, i) => [
      { name: `p${i}a`, nat: "symmetric-seq" },
      { name: `p${i}b`, nat: "port-restricted" },
    ]);
    await withLab(sites, async (lab, h, _s, addr) => {
      await Promise.all(PREDICTION.map(async ({ predict, want }, i) => {
        const what = `--predict-ports ${predict}`;
        const args = ["--room", `p${i}`, "--predict-ports", String(predict)];
        const a = h.peer("a", addr, args, wrap(lab, `p${i}a1`));
        const b = h.peer("b", addr, args, wrap(lab, `p${i}b1`));
        const ready = await a.waitFor(isType("ready", { name: "a" }), 15000, `${what}: a ready`);
        const path = await b.waitFor(isType("path", { peer: "a" }), 30000, `${what}: b's path`);
        await a.write(`predicted ${predict}`);
        await b.waitFor(isType("message", { from: "a", text: `predicted ${predict}` }));
        await a.waitFor(isType("delivered", { to: "b" }), 15000, `${what}: delivery report`);
        const direct = (p: Proc) => count(p, isType("path", { path: "direct" }));
        if (want === "relay") {
          assert.equal(path.path, "relay", `${what}: b's first path`);
          assert.equal(direct(a) + direct(b), 0, `${what}: no direct path without prediction`);
          return;
        }
        assert.equal(path.path, "direct", `${what}: b's path`);
        const [pubHost, pubPort] = String(ready.public).split(":");
        const [host, port] = String(path.addr).split(":");
        assert.equal(host, pubHost);
        // Not the mapping the server saw: a new one, found by prediction.
        const d = Number(port) - Number(pubPort);
        assert.ok(d >= 1 && d <= predict, `${what}: path port ${port}, server saw ${pubPort}`);
      }));
    });
  },
);
