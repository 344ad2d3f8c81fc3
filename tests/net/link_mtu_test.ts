/** Which MTU a destination gets: the pure rule, the cached lookup, and this machine's links. */
import assert from "node:assert/strict";
import {
  DEFAULT_MTU,
  type LinkAddr,
  linkMtuFor,
  linkMtuLookup,
  readLinks,
} from "../../lib/net/link_mtu.ts";
import { ioctlMtu } from "../../lib/net/if_mtu.ts";

const link = (name: string, cidr: string, mtu: number | null): LinkAddr => {
  const address = cidr.split("/")[0]!;
  return { name, address, cidr, family: address.includes(":") ? "IPv6" : "IPv4", mtu };
};

const lo = [link("lo", "127.0.0.1/8", 65536), link("lo", "::1/128", 65536)];
const lan = [
  ...lo,
  link("eth0", "192.168.1.10/24", 9000),
  link("eth0", "2001:db8:1::10/64", 9000),
  link("eth0", "fe80::1/64", 9000),
];

const cases: {
  name: string;
  dest: string;
  links: LinkAddr[];
  loopbackMtu?: number | null;
  want: number;
}[] = [
  { name: "loopback IPv4, anywhere in 127/8", dest: "127.3.4.5", links: lan, want: 65536 },
  { name: "loopback IPv6", dest: "::1", links: lan, want: 65536 },
  {
    name: "loopback with its MTU unknown → 65536: it never leaves the machine",
    dest: "127.0.0.1",
    links: lan,
    loopbackMtu: null,
    want: 65536,
  },
  { name: "own IPv4 address goes over loopback", dest: "192.168.1.10", links: lan, want: 65536 },
  { name: "own IPv6 address goes over loopback", dest: "2001:db8:1::10", links: lan, want: 65536 },
  { name: "in-subnet IPv4 gets the jumbo MTU", dest: "192.168.1.77", links: lan, want: 9000 },
  { name: "in-subnet IPv6 gets the jumbo MTU", dest: "2001:db8:1::99", links: lan, want: 9000 },
  { name: "link-local IPv6 subnet counts", dest: "fe80::abcd", links: lan, want: 9000 },
  { name: "zone suffix is dropped", dest: "fe80::abcd%eth0", links: lan, want: 9000 },
  {
    name: "in-subnet with the interface MTU unknown → DEFAULT_MTU",
    dest: "10.0.0.5",
    links: [...lo, link("eth1", "10.0.0.1/24", null)],
    want: DEFAULT_MTU,
  },
  {
    name: "two matching subnets → the smaller MTU",
    dest: "10.1.2.3",
    links: [...lo, link("eth0", "10.1.0.1/16", 9000), link("br0", "10.1.2.1/24", 1450)],
    want: 1450,
  },
  {
    name: "IPv4-mapped IPv6 is IPv4",
    dest: "::ffff:192.168.1.20",
    links: lan,
    want: 9000,
  },
  {
    name: "IPv4-mapped own address goes over loopback",
    dest: "::ffff:192.168.1.10",
    links: lan,
    want: 65536,
  },
  {
    name: "beyond the LAN → DEFAULT_MTU, not the jumbo MTU",
    dest: "8.8.8.8",
    links: lan,
    want: 1500,
  },
  { name: "beyond the LAN, IPv6", dest: "2606:4700::1111", links: lan, want: 1500 },
  {
    name: "beyond the LAN with a 1420 VPN link → 1420",
    dest: "8.8.8.8",
    links: [...lan, link("wg0", "10.8.0.2/32", 1420)],
    want: 1420,
  },
  {
    name: "a smaller IPv4 link does not lower IPv6",
    dest: "2606:4700::1111",
    links: [...lan, link("wg0", "10.8.0.2/32", 1420)],
    want: 1500,
  },
  {
    name: "a link-local-only interface does not lower the beyond case",
    dest: "2606:4700::1111",
    links: [...lan, link("usb0", "fe80::2/64", 1280)],
    want: 1500,
  },
  { name: "no links at all → DEFAULT_MTU", dest: "8.8.8.8", links: [], want: DEFAULT_MTU },
  { name: "garbage dest → DEFAULT_MTU", dest: "not-an-ip", links: lan, want: DEFAULT_MTU },
  { name: "out-of-range IPv4 → DEFAULT_MTU", dest: "192.168.1.300", links: lan, want: 1500 },
  { name: "empty dest → DEFAULT_MTU", dest: "", links: lan, want: DEFAULT_MTU },
  {
    name: "clamped up to 576",
    dest: "10.0.0.5",
    links: [...lo, link("slip0", "10.0.0.1/24", 296)],
    want: 576,
  },
  {
    name: "clamped down to 65536",
    dest: "127.0.0.1",
    links: lo,
    loopbackMtu: 1 << 20,
    want: 65536,
  },
];

