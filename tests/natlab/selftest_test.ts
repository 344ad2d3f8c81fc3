/**
 * Real-namespace tests of the NAT lab. Needs root, ip, nft and sysctl; otherwise every test
 * here is reported as ignored with the reason in its name (or failed, for a missing program
 * while P2PCHAT_REQUIRE_LAB=1, as CI runs it).
 */
import assert from "node:assert/strict";
import { Probe } from "./_probe_client.ts";
import { cleanupStale, listLabs, netemSupported, newPrefix, unsupported, up } from "./lab.ts";
import type { Lab } from "./lab.ts";
import { labTests, missingTool, toolsRequired } from "./_labtest.ts";
import { formatChecks, observe, selftest, startServerProbe } from "./selftest.ts";

const labTest = labTests(unsupported(), "natlab tests", { sanitize: true });

async function assertGone(prefix: string) {
  const left = (await listLabs()).get(prefix) ?? [];
  assert.deepEqual(left, [], `namespaces of ${prefix} left behind`);
}

labTest("every NAT type has exactly its claimed mapping and filtering", async () => {
  await cleanupStale();
  const { checks, ms } = await selftest();
  const report = formatChecks(checks).join("\n");
  console.log(`natlab selftest: ${checks.length} checks in ${ms} ms`);
  assert.ok(checks.length >= 30, report);
  assert.ok(checks.every((c) => c.ok), `NAT behaviour differs from its claim:\n${report}`);
});

labTest("shared subnets, double NAT, hairpin, public hosts, UDP timeout and loss", async () => {
  const lab = await up({
    sites: [
      { name: "sa", nat: "port-restricted", subnet: "192.168.1.0/24" },
      { name: "sb", nat: "port-restricted", subnet: "192.168.1.0/24" },
      { name: "dn", nat: "port-restricted", behind: "sa" },
      { name: "ha", nat: "full-cone", hosts: 2, hairpin: true },
      { name: "hb", nat: "full-cone", hosts: 2 },
      { name: "to", nat: "port-restricted", udpTimeoutSec: 2 },
      { name: "ls", nat: "port-restricted" },
    ],
    publicHosts: 1,
  });
  const probes: Probe[] = [];
  try {
    const start = async (node: string) => {
      const p = await Probe.start(lab, node);
      probes.push(p);
      await p.bind("u", 40000);
      return p;
    };
    const server = await startServerProbe(lab);
    probes.push(server);
    const [s1] = lab.server.addrs;
    const names = ["sa1", "sb1", "dn1", "ha1", "ha2", "hb1", "hb2", "to1", "ls1", "pub1"];
    const p = Object.fromEntries(
      await Promise.all(names.map(async (n) => [n, await start(n)] as const)),
    ) as Record<string, Probe>;
    const seen = (node: string, tag: string) =>
      observe(p[node]!, "u", server, "s1a", s1, 3478, `${tag}:${node}`);

    // The UDP timeout check sleeps, so start it first and let the rest run meanwhile.
    const timeout = (async () => {
      const sysctl = await lab.exec("router:to", [
        "sysctl",
        "-n",
        "net.netfilter.nf_conntrack_udp_timeout",
      ]);
      assert.equal(sysctl.stdout.trim(), "2");
      const m = await seen("to1", "t0");
      assert.ok(m, "to1 reaches the server");
      await server.send("s1a", m.from, m.fromPort, "t-fresh");
      assert.ok(await p.to1!.recv("u", "t-fresh", 1500), "reply within the timeout arrives");
      await new Promise((r) => setTimeout(r, 3500));
      await server.send("s1a", m.from, m.fromPort, "t-stale");
      assert.equal(await p.to1!.recv("u", "t-stale", 1000), undefined, "mapping expired after 2 s");
    })();
    timeout.catch(() => {}); // awaited below; do not let an early failure elsewhere orphan it

    // Two sites share 192.168.1.0/24 and the same host address; each gets its own mapping.
    assert.equal(lab.hosts.sa1!.addr, "192.168.1.10");
    assert.equal(lab.hosts.sb1!.addr, "192.168.1.10");
    const [ma, mb] = [await seen("sa1", "shared"), await seen("sb1", "shared")];
    assert.equal(ma?.from, lab.routers.sa!.publicAddr);
    assert.equal(mb?.from, lab.routers.sb!.publicAddr);
    assert.notEqual(ma?.from, mb?.from);

    // Double NAT: dn's router sits on sa's LAN; the server sees sa's public address.
    assert.equal(lab.routers.dn!.publicAddr, "192.168.1.2");
    assert.equal((await seen("dn1", "double"))?.from, lab.routers.sa!.publicAddr);

    // Public host: no translation.
    const mp = await seen("pub1", "public");
    assert.equal(`${mp?.from}:${mp?.fromPort}`, `${lab.hosts.pub1!.addr}:40000`);

    // Hairpin: ha2 reaches ha1 through ha's public mapping and sees ha's public address.
    const mh = await seen("ha1", "hairpin");
    assert.ok(mh);
    await p.ha2!.send("u", mh.from, mh.fromPort, "hp-on");
    const hp = await p.ha1!.recv("u", "hp-on", 1500);
    assert.equal(
      hp?.from,
      lab.routers.ha!.publicAddr,
      "hairpinned datagram arrives from the public address",
    );
    const mnh = await seen("hb1", "hairpin");
    assert.ok(mnh);
    await p.hb2!.send("u", mnh.from, mnh.fromPort, "hp-off");
    assert.equal(await p.hb1!.recv("u", "hp-off", 1000), undefined, "no hairpin when it is off");

    // Loss: 100% drops everything, 0% restores, 50% drops some but not all.
    await lab.setLoss("ls", 100);
    assert.equal(await seen("ls1", "loss100"), undefined, "100% loss drops");
    await lab.setLoss("ls", 0);
    assert.ok(await seen("ls1", "loss0"), "0% loss delivers");
    await lab.setLoss("ls", 50);
    for (let i = 0; i < 40; i++) await p.ls1!.send("u", s1, 3478, `half:${i}`);
    await new Promise((r) => setTimeout(r, 500));
    const arrived = server.events.filter((e) =>
      e.ev === "recv" && e.data.startsWith("half:")
    ).length;
    assert.ok(arrived >= 5 && arrived <= 35, `50% loss let ${arrived}/40 through`);

    await timeout;
  } finally {
    await Promise.all(probes.map((x) => x.close()));
    await lab.down();
  }
  await assertGone(lab.prefix);
});

