/**
 * IPv6 in the NAT lab: sites with IPv6 behind a stateful firewall (routed from 2001:db8:N::/64,
 * no NAT), a dual-stack server (`serve --host ::`), real `join --json` peers.
 *
 * 1. Two peers whose IPv4 NATs are both symmetric (relayed over IPv4, see traversal_test.ts)
 *    get a direct path over IPv6: their global IPv6 addresses are announced as locals and
 *    probed at once, which opens both firewalls.
 * 2. An IPv4-only peer and an IPv6-only peer chat through the dual-stack server's relay.
 * 3. The firewall is real: unsolicited IPv6 from the internet to a site host is dropped, while
 *    the same host's reply to an internet host it sent to gets through.
 */
import assert from "node:assert/strict";
import { type Lab, type SiteSpec, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { Probe } from "./_probe_client.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";
import { ipv6Bytes } from "../../lib/wire/addr.ts";

const labTest = labTests(unsupported(), "NAT lab IPv6 tests");

/** A lab with a dual-stack server in it (one socket on "::"); torn down after `fn`. */
async function withLab(
  sites: SiteSpec[],
  fn: (lab: Lab, h: Harness) => Promise<void>,
  publicHosts = 0,
) {
  const lab = await up({ sites, publicHosts, ipv6: true });
  const h = new Harness();
  try {
    const server = h.server(PORT, ["--host", "::", "--log-level", "info"], wrap(lab, "server"));
    await server.waitStderr(/listening on \[::\]:/);
    await fn(lab, h);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

/** The host part of "1.2.3.4:5" or "[v6]:5". */
const hostOf = (addr: string) =>
  addr.startsWith("[") ? addr.slice(1, addr.indexOf("]")) : addr.split(":")[0]!;

const pathsOf = (p: Proc, peer: string) =>
  p.events.filter((e) => e.type === "path" && e.peer === peer).map((e) => `${e.path} ${e.addr}`);

labTest("ipv6: two peers behind symmetric IPv4 NATs end `direct` over IPv6", async () => {
  const sites: SiteSpec[] = [
    { name: "a", nat: "symmetric", ipv6: true },
    { name: "b", nat: "symmetric", ipv6: true },
  ];
  await withLab(sites, async (lab, h) => {
    // Over IPv4 to the server: the IPv6 addresses travel only as announced locals.
    const server = `${lab.server.addrs[0]}:${PORT}`;
    const a = h.peer("a", server, [], wrap(lab, "a1"));
    const readyA = await a.waitFor(isType("ready", { name: "a" }), 20000, "a registered");
    assert.ok(
      (readyA.local as string[]).some((l) => hostOf(l) === lab.hosts.a1!.addr6),
      `a announces its IPv6 address: ${readyA.local}`,
    );
    const b = h.peer("b", server, [], wrap(lab, "b1"));
    await a.waitFor(isType("peer", { name: "b", state: "joined" }), 20000, "a knows b");
    const t0 = Date.now();
    const direct = isType("path", { peer: "b", path: "direct" });
    const ea = await a.waitFor(direct, 30000, `a direct to b (paths: ${pathsOf(a, "b")})`);
    const eb = await b.waitFor(isType("path", { peer: "a", path: "direct" }), 30000, "b direct");
    console.log(`ipv6: direct ${(Date.now() - t0) / 1000} s after a knew b; a: ${pathsOf(a, "b")}`);
    for (const [e, want] of [[ea, lab.hosts.b1!.addr6!], [eb, lab.hosts.a1!.addr6!]] as const) {
      const host = hostOf(String(e.addr));
      assert.ok(ipv6Bytes(host), `the path is over IPv6, got ${e.addr}`);
      assert.equal(host, want, "the peer's own global IPv6 address");
    }
    await a.write("a to b over v6");
    await b.waitFor(isType("message", { from: "a", text: "a to b over v6" }), 15000, "a->b");
    await b.write("b to a over v6");
    await a.waitFor(isType("message", { from: "b", text: "b to a over v6" }), 15000, "b->a");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(
      a.events.filter((e) => e.type === "path" && e.peer === "b").at(-1)?.path,
      "direct",
    );
  });
});

labTest("ipv6: an IPv4-only and an IPv6-only peer chat through the dual-stack server", async () => {
  const sites: SiteSpec[] = [
    { name: "f", nat: "port-restricted" }, // IPv4 only: IPv6 off in its namespaces
    { name: "s", nat: "port-restricted", ipv6: "only" }, // no IPv4 at all
  ];
  await withLab(sites, async (lab, h) => {
    assert.equal(lab.hosts.s1!.addr, "", "the IPv6-only host has no IPv4 address");
    const v4 = h.peer("four", `${lab.server.addrs[0]}:${PORT}`, [], wrap(lab, "f1"));
    const v6 = h.peer("six", `[${lab.server.addrs6![0]}]:${PORT}`, [], wrap(lab, "s1"));
    const r4 = await v4.waitFor(isType("ready"), 20000, "four registered");
    const r6 = await v6.waitFor(isType("ready"), 20000, "six registered");
    assert.equal(hostOf(String(r4.public)), lab.routers.f!.publicAddr, "IPv4 seen as IPv4");
    assert.equal(hostOf(String(r6.public)), lab.hosts.s1!.addr6, "IPv6 seen as IPv6, no NAT");
    const p4 = await v4.waitFor(isType("path", { peer: "six" }), 30000, "four's path");
    const p6 = await v6.waitFor(isType("path", { peer: "four" }), 30000, "six's path");
    assert.equal(p4.path, "relay");
    assert.equal(p6.path, "relay");
    await v4.write("four to six");
    await v6.waitFor(isType("message", { from: "four", text: "four to six" }), 15000, "4->6");
    await v6.write("six to four");
    await v4.waitFor(isType("message", { from: "six", text: "six to four" }), 15000, "6->4");
    // `nat` against the server's IPv6 address: a routed IPv6 host has no NAT.
    const nat = h.spawn(
      ["nat", "--json", "--no-portmap", "--server", `[${lab.server.addrs6![0]}]:${PORT}`],
      { wrap: wrap(lab, "s1") },
    );
    assert.equal((await nat.status).code, 0, nat.stderr.join("\n"));
    const report = nat.events[0]!;
    assert.equal(report.udp, true, JSON.stringify(report));
    assert.equal(hostOf(String(report.public)), lab.hosts.s1!.addr6, JSON.stringify(report));
    assert.equal(report.natted, false, JSON.stringify(report));
  });
});

labTest("ipv6: the site firewall drops unsolicited inbound IPv6, lets replies in", async () => {
  const lab = await up({
    sites: [{ name: "a", nat: "port-restricted", ipv6: true }],
    publicHosts: 1,
  });
  const probes: Probe[] = [];
  try {
    const inside = await Probe.start(lab, "a1");
    const outside = await Probe.start(lab, "pub1");
    probes.push(inside, outside);
    await inside.bind("in", 40000, "::");
    await outside.bind("out", 40000, "::");
    const a1 = lab.hosts.a1!.addr6!, pub = lab.hosts.pub1!.addr6!;
    // Unsolicited: the internet host sends first; nothing may arrive.
    await outside.send("out", a1, 40000, "unsolicited");
    assert.equal(
      await inside.recv("in", "unsolicited", 1500),
      undefined,
      "dropped by the firewall",
    );
    // Positive control: a1 sends out, and the answer on that flow comes in.
    await inside.send("in", pub, 40000, "out first");
    const got = await outside.recv("out", "out first", 5000);
    assert.equal(got?.from, a1, "routed, not translated: the host's own address");
    await outside.send("out", a1, 40000, "reply");
    assert.ok(await inside.recv("in", "reply", 5000), "a reply on an open flow arrives");
    // Another port of the same host is still closed.
    await outside.bind("other", 40001, "::");
    await outside.send("other", a1, 40000, "other port");
    assert.equal(await inside.recv("in", "other port", 1500), undefined, "per-flow, not per-host");
  } finally {
    await Promise.allSettled(probes.map((p) => p.close()));
    await lab.down();
  }
});