for (const c of cases) {
  Deno.test(`link_mtu: ${c.name}`, () => {
    assert.equal(
      linkMtuFor(c.dest, c.links, c.loopbackMtu === undefined ? 65536 : c.loopbackMtu),
      c.want,
    );
  });
}

/** A read that counts its calls and hands out `links`, with a settable clock. */
function fakeHost(links: LinkAddr[]) {
  const host = { reads: 0, now: 1_000, links };
  const read = () => {
    host.reads++;
    return { links: host.links, loopbackMtu: 65536 };
  };
  return { host, lookup: linkMtuLookup({ ttlMs: 30_000, read, clock: () => host.now }) };
}

Deno.test("link_mtu: lookup reads once, then not again before the ttl", () => {
  const { host, lookup } = fakeHost(lan);
  assert.equal(host.reads, 0);
  assert.equal(lookup("192.168.1.77"), 9000);
  host.now += 29_999;
  host.links = lo; // changed, but not yet re-read
  assert.equal(lookup("192.168.1.77"), 9000);
  assert.equal(host.reads, 1);
});

Deno.test("link_mtu: lookup re-reads once the ttl has passed", () => {
  const { host, lookup } = fakeHost(lan);
  lookup("192.168.1.77");
  host.links = lo; // the jumbo interface went away
  host.now += 30_000;
  assert.equal(lookup("192.168.1.77"), 1500);
  assert.equal(host.reads, 2);
});

Deno.test("link_mtu: lookup re-reads when the clock goes back", () => {
  const { host, lookup } = fakeHost(lan);
  lookup("8.8.8.8");
  host.now -= 1;
  lookup("8.8.8.8");
  assert.equal(host.reads, 2);
});

Deno.test("link_mtu: a throwing read gives DEFAULT_MTU and is not retried before the ttl", () => {
  let reads = 0;
  let now = 0;
  const lookup = linkMtuLookup({
    read: () => {
      reads++;
      throw new Error("boom");
    },
    clock: () => now,
  });
  assert.equal(lookup("127.0.0.1"), 65536, "loopback needs no reading");
  assert.equal(lookup("192.168.1.77"), DEFAULT_MTU);
  assert.equal(reads, 1);
  now += 30_000; // the default ttl
  assert.equal(lookup("8.8.8.8"), DEFAULT_MTU);
  assert.equal(reads, 2);
});

Deno.test("link_mtu: a throwing clock gives DEFAULT_MTU", () => {
  const lookup = linkMtuLookup({
    read: () => ({ links: lan, loopbackMtu: 65536 }),
    clock: () => {
      throw new Error("no clock");
    },
  });
  assert.equal(lookup("192.168.1.77"), DEFAULT_MTU);
});

Deno.test({
  name: "link_mtu: on Linux, readLinks reports lo's MTU from /sys/class/net/lo/mtu",
  ignore: Deno.build.os !== "linux",
  fn() {
    const want = Number(Deno.readTextFileSync("/sys/class/net/lo/mtu").trim());
    const { links, loopbackMtu } = readLinks();
    assert.equal(loopbackMtu, want);
    assert.ok(links.some((l) => l.name === "lo" && l.address === "127.0.0.1" && l.mtu === want));
    // And the lookup over the real links sends loopback datagrams by that MTU.
    assert.equal(linkMtuLookup()("127.0.0.1"), Math.min(65536, Math.max(576, want)));
  },
});

Deno.test({
  name: "link_mtu: the kernel's answer through FFI is the MTU /sys shows (lo, and every interface)",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const names = new Set(Deno.networkInterfaces().map((i) => i.name.split(":")[0]!));
    assert.ok(names.has("lo"));
    for (const name of names) {
      const sys = Number(Deno.readTextFileSync(`/sys/class/net/${name}/mtu`).trim());
      assert.equal(ioctlMtu(name), sys, name);
    }
    assert.equal(ioctlMtu("no-such-if0"), null);
    assert.equal(ioctlMtu(""), null);
    assert.equal(ioctlMtu("a-name-far-too-long-for-linux"), null);
  },
});