labTest("up() cleans up after itself when it fails", async () => {
  // Our own prefixes: other lab tests may be building and tearing down labs meanwhile.
  const mine = [newPrefix(), newPrefix()];
  await assert.rejects(
    up({ sites: [{ name: "x", nat: "full-cone", behind: "nowhere" }] }, { prefix: mine[0] }),
    /Cannot plan NAT lab: site "x" is behind unknown site "nowhere"/,
  );
  // tc is a program (iproute2): missing, it fails where tools are required. A kernel without
  // netem is the machine's limit: then only the refusal of delayMs is checked, loudly.
  const noTc = missingTool({ tc: "iproute2" });
  if (noTc && toolsRequired()) throw new Error(`Cannot test delayMs: ${noTc.reason}`);
  if (!(await netemSupported())) {
    console.warn(
      `\n*** natlab: delayMs SKIPPED: ${noTc?.reason ?? "this kernel has no tc netem qdisc"}; ` +
        "only its refusal is checked ***\n",
    );
    await assert.rejects(
      up({ sites: [{ name: "d", nat: "open" }, { name: "e", nat: "symmetric", delayMs: 20 }] }, {
        prefix: mine[1],
      }),
      /Cannot add 20 ms delay to site "e": this kernel has no tc netem/,
    );
  } else {
    const lab: Lab = await up({ sites: [{ name: "d", nat: "open", delayMs: 20 }] });
    const probes: Probe[] = [];
    try {
      const server = await startServerProbe(lab);
      probes.push(server);
      const host = await Probe.start(lab, "d1");
      probes.push(host);
      await host.bind("u", 40000);
      const t0 = performance.now();
      assert.ok(await observe(host, "u", server, "s1a", lab.server.addrs[0], 3478, "delayed"));
      assert.ok(performance.now() - t0 >= 20, "one-way delay of at least 20 ms");
    } finally {
      await Promise.all(probes.map((x) => x.close()));
      await lab.down();
    }
  }
  const after = [...(await listLabs()).keys()].filter((p) => mine.includes(p));
  assert.deepEqual(after, [], "a failed up() left namespaces behind");
});
