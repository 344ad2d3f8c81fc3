/**
 * The port-mapping cell of the NAT matrix, behind real kernel NAT: symmetric <-> symmetric
 * relays (each side's mapping towards the other is a random port nobody has seen), unless one
 * router maps a port for its host (miniupnpd: PCP, NAT-PMP or UPnP). The peer tells the other the
 * mapped address (NAT_INFO), the other reaches it, and the pair goes direct; leaving deletes the
 * mapping on the router. The control is the same pair with `join --no-portmap` on the mapping
 * side: it stays relayed. Topology: _portmap_lab.ts.
 */
import assert from "node:assert/strict";
import { unsupported } from "./lab.ts";
import { labTests, missingTool, PORT } from "./_labtest.ts";
import { type LabProcess, LAN, listedMappings, namespacesOf, PORTMAP_TOOLS, WAN } from "./_upnp.ts";
import { SERVER_HOST, SITE_B, type TwoSites, upTwoSites } from "./_portmap_lab.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";
import { DEFAULT_PATH_CONFIG } from "../../lib/peer/path.ts";

const labTest = labTests(
  unsupported() ?? missingTool(PORTMAP_TOOLS),
  "port-mapping traversal tests",
);

/** How long the control pair is watched for a direct path: the first punch window, and a margin. */
const RELAY_WATCH_MS = DEFAULT_PATH_CONFIG.ackTimeoutMs + DEFAULT_PATH_CONFIG.punchWindowMs + 3000;
/** What the mapping pair gets to go direct (it takes about a round trip after NAT_INFO). */
const DIRECT_WITHIN_MS = 30_000;

const lastPath = (p: Proc, peer: string) =>
  p.events.filter((e) => e.type === "path" && e.peer === peer).at(-1)?.path as string | undefined;

const seconds = (t0: number) => ((Date.now() - t0) / 1000).toFixed(2);

interface Run {
  sites: TwoSites;
  daemon: LabProcess;
  a: Proc;
  b: Proc;
  /** When b was started. */
  tStart: number;
  /** When both peers knew each other (what most timings count from). */
  t0: number;
}

/**
 * Both sites with miniupnpd on A's router and a server on the public node; peer a joins (with
 * `aArgs`), then b. Everything is torn down after `fn`, even on failure.
 */
async function withPair(aArgs: string[], fn: (r: Run) => Promise<void>): Promise<void> {
  const sites = await upTwoSites();
  const h = new Harness();
  try {
    const daemon = await sites.gateway.miniupnpd();
    const server = h.server(PORT, ["--log-level", "info"], sites.wrap("pub"));
    await server.waitStderr(/listening on/);
    const addr = `${SERVER_HOST}:${PORT}`;
    const a = h.peer("a", addr, ["--log-level", "info", ...aArgs], sites.wrap("a"));
    await a.waitFor(isType("ready", { name: "a" }), 20_000, "a registered");
    const tStart = Date.now();
    const b = h.peer("b", addr, ["--log-level", "info"], sites.wrap("b"));
    await a.waitFor(isType("peer", { name: "b", state: "joined" }), 20_000, "a knows b");
    await b.waitFor(isType("peer", { name: "a", state: "joined" }), 20_000, "b knows a");
    await fn({ sites, daemon, a, b, tStart, t0: Date.now() });
  } finally {
    await h.cleanup();
    await sites.down();
  }
  assert.deepEqual(await namespacesOf(sites.prefix), [], "every namespace is gone");
}

/** A message each way, delivered (whatever the path). */
async function chatBothWays(a: Proc, b: Proc, tag: string): Promise<void> {
  await a.write(`hello b (${tag})`);
  await b.waitFor(isType("message", { from: "a", text: `hello b (${tag})` }), 15_000, "a -> b");
  await b.write(`hello a (${tag})`);
  await a.waitFor(isType("message", { from: "b", text: `hello a (${tag})` }), 15_000, "b -> a");
}

