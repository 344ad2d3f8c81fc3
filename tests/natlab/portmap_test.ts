/**
 * Port mapping against a real home router: miniupnpd (nftables backend) speaking UPnP IGD v2
 * and v1, NAT-PMP and PCP, in the small lab of _upnp.ts. A PortMapper runs in the LAN host
 * (the agent in _portmap_agent.ts), one protocol at a time; a host outside then sends to the
 * mapped address. A fake gateway checks that broken answers only ever give "no mapping".
 */
import assert from "node:assert/strict";
import { unsupported } from "./lab.ts";
import { labTests, missingTool } from "./_labtest.ts";
import {
  type GatewayLab,
  LAN,
  listedMappings,
  namespacesOf,
  PORTMAP_TOOLS,
  PortmapAgent,
  rootDesc,
  upGatewayLab,
  WAN,
} from "./_upnp.ts";
import { FAKE_MODES, type FakeMode } from "./_fake_gateway.ts";

const labTest = labTests(unsupported() ?? missingTool(PORTMAP_TOOLS), "port mapping lab tests");

const FAKE = new URL("./_fake_gateway.ts", import.meta.url).pathname;

async function withLab(fn: (lab: GatewayLab) => Promise<void>): Promise<void> {
  const lab = await upGatewayLab();
  try {
    await fn(lab);
  } finally {
    await lab.down();
  }
  assert.deepEqual(await namespacesOf(lab.prefix), [], "every namespace is gone");
}

interface Wire {
  protocol: string;
  external: { host: string; port: number };
  internalPort: number;
  leaseSec: number;
}

/** Sends from the outside host to host:port and waits for `agent` to receive it. */
async function reachesFromOutside(lab: GatewayLab, agent: PortmapAgent, ext: Wire["external"]) {
  const text = `hello ${crypto.randomUUID()}`;
  const sender = PortmapAgent.start(lab, "out", ["send", ext.host, String(ext.port), text]);
  await sender.proc.done;
  await agent.proc.until(
    () => agent.events.some((e) => e.ev === "recv" && e.text === text),
    `a datagram from outside to ${ext.host}:${ext.port}`,
    5000,
  );
  const got = agent.events.find((e) => e.ev === "recv" && e.text === text)!;
  assert.equal(String(got.from).split(":")[0], WAN.outside, "the sender's own address is seen");
}

labTest("the lab router answers upnpc and natpmpc itself", async () => {
  await withLab(async (lab) => {
    const daemon = await lab.miniupnpd();
    const s = await lab.exec("in", ["upnpc", "-u", rootDesc(daemon), "-s"]);
    assert.match(s.stdout, new RegExp(`ExternalIPAddress = ${WAN.router.replace(/\./g, "\\.")}`));
    const n = await lab.exec("in", ["natpmpc", "-g", LAN.gateway]);
    assert.match(n.stdout, new RegExp(`Public IP address : ${WAN.router.replace(/\./g, "\\.")}`));
    // And a mapping made by upnpc works end to end, so the router's nftables are sound.
    const a = await lab.exec("in", [
      "upnpc",
      "-u",
      rootDesc(daemon),
      "-a",
      LAN.host,
      "41000",
      "41000",
      "UDP",
      "60",
    ]);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.deepEqual(await listedMappings(lab, daemon), [`41000->${LAN.host}:41000`]);
  });
});

const PROTOCOL_CASES: { name: string; protocol: string; igdV1?: boolean; logs?: RegExp }[] = [
  { name: "PCP", protocol: "pcp" },
  { name: "NAT-PMP", protocol: "natpmp" },
  { name: "UPnP IGD v2", protocol: "upnp", logs: /WANIPConnection:2/ },
  { name: "UPnP IGD v1", protocol: "upnp", igdV1: true, logs: /WANIPConnection:1 at/ },
];

for (const c of PROTOCOL_CASES) {
  labTest(`${c.name}: maps the port, outside traffic arrives, stop() deletes it`, async () => {
    await withLab(async (lab) => {
      const daemon = await lab.miniupnpd({ igdV1: c.igdV1 });
      const port = 40_000 + Math.floor(Math.random() * 1000);
      const agent = PortmapAgent.start(lab, "in", ["map", String(port), "--protocols", c.protocol]);
      const result = await agent.event("result");
      const m = result.mapping as Wire | null;
      assert.ok(m, `no mapping; agent log:\n${agent.logs().join("\n")}\n${agent.proc.err}`);
      assert.equal(m.protocol, c.protocol);
      assert.deepEqual(m.external, { host: WAN.router, port }, "miniupnpd keeps a free port");
      assert.equal(m.internalPort, port);
      assert.ok(m.leaseSec > 0 && m.leaseSec <= 3600, `lease ${m.leaseSec}`);
      assert.ok(Number(result.ms) < 1000, `mapping took ${result.ms} ms`);
      if (c.logs) assert.ok(agent.logs().some((l) => c.logs!.test(l)), agent.logs().join("\n"));
      assert.deepEqual(await listedMappings(lab, daemon), [`${port}->${LAN.host}:${port}`]);
      await reachesFromOutside(lab, agent, m.external);
      const stopped = await agent.stop();
      assert.ok(Number(stopped.ms) < 1000, `stop took ${stopped.ms} ms`);
      assert.equal((await agent.proc.done).code, 0);
      assert.deepEqual(await listedMappings(lab, daemon), [], "the mapping is gone after stop()");
      console.log(`  ${c.name}: mapped in ${result.ms} ms, deleted in ${stopped.ms} ms`);
    });
  });
}

