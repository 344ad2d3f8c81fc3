/** Which of the host's addresses are announced as locals, in what order, how many. */
import assert from "node:assert/strict";
import { MAX_LOCALS_V6, pickLocals } from "../../lib/net/interfaces.ts";
import { MAX_LOCALS } from "../../lib/wire/codec.ts";

const v4 = (address: string) => ({ family: "IPv4", address });
const v6 = (address: string) => ({ family: "IPv6", address });
const hosts = (ifs: { family: string; address: string }[], flags?: Map<string, number>) =>
  pickLocals(ifs, 7000, flags).map((a) => a.host);

const cases: { name: string; ifs: { family: string; address: string }[]; want: string[] }[] = [
  {
    name: "IPv4 first (private before other), then global IPv6, then ULA",
    ifs: [v6("fd00:1::5"), v4("203.0.113.5"), v6("2001:db8:1::10"), v4("10.0.1.10")],
    want: ["10.0.1.10", "203.0.113.5", "2001:db8:1::10", "fd00:1::5"],
  },
  {
    name: "link-local, loopback, multicast and v4-mapped IPv6 are never announced",
    ifs: [v4("127.0.0.1"), v6("::1"), v6("fe80::1"), v6("ff02::1"), v6("::ffff:10.0.0.1")],
    want: ["127.0.0.1"],
  },
  {
    name: "IPv4 link-local is skipped; loopback only when there is nothing else",
    ifs: [v4("169.254.3.3"), v4("127.0.0.1"), v6("2001:db8::2")],
    want: ["2001:db8::2"],
  },
  {
    name: `at most ${MAX_LOCALS_V6} IPv6 (global first), IPv4 fills the rest of ${MAX_LOCALS}`,
    ifs: [
      v6("fd00::1"),
      v6("2001:db8:1::1"),
      v6("2001:db8:2::1"),
      v6("2001:db8:3::1"),
      v4("10.0.0.1"),
      v4("10.0.0.2"),
      v4("10.0.0.3"),
      v4("10.0.0.4"),
    ],
    want: ["10.0.0.1", "10.0.0.2", "2001:db8:1::1", "2001:db8:2::1"],
  },
  {
    name: "without IPv6, all slots for IPv4",
    ifs: [v4("10.0.0.1"), v4("10.0.0.2"), v4("10.0.0.3"), v4("10.0.0.4"), v4("10.0.0.5")],
    want: ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
  },
  {
    name: "an address listed twice (two interfaces) is announced once",
    ifs: [v4("10.0.0.1"), v4("10.0.0.1"), v6("2001:db8::1"), v6("2001:db8::1")],
    want: ["10.0.0.1", "2001:db8::1"],
  },
];
for (const c of cases) {
  Deno.test(`interfaces: ${c.name}`, () => assert.deepEqual(hosts(c.ifs), c.want));
}

Deno.test("interfaces: temporary, deprecated and tentative IPv6 (if_inet6 flags) are skipped", () => {
  const flags = new Map([
    ["20010db8000100000000000000000001", 0x01], // temporary
    ["20010db8000200000000000000000001", 0x20], // deprecated
    ["20010db8000300000000000000000001", 0x40], // tentative
    ["20010db8000400000000000000000001", 0x80], // permanent: fine
  ]);
  const ifs = [1, 2, 3, 4].map((n) => v6(`2001:db8:${n}::1`));
  assert.deepEqual(hosts(ifs, flags), ["2001:db8:4::1"]);
});

Deno.test("interfaces: every local carries the socket's port", () => {
  const l = pickLocals([v4("10.0.0.1"), v6("2001:db8::1")], 7000);
  assert.deepEqual(l.map((a) => a.port), [7000, 7000]);
});