/** Both sides found their NAT symmetric themselves (RFC 5780 against the server). */
async function assertSymmetric(a: Proc, b: Proc): Promise<Record<string, unknown>> {
  const natA = await a.waitFor(isType("nat"), 20_000, "a's NAT report");
  const natB = await b.waitFor(isType("nat"), 20_000, "b's NAT report");
  assert.equal(natA.mapping, "address-and-port-dependent", JSON.stringify(natA));
  assert.equal(natB.mapping, "address-and-port-dependent", JSON.stringify(natB));
  assert.equal(natB.mapped, null, "site B's router maps nothing");
  return natA;
}

labTest(
  "portmap: symmetric <-> symmetric with a mapping router goes direct; /quit deletes the mapping",
  async () => {
    await withPair([], async ({ sites, daemon, a, b, tStart, t0 }) => {
      const pathA = await a.waitFor(
        isType("path", { peer: "b", path: "direct" }),
        DIRECT_WITHIN_MS,
        "a direct",
      );
      const aS = seconds(t0);
      const pathB = await b.waitFor(
        isType("path", { peer: "a", path: "direct" }),
        DIRECT_WITHIN_MS,
        "b direct",
      );
      const bS = seconds(t0);
      const fromStartS = seconds(tStart);
      const natA = await assertSymmetric(a, b);
      const mapped = String(natA.mapped);
      assert.equal(mapped.split(":")[0], WAN.router, `a's mapping is on its router: ${mapped}`);
      assert.ok(
        ["pcp", "natpmp", "upnp"].includes(String(natA.portmap)),
        `portmap protocol: ${natA.portmap}`,
      );
      // The mapped address, not a lucky punch, is what b reached a at.
      assert.equal(pathB.addr, mapped, "b's direct path is a's mapped address");
      assert.equal(String(pathA.addr).split(":")[0], SITE_B.router, "a answers b's router");
      const ready = a.events.find(isType("ready"))!;
      const local = (ready.local as string[]).find((l) => l.startsWith(`${LAN.host}:`));
      assert.ok(local, `a's local addresses: ${JSON.stringify(ready.local)}`);
      assert.deepEqual(
        await listedMappings(sites.gateway, daemon),
        [`${mapped.split(":")[1]}->${local}`],
        "the router lists a's one mapping",
      );
      await chatBothWays(a, b, "direct");
      assert.equal(lastPath(a, "b"), "direct");
      assert.equal(lastPath(b, "a"), "direct");
      await a.write("/quit");
      assert.equal((await a.status).code, 0, a.stderr.join("\n"));
      assert.deepEqual(
        await listedMappings(sites.gateway, daemon),
        [],
        "a's mapping is gone after /quit",
      );
      console.log(
        `portmap: direct ${aS} s (a) / ${bS} s (b) after both knew each other, ` +
          `${fromStartS} s after b started; b -> a at ${mapped} ` +
          `(${natA.portmap}), a -> b at ${pathA.addr}`,
      );
    });
  },
);

labTest("portmap control: the same pair with --no-portmap stays relayed", async () => {
  await withPair(["--no-portmap"], async ({ sites, daemon, a, b, t0 }) => {
    await a.waitFor(isType("path", { peer: "b", path: "relay" }), 15_000, "a relayed");
    const relayS = seconds(t0);
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + RELAY_WATCH_MS - Date.now())));
    const natA = await assertSymmetric(a, b);
    assert.equal(natA.mapped, null, JSON.stringify(natA));
    assert.equal(natA.portmap, null, JSON.stringify(natA));
    assert.deepEqual(await listedMappings(sites.gateway, daemon), [], "nothing was mapped");
    await chatBothWays(a, b, "relay");
    for (const [p, peer] of [[a, "b"], [b, "a"]] as const) {
      assert.equal(
        p.events.some(isType("path", { peer, path: "direct" })),
        false,
        `no direct path to ${peer} in ${RELAY_WATCH_MS} ms`,
      );
      assert.equal(lastPath(p, peer), "relay");
    }
    console.log(
      `portmap control: relay reported after ${relayS} s, still relay after ` +
        `${(RELAY_WATCH_MS / 1000).toFixed(1)} s`,
    );
  });
});