labTest("all protocols at once: exactly one mapping, PCP preferred, deleted on stop", async () => {
  await withLab(async (lab) => {
    const daemon = await lab.miniupnpd();
    // With -A the agent reads the default gateway from /proc/net/route instead of guessing.
    const agent = PortmapAgent.start(lab, "in", ["map", "40999"], true);
    const m = (await agent.event("result")).mapping as Wire | null;
    assert.equal(m?.protocol, "pcp", agent.logs().join("\n"));
    assert.deepEqual(await listedMappings(lab, daemon), [`40999->${LAN.host}:40999`]);
    await agent.stop();
    assert.deepEqual(await listedMappings(lab, daemon), []);
  });
});

labTest("every protocol renews a short lease at half-time; without renewal it ends", async () => {
  await withLab(async (lab) => {
    const daemon = await lab.miniupnpd();
    const start = (protocol: string, port: number, minRenewMs: number) =>
      PortmapAgent.start(lab, "in", [
        "map",
        String(port),
        "--protocols",
        protocol,
        "--lease",
        "3",
        "--min-renew-ms",
        String(minRenewMs),
        // Six agents start at once on a loaded machine: more than the default 250 ms for the
        // gateway's first answer, so a slow start-up is not taken for "no gateway".
        "--timeout",
        "2000",
      ]);
    // Renewed at 1.5 s, 3 s and 4.5 s; the controls' first renewal would come long after.
    const runs = ["pcp", "natpmp", "upnp"].map((protocol, i) => ({
      protocol,
      renewed: start(protocol, 40_980 + i, 500),
      control: start(protocol, 40_990 + i, 600_000),
    }));
    const mapped = await Promise.all(runs.map(async (r) => {
      const m = (await r.renewed.event("result")).mapping as Wire | null;
      const c = (await r.control.event("result")).mapping as Wire | null;
      assert.equal(m?.leaseSec, 3, `${r.protocol}: ${r.renewed.logs().join("\n")}`);
      assert.equal(c?.leaseSec, 3, `${r.protocol} control`);
      return m!;
    }));
    assert.equal((await listedMappings(lab, daemon)).length, 6);
    await new Promise((r) => setTimeout(r, 4500));
    assert.deepEqual(
      (await listedMappings(lab, daemon)).sort(),
      mapped.map((m) => `${m.external.port}->${LAN.host}:${m.internalPort}`).sort(),
      "the renewed mappings are still there, the controls expired",
    );
    for (const [i, r] of runs.entries()) {
      await reachesFromOutside(lab, r.renewed, mapped[i]!.external);
      assert.ok(!r.renewed.events.some((e) => e.ev === "change"), "renewing is quiet");
      await r.renewed.stop();
      await r.control.stop();
    }
    assert.deepEqual(await listedMappings(lab, daemon), []);
  });
});

labTest(
  "no gateway: a host without routes, and a router without a daemon, give null fast",
  async () => {
    await withLab(async (lab) => {
      // With a 5 s timeout, so that "fast" is told from "waited" by a margin no load can
      // close (no timed bound near the real figures: these machines are noisy).
      const bare = PortmapAgent.start(lab, "bare", ["map", "40997", "--timeout", "5000"]);
      const r1 = await bare.event("result");
      assert.equal(r1.mapping, null);
      assert.ok(Number(r1.ms) < 2500, `no routes: ${r1.ms} ms, as if the timeout was waited out`);
      await bare.stop();
      // The router is there but runs no daemon: every protocol waits out its timeout, all in
      // parallel, so once and not once per protocol.
      const lan = PortmapAgent.start(lab, "in", ["map", "40996", "--timeout", "2000"]);
      const r2 = await lan.event("result");
      assert.equal(r2.mapping, null);
      assert.ok(Number(r2.ms) < 5000, `no daemon took ${r2.ms} ms: the probes ran one by one`);
      await lan.stop();
      assert.equal((await lan.proc.done).code, 0);
    });
  },
);

labTest("malformed PCP, NAT-PMP, SSDP, XML and SOAP answers give null, never a crash", async () => {
  await withLab(async (lab) => {
    for (const mode of Object.keys(FAKE_MODES) as FakeMode[]) {
      const fake = lab.spawn("gw", [
        Deno.execPath(),
        "run",
        "--quiet",
        "--no-config",
        "--allow-net",
        "--unstable-net",
        FAKE,
        mode,
        LAN.gateway,
      ]);
      await fake.until(() => fake.out.includes('"ready"'), `fake gateway (${mode})`);
      const agent = PortmapAgent.start(lab, "in", ["map", "40995"]);
      const r = await agent.event("result", 15_000);
      const why = `mode ${mode}: ${FAKE_MODES[mode]}\n${
        agent.logs().join("\n")
      }\n${agent.proc.err}`;
      assert.equal(r.mapping, null, why);
      assert.ok(Number(r.ms) < 5000, `mode ${mode} took ${r.ms} ms`);
      await agent.stop();
      assert.equal((await agent.proc.done).code, 0, why);
      // The fake really was asked, on UDP and (for modes that get that far) over HTTP.
      assert.match(fake.out, /"what":"pcp"/, mode);
      assert.match(fake.out, /"what":"natpmp"/, mode);
      assert.match(fake.out, /"what":"ssdp"/, mode);
      if (["lies", "errors", "junkxml", "huge", "silent"].includes(mode)) {
        assert.match(fake.out, /"what":"http-get"/, mode);
      }
      if (mode === "lies") assert.doesNotMatch(fake.out, /http-post/, "no SOAP to a foreign host");
      if (mode === "errors") assert.match(fake.out, /"what":"http-post"/, mode);
      fake.kill("SIGKILL");
      await fake.done;
    }
  });
});
