/** Pure tests of lab planning, nft ruleset text and CLI parsing; no root needed. */
import assert from "node:assert/strict";
import { lossRuleset, routerRuleset } from "./_nft.ts";
import { nsName, parseNsName, planLab } from "./_plan.ts";
import type { LabSpec, NatType, RouterPlan } from "./_plan.ts";
import { newPrefix, runCli, UsageError } from "./lab.ts";

const P = "nl42abc";

Deno.test("planLab assigns addresses, namespaces and routes", () => {
  const plan = planLab({
    sites: [
      { name: "a", nat: "port-restricted" },
      { name: "b", nat: "open" },
      { name: "c", nat: "full-cone", hosts: 2, behind: "a" },
    ],
    publicHosts: 2,
  }, P);
  assert.deepEqual(plan.server, { ns: "nl42abc-srv", addrs: ["198.51.100.2", "198.51.100.3"] });
  assert.deepEqual(plan.hosts, {
    pub1: { ns: "nl42abc-pub1", addr: "203.0.113.100" },
    pub2: { ns: "nl42abc-pub2", addr: "203.0.113.101" },
    a1: { ns: "nl42abc-a1", addr: "10.0.1.10", site: "a" },
    b1: { ns: "nl42abc-b1", addr: "192.0.2.10", site: "b" },
    c1: { ns: "nl42abc-c1", addr: "10.0.3.10", site: "c" },
    c2: { ns: "nl42abc-c2", addr: "10.0.3.11", site: "c" },
  });
  assert.deepEqual(plan.routers, {
    a: { ns: "nl42abc-r-a", publicAddr: "203.0.113.10" },
    b: { ns: "nl42abc-r-b", publicAddr: "203.0.113.11" },
    c: { ns: "nl42abc-r-c", publicAddr: "10.0.1.2" },
  });
  const inet = plan.namespaces.find((n) => n.node === "internet")!;
  assert.deepEqual(inet.routes, [{ dst: "192.0.2.0/27", via: "203.0.113.11" }]);
  const order = plan.namespaces.map((n) => n.node);
  assert.ok(order.indexOf("router:a") < order.indexOf("router:c"), "parents come first");
  const rc = plan.namespaces.find((n) => n.node === "router:c")!;
  assert.deepEqual(rc.uplink, { ifname: "wan", addrs: ["10.0.1.2/24"], gateway: "10.0.1.1" });
  for (const n of plan.namespaces) {
    for (const l of n.links) assert.ok(l.parentIf.length <= 15 && l.childIf.length <= 15);
  }
});

Deno.test("planLab lets two sites share a subnet and host address", () => {
  const plan = planLab({
    sites: [
      { name: "a", nat: "symmetric", subnet: "192.168.1.0/24" },
      { name: "b", nat: "restricted", subnet: "192.168.1.0/24" },
    ],
  }, P);
  assert.equal(plan.hosts.a1!.addr, "192.168.1.10");
  assert.equal(plan.hosts.b1!.addr, "192.168.1.10");
});

