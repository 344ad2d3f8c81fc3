import assert from "node:assert/strict";
import fc from "fast-check";
import {
  defaultGateway,
  guessGateways,
  localAddressFor,
  usableExternal,
} from "../../lib/portmap/route.ts";

const HEAD =
  "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
const row = (iface: string, dst: string, gw: string, flags: string, metric: number, mask: string) =>
  `${iface}\t${dst}\t${gw}\t${flags}\t0\t0\t${metric}\t${mask}\t0\t0\t0\n`;

const cases: { name: string; text: string; want: { iface: string; gateway: string } | null }[] = [
  {
    name: "one default route (little-endian hex)",
    text: HEAD + row("eth0", "00000000", "014DA8C0", "0003", 0, "00000000") +
      row("eth0", "004DA8C0", "00000000", "0001", 0, "00FFFFFF"),
    want: { iface: "eth0", gateway: "192.168.77.1" },
  },
  {
    name: "the lowest metric wins",
    text: HEAD + row("wlan0", "00000000", "0101A8C0", "0003", 600, "00000000") +
      row("eth0", "00000000", "0100000A", "0003", 100, "00000000"),
    want: { iface: "eth0", gateway: "10.0.0.1" },
  },
  {
    name: "a default route without RTF_GATEWAY (point-to-point) is no gateway",
    text: HEAD + row("tun0", "00000000", "00000000", "0001", 0, "00000000"),
    want: null,
  },
  {
    name: "a route that is down is skipped",
    text: HEAD + row("eth0", "00000000", "014DA8C0", "0002", 0, "00000000"),
    want: null,
  },
  { name: "no routes at all", text: HEAD, want: null },
  { name: "empty text", text: "", want: null },
  {
    name: "junk lines are skipped",
    text: HEAD + "garbage\n\tx\ty\n" + row("eth0", "00000000", "ZZZZZZZZ", "0003", 0, "00000000") +
      row("eth1", "00000000", "0102A8C0", "0003", 0, "00000000"),
    want: { iface: "eth1", gateway: "192.168.2.1" },
  },
];
for (const c of cases) {
  Deno.test(`route: ${c.name}`, () => assert.deepEqual(defaultGateway(c.text), c.want));
}

Deno.test("route: random text never throws", () => {
  fc.assert(fc.property(fc.string(), (s) => void defaultGateway(HEAD + s)), { numRuns: 1000 });
});

Deno.test("route: our address is the one on the gateway's subnet", () => {
  const ifaces = [
    { family: "IPv4" as const, address: "127.0.0.1", netmask: "255.0.0.0" },
    { family: "IPv6" as const, address: "fe80::1", netmask: "ffff:ffff:ffff:ffff::" },
    { family: "IPv4" as const, address: "10.9.0.5", netmask: "255.255.0.0" },
    { family: "IPv4" as const, address: "192.168.77.10", netmask: "255.255.255.0" },
  ];
  assert.equal(localAddressFor("192.168.77.1", ifaces), "192.168.77.10");
  assert.equal(localAddressFor("10.9.200.1", ifaces), "10.9.0.5");
  assert.equal(localAddressFor("172.16.0.1", ifaces), null);
  assert.equal(localAddressFor("not-an-ip", ifaces), null);
  // The gateway's own address is never "ours".
  assert.equal(localAddressFor("10.9.0.5", ifaces.slice(2, 3)), null);
});

Deno.test("route: usable external addresses are public", () => {
  for (const ok of ["100.63.0.1", "203.0.113.7", "8.8.4.4", "100.128.0.1", "172.32.0.1"]) {
    assert.equal(usableExternal(ok), true, ok);
  }
  const bad = [
    "0.0.0.0",
    "127.0.0.1",
    "255.255.255.255",
    "10.1.2.3",
    "100.64.0.1",
    "100.127.255.255",
  ];
  bad.push("169.254.1.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "224.0.0.1", "240.0.0.1");
  bad.push("", "1.2.3", "::1");
  for (const b of bad) assert.equal(usableExternal(b), false, b);
});

Deno.test("route: guessed gateways are the first host of each LAN subnet", () => {
  const v4 = (address: string, netmask: string) => ({ family: "IPv4" as const, address, netmask });
  assert.deepEqual(
    guessGateways([
      v4("127.0.0.1", "255.0.0.0"),
      v4("169.254.3.4", "255.255.0.0"),
      v4("192.168.77.10", "255.255.255.0"),
      v4("10.20.30.40", "255.255.0.0"),
      v4("192.168.77.11", "255.255.255.0"), // same subnet: one guess
      v4("172.16.0.1", "255.255.255.0"), // we are the .1 ourselves: no guess
      v4("100.64.0.9", "255.255.255.255"), // a /32: no subnet
      v4("10.1.0.2", "255.255.255.254"), // a /31: no first host
      { family: "IPv6" as const, address: "fe80::1", netmask: "ffff:ffff:ffff:ffff::" },
    ]),
    ["192.168.77.1", "10.20.0.1"],
  );
  const many = Array.from({ length: 6 }, (_, i) => v4(`10.${i}.0.5`, "255.255.255.0"));
  assert.equal(guessGateways(many).length, 3);
  assert.deepEqual(guessGateways([]), []);
});
