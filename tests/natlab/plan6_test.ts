/** Pure tests of the lab's IPv6 planning and firewall ruleset; no root needed. */
import assert from "node:assert/strict";
import { firewall6Ruleset } from "./_nft.ts";
import { planLab } from "./_plan.ts";

const P = "nl42abc";

Deno.test("planLab v6: IPv6 sites get 2001:db8:N::/64 routed by the internet, server dual stack", () => {
  const plan = planLab({
    sites: [
      { name: "a", nat: "symmetric", ipv6: true },
      { name: "b", nat: "port-restricted" },
      { name: "c", nat: "port-restricted", ipv6: "only" },
    ],
    publicHosts: 1,
  }, P);
  assert.deepEqual(plan.server.addrs6, ["2001:db8:ffff::2", "2001:db8:ffff::3"]);
  assert.deepEqual(plan.hosts.a1, {
    ns: "nl42abc-a1",
    addr: "10.0.1.10",
    addr6: "2001:db8:1::10",
    site: "a",
  });
  assert.deepEqual(plan.hosts.b1, { ns: "nl42abc-b1", addr: "10.0.2.10", site: "b" });
  assert.deepEqual(plan.hosts.c1, {
    ns: "nl42abc-c1",
    addr: "",
    addr6: "2001:db8:3::10",
    site: "c",
  });
  assert.equal(plan.hosts.pub1!.addr6, "2001:db8:ffff::100");
  assert.equal(plan.routers.a!.publicAddr6, "2001:db8:ffff::10");
  assert.equal(plan.routers.b!.publicAddr6, undefined);
  const ns = (node: string) => plan.namespaces.find((p) => p.node === node)!;
  assert.deepEqual(ns("internet").routes, [
    { dst: "2001:db8:1::/64", via: "2001:db8:ffff::10" },
    { dst: "2001:db8:3::/64", via: "2001:db8:ffff::12" },
  ]);
  assert.deepEqual(ns("c1").uplink, {
    ifname: "eth0",
    addrs: [],
    addrs6: ["2001:db8:3::10/64"],
    gateway6: "2001:db8:3::1",
  });
  const sysctl = (node: string, k: string) => ns(node).sysctls.find(([n]) => n === k)?.[1];
  assert.equal(sysctl("a1", "net.ipv6.conf.all.disable_ipv6"), "0");
  assert.equal(sysctl("a1", "net.ipv6.conf.default.accept_dad"), "0");
  assert.equal(sysctl("b1", "net.ipv6.conf.all.disable_ipv6"), "1", "IPv4-only site stays so");
  assert.equal(sysctl("router:a", "net.ipv6.conf.all.forwarding"), "1");
  assert.equal(sysctl("router:b", "net.ipv6.conf.all.disable_ipv6"), "1");
  assert.equal(ns("router:a").router!.lan6, "2001:db8:1::/64");
});

Deno.test("planLab v6: without ipv6 anywhere, nothing changes", () => {
  const plan = planLab({ sites: [{ name: "a", nat: "symmetric" }], publicHosts: 1 }, P);
  assert.equal(plan.server.addrs6, undefined);
  assert.equal(plan.hosts.a1!.addr6, undefined);
  for (const p of plan.namespaces) {
    assert.equal(p.sysctls.find(([k]) => k === "net.ipv6.conf.all.disable_ipv6")?.[1], "1");
  }
});

Deno.test("planLab v6: refused behind another site, and for values other than true/false/only", () => {
  assert.throws(
    () =>
      planLab({
        sites: [{ name: "a", nat: "symmetric" }, {
          name: "b",
          nat: "open",
          behind: "a",
          ipv6: true,
        }],
      }, P),
    /ipv6 is for top-level sites only/,
  );
  assert.throws(
    // @ts-expect-error: a bad value, as a JSON spec could hold
    () => planLab({ sites: [{ name: "a", nat: "symmetric", ipv6: "yes" }] }, P),
    /ipv6 must be true, false or "only"/,
  );
});

Deno.test("firewall6Ruleset: replies and ICMPv6 errors in, unsolicited IPv6 from wan dropped", () => {
  const r = firewall6Ruleset();
  assert.match(r, /^table inet natlab6 \{/);
  const forward = r.slice(r.indexOf("chain forward"), r.indexOf("chain input"));
  const rules = forward.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("meta"));
  assert.match(rules[0]!, /iifname "wan" ct state established,related accept$/);
  assert.match(rules.at(-1)!, /iifname "wan" drop$/);
  assert.match(r, /nd-neighbor-solicit/, "neighbour discovery on the router itself");
  assert.doesNotMatch(r, /meta nfproto ipv4|table ip /, "IPv4 is left to table ip natlab");
});