const invalid: [string, LabSpec, RegExp][] = [
  ["bad name", { sites: [{ name: "A-1", nat: "open" }] }, /site name "A-1"/],
  ["duplicate", { sites: [{ name: "a", nat: "open" }, { name: "a", nat: "open" }] }, /used twice/],
  ["unknown nat", { sites: [{ name: "a", nat: "cone" as NatType }] }, /nat "cone" is not one of/],
  ["unknown parent", { sites: [{ name: "a", nat: "open", behind: "z" }] }, /unknown site "z"/],
  ["loop", {
    sites: [{ name: "a", nat: "symmetric", behind: "b" }, {
      name: "b",
      nat: "symmetric",
      behind: "a",
    }],
  }, /loop/],
  [
    "public overlap",
    { sites: [{ name: "a", nat: "symmetric", subnet: "203.0.113.0/24" }] },
    /overlaps 203/,
  ],
  ["open overlap", {
    sites: [{ name: "a", nat: "open", subnet: "10.9.0.0/24" }, {
      name: "b",
      nat: "symmetric",
      subnet: "10.9.0.0/24",
    }],
  }, /open site's subnet/],
  ["nested same subnet", {
    sites: [{ name: "a", nat: "symmetric", subnet: "10.9.0.0/24" }, {
      name: "b",
      nat: "symmetric",
      subnet: "10.9.0.0/24",
      behind: "a",
    }],
  }, /overlaps the LAN of site "a"/],
  ["too many hosts", { sites: [{ name: "a", nat: "symmetric", hosts: 21 }] }, /hosts must be/],
  ["loss", { sites: [{ name: "a", nat: "symmetric", lossPct: 101 }] }, /lossPct/],
  [
    "unaligned",
    { sites: [{ name: "a", nat: "symmetric", subnet: "10.0.0.1/24" }] },
    /host bits set/,
  ],
  [
    "node clash",
    { sites: [{ name: "pub", nat: "symmetric" }], publicHosts: 1 },
    /both called "pub1"/,
  ],
];
for (const [name, spec, re] of invalid) {
  Deno.test(`planLab rejects ${name}`, () => {
    assert.throws(
      () => planLab(spec, P),
      (e: Error) => e.message.startsWith("Cannot plan NAT lab:") && re.test(e.message),
    );
  });
}

Deno.test("namespace names round-trip and prefixes are well formed", () => {
  for (const node of ["internet", "server", "a1", "pub3", "router:abc"]) {
    assert.deepEqual(parseNsName(nsName(P, node)), { prefix: P, node });
  }
  assert.equal(parseNsName("docker-1"), undefined);
  assert.match(newPrefix(), new RegExp(`^nl${Deno.pid}[a-z]{3}$`));
  assert.match(newPrefix(true), /^nl0[a-z]{3}$/);
});

function router(nat: NatType, extra: Partial<RouterPlan> = {}): RouterPlan {
  return {
    site: "a",
    nat,
    publicAddr: "203.0.113.10",
    lanSubnet: "10.0.1.0/24",
    lanAddr: "10.0.1.1",
    hairpin: false,
    lossPct: 0,
    delayMs: 0,
    upstreamNs: "x",
    upstreamIf: "r1",
    ...extra,
  };
}

Deno.test("routerRuleset picks the recipe of each NAT type", () => {
  const inbound = (nat: NatType) =>
    routerRuleset(router(nat)).split("\n").filter((l) => l.includes('iifname "wan" udp dport'));
  assert.equal(routerRuleset(router("open")), "table ip natlab {\n}\n");
  assert.deepEqual(inbound("full-cone"), [
    '    iifname "wan" udp dport @pmap dnat ip to udp dport map @pmap',
  ]);
  assert.deepEqual(inbound("restricted"), [
    '    iifname "wan" udp dport . ip saddr @peers dnat ip to udp dport map @pmap',
  ]);
  assert.deepEqual(inbound("port-restricted"), []);
  assert.match(
    routerRuleset(router("port-restricted")),
    /oifname "wan" snat ip to 203\.0\.113\.10\n/,
  );
  assert.match(routerRuleset(router("symmetric")), /snat ip to 203\.0\.113\.10 fully-random/);
  assert.match(
    routerRuleset(router("symmetric-seq")),
    /numgen inc mod 1000 map \{ 0 : 20000, 1 : 20001,/,
  );
  assert.doesNotMatch(routerRuleset(router("full-cone")), /iifname "lan"/);
  assert.match(
    routerRuleset(router("full-cone", { hairpin: true })),
    /iifname "lan" ip daddr 203\.0\.113\.10/,
  );
  assert.match(routerRuleset(router("full-cone", { udpTimeoutSec: 5 })), /timeout 5s/);
});

Deno.test("lossRuleset replaces the loss table", () => {
  assert.equal(lossRuleset(0), "add table netdev natlab_loss\ndelete table netdev natlab_loss\n");
  assert.match(lossRuleset(30), /numgen random mod 100 < 30 drop/);
  assert.match(lossRuleset(100), /meta protocol ip drop/);
});

const usage: [string, string[], RegExp][] = [
  ["unknown command", ["bogus"], /unknown command/],
  ["unknown up option", ["up", "--bogus"], /unknown option "--bogus"/],
  ["bad prefix", ["down", "notalab"], /not a lab prefix/],
  ["exec without command", ["exec", "a1"], /need NODE and CMD/],
];
for (const [name, args, re] of usage) {
  Deno.test(`CLI rejects ${name} as a usage error`, async () => {
    const io = { out: () => {}, err: () => {} };
    await assert.rejects(
      runCli(args, io),
      (e: Error) => e instanceof UsageError && re.test(e.message),
    );
  });
}

Deno.test("CLI help prints usage", async () => {
  const out: string[] = [];
  assert.equal(await runCli(["help"], { out: (l) => out.push(l), err: () => {} }), 0);
  assert.match(out.join("\n"), /selftest/);
});
