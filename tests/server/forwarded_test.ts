/**
 * Trusted proxies and X-Forwarded-For: CIDR parsing and matching (IPv4, IPv6, v4-mapped), the
 * entries a header may hold, and the right-most-untrusted rule against spoofed and garbled
 * headers.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  clientAddress,
  formatCidr,
  inCidrs,
  isWideRange,
  MAX_FORWARDED_HOPS,
  parseCidr,
  parseCidrList,
  parseForwardedEntry,
} from "../../lib/server/forwarded.ts";

const cidrs: [string, string | null][] = [
  ["127.0.0.1/32", "127.0.0.1/32"],
  ["127.0.0.1", "127.0.0.1/32"],
  ["10.1.2.3/8", "10.0.0.0/8"], // host bits cleared
  ["0.0.0.0/0", "0.0.0.0/0"],
  ["192.168.1.129/25", "192.168.1.128/25"],
  [" 172.16.0.0/12 ", "172.16.0.0/12"],
  ["::1/128", "::1/128"],
  ["::1", "::1/128"],
  ["2001:DB8:1::ff/48", "2001:db8:1::/48"],
  ["fd00::/8", "fd00::/8"],
  ["::/0", "::/0"],
  ["::ffff:10.0.0.0/104", "10.0.0.0/8"], // v4-mapped: the IPv4 range
  ["::ffff:192.0.2.1", "192.0.2.1/32"],
  ["127.0.0.1/33", null],
  ["::1/129", null],
  ["::ffff:10.0.0.0/95", null],
  ["10.0.0.0/", null],
  ["10.0.0.0/-1", null],
  ["10.0.0.0/8/8", null],
  ["10.0.0/8", null],
  ["256.0.0.1", null],
  ["localhost", null],
  ["fe80::1%eth0/64", null],
  ["", null],
];
for (const [text, want] of cidrs) {
  Deno.test(`forwarded: parseCidr ${JSON.stringify(text)} -> ${want ?? "error"}`, () => {
    const r = parseCidr(text);
    assert.equal(r.ok ? formatCidr(r.value) : null, want, r.ok ? "" : r.reason);
  });
}

Deno.test("forwarded: parseCidrList takes commas and spaces; one bad entry fails it", () => {
  const r = parseCidrList("127.0.0.1/32, ::1/128 ,10.0.0.0/8");
  assert.ok(r.ok);
  assert.deepEqual(r.value.map(formatCidr), ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
  const bad = parseCidrList("127.0.0.1/32,,::1");
  assert.ok(!bad.ok);
  assert.match(bad.reason, /is not an IP address/);
});

/** The ranges of a list that must parse. */
function list(text: string) {
  const r = parseCidrList(text);
  if (!r.ok) throw new Error(r.reason);
  return r.value;
}

const ranges = list("10.0.0.0/8,192.0.2.7,2001:db8:aa::/48,::1");
const member: [string, boolean][] = [
  ["10.0.0.1", true],
  ["10.255.255.255", true],
  ["11.0.0.1", false],
  ["192.0.2.7", true],
  ["192.0.2.8", false],
  ["::ffff:10.9.9.9", true], // v4-mapped is IPv4
  ["::ffff:11.9.9.9", false],
  ["2001:db8:aa:1::5", true],
  ["2001:db8:ab::5", false],
  ["::1", true],
  ["::2", false],
  ["::a00:1", false], // IPv4-compatible form is IPv6, not 10.0.0.1
  ["not-an-ip", false],
];
for (const [host, want] of member) {
  Deno.test(`forwarded: ${host} is ${want ? "" : "not "}in the trusted ranges`, () => {
    assert.equal(inCidrs(host, ranges), want);
  });
}

const entries: [string, { host: string; port: number | null } | null][] = [
  ["203.0.113.9", { host: "203.0.113.9", port: null }],
  ["  203.0.113.9\t", { host: "203.0.113.9", port: null }],
  ["203.0.113.9:4711", { host: "203.0.113.9", port: 4711 }],
  ["2001:db8::9", { host: "2001:db8::9", port: null }],
  ["2001:DB8:0:0::9", { host: "2001:db8::9", port: null }],
  ["[2001:db8::9]", { host: "2001:db8::9", port: null }],
  ["[2001:db8::9]:4711", { host: "2001:db8::9", port: 4711 }],
  ["::ffff:203.0.113.9", { host: "203.0.113.9", port: null }],
  ["[::ffff:203.0.113.9]:80", { host: "203.0.113.9", port: 80 }],
  ["203.0.113.9:0", null],
  ["203.0.113.9:65536", null],
  ["203.0.113.9:", null],
  ["[203.0.113.9]", null],
  ["[2001:db8::9", null],
  ["2001:db8::9]:80", null],
  ["fe80::1%eth0", null],
  ["unknown", null],
  ["_hidden", null],
  ["example.org", null],
  ["", null],
  ["1.2.3.4 5.6.7.8", null],
];
for (const [text, want] of entries) {
  Deno.test(`forwarded: entry ${JSON.stringify(text)} -> ${JSON.stringify(want)}`, () => {
    assert.deepEqual(parseForwardedEntry(text), want);
  });
}

const proxy = list("127.0.0.1/32,::1/128,10.0.0.0/8");
const clients: {
  name: string;
  peer: string;
  xff: string | null;
  want: [string, number, string];
}[] = [
  {
    name: "untrusted peer: the header is ignored",
    peer: "198.51.100.1",
    xff: "203.0.113.9",
    want: ["198.51.100.1", 5000, "peer"],
  },
  {
    name: "trusted peer, one entry",
    peer: "127.0.0.1",
    xff: "203.0.113.9",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "a spoofed left-most entry is passed over",
    peer: "127.0.0.1",
    xff: "1.1.1.1, 203.0.113.9",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "a spoofed trusted-looking entry left of the client changes nothing",
    peer: "127.0.0.1",
    xff: "10.0.0.5,203.0.113.9",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "a chain of trusted proxies is skipped from the right",
    peer: "127.0.0.1",
    xff: "6.6.6.6, 203.0.113.9, 10.0.0.2,10.0.0.1",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "garbage left of the client is never read",
    peer: "127.0.0.1",
    xff: "<script>, unknown,, 203.0.113.9",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "every entry trusted: the left-most",
    peer: "127.0.0.1",
    xff: "10.0.0.9, 127.0.0.1",
    want: ["10.0.0.9", 5000, "forwarded"],
  },
  {
    name: "the entry's port, when it has one",
    peer: "127.0.0.1",
    xff: "203.0.113.9:4711",
    want: ["203.0.113.9", 4711, "forwarded"],
  },
  {
    name: "IPv6 client, IPv6 proxy",
    peer: "::1",
    xff: "2001:db8::77",
    want: ["2001:db8::77", 5000, "forwarded"],
  },
  {
    name: "bracketed IPv6 with a port",
    peer: "::1",
    xff: "[2001:db8::77]:1234",
    want: ["2001:db8::77", 1234, "forwarded"],
  },
  {
    name: "v4-mapped client becomes IPv4",
    peer: "127.0.0.1",
    xff: "::ffff:203.0.113.9",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "a trusted peer given as v4-mapped (plainHost not applied) is still trusted",
    peer: "::ffff:127.0.0.1",
    xff: "203.0.113.9",
    want: ["203.0.113.9", 5000, "forwarded"],
  },
  {
    name: "trusted peer, no header",
    peer: "127.0.0.1",
    xff: null,
    want: ["127.0.0.1", 5000, "missing"],
  },
  {
    name: "trusted peer, empty header",
    peer: "127.0.0.1",
    xff: "  ",
    want: ["127.0.0.1", 5000, "missing"],
  },
  {
    name: "the right-most entry is garbage",
    peer: "127.0.0.1",
    xff: "203.0.113.9, unknown",
    want: ["127.0.0.1", 5000, "malformed"],
  },
  {
    name: "a trailing comma",
    peer: "127.0.0.1",
    xff: "203.0.113.9,",
    want: ["127.0.0.1", 5000, "malformed"],
  },
  {
    name: "garbage behind a trusted entry",
    peer: "127.0.0.1",
    xff: "example.org, 10.0.0.1",
    want: ["127.0.0.1", 5000, "malformed"],
  },
  {
    name: "a hostname",
    peer: "127.0.0.1",
    xff: "client.example.org",
    want: ["127.0.0.1", 5000, "malformed"],
  },
  {
    name: "an out-of-range port",
    peer: "127.0.0.1",
    xff: "203.0.113.9:99999",
    want: ["127.0.0.1", 5000, "malformed"],
  },
];
for (const c of clients) {
  Deno.test(`forwarded: client address: ${c.name}`, () => {
    const r = clientAddress({ host: c.peer, port: 5000 }, c.xff, proxy);
    assert.deepEqual([r.host, r.port, r.source], c.want);
  });
}

Deno.test("forwarded: no trusted proxies: every header is ignored", () => {
  const r = clientAddress({ host: "127.0.0.1", port: 5000 }, "203.0.113.9", []);
  assert.deepEqual(r, { host: "127.0.0.1", port: 5000, source: "peer" });
});

/**
 * The expected answer, worked out the plain way (the whole header split, every entry parsed,
 * then read from the right): what clientAddress must agree with on headers of up to
 * MAX_FORWARDED_HOPS entries.
 */
function expected(xff: string, peerHost: string): [string, number, string] {
  if (xff.trim() === "") return [peerHost, 5000, "missing"];
  const parsed = xff.split(",").map(parseForwardedEntry);
  for (let i = parsed.length - 1; i >= 0; i--) {
    const e = parsed[i];
    if (!e) return [peerHost, 5000, "malformed"];
    if (i === 0 || !inCidrs(e.host, proxy)) return [e.host, e.port ?? 5000, "forwarded"];
  }
  throw new Error("unreachable");
}

Deno.test("forwarded: any header gives the right-most untrusted entry (or the left-most), never a throw", () => {
  const entry = fc.oneof(
    fc.ipV4(),
    fc.ipV6(),
    fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 70000 })).map(([h, p]) => `${h}:${p}`),
    fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `[${h}]:${p}`),
    // Trusted ones, so chains of proxies come up often.
    fc.constantFrom("10.0.0.1", "10.9.8.7:80", "127.0.0.1", "::1", "[::1]:9", " 10.1.1.1 "),
    fc.constantFrom("unknown", "", " ", "example.org", "[10.0.0.1]"),
  );
  const anyText = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.array(entry, { minLength: 1, maxLength: MAX_FORWARDED_HOPS }).map((a) => a.join(",")),
    fc.array(entry, { minLength: 1, maxLength: 8 }).map((a) => a.join(", ")),
  );
  fc.assert(
    fc.property(anyText, (xff) => {
      const r = clientAddress({ host: "127.0.0.1", port: 5000 }, xff, proxy);
      assert.deepEqual([r.host, r.port, r.source], expected(xff, "127.0.0.1"), xff);
    }),
    { numRuns: 2000 },
  );
});

Deno.test(`forwarded: more than ${MAX_FORWARDED_HOPS} trusted entries is malformed; ${MAX_FORWARDED_HOPS} is read`, () => {
  const chain = (n: number) => ["203.0.113.9", ...Array(n).fill("10.0.0.1")].join(", ");
  const at = (xff: string) => {
    const r = clientAddress({ host: "127.0.0.1", port: 5000 }, xff, proxy);
    return [r.host, r.source];
  };
  // The client plus 31 proxies: 32 entries, all read.
  assert.deepEqual(at(chain(MAX_FORWARDED_HOPS - 1)), ["203.0.113.9", "forwarded"]);
  // The client plus 32 proxies: the 32 read are all trusted, the client is never reached.
  assert.deepEqual(at(chain(MAX_FORWARDED_HOPS)), ["127.0.0.1", "malformed"]);
  // 32 trusted entries and nothing left of them: the left-most, as with a shorter chain.
  assert.deepEqual(
    at(Array(MAX_FORWARDED_HOPS).fill("10.0.0.1").join(",")),
    ["10.0.0.1", "forwarded"],
  );
});

Deno.test("forwarded: a 400 KB header is read from its end only", () => {
  const cases: [string, string, [string, string]][] = [
    ["400 KB of spoofed entries, then the client", "6.6.6.6,".repeat(50_000) + "203.0.113.9", [
      "203.0.113.9",
      "forwarded",
    ]],
    ["400 KB of trusted entries", "10.0.0.1,".repeat(45_000) + "10.0.0.2", [
      "127.0.0.1",
      "malformed",
    ]],
    ["one 400 KB entry", "1".repeat(400_000), ["127.0.0.1", "malformed"]],
    ["400 KB of spaces before the client", " ".repeat(400_000) + "203.0.113.9", [
      "127.0.0.1",
      "malformed",
    ]],
    ["a client after 400 KB of spaces and a comma", " ".repeat(400_000) + ",203.0.113.9", [
      "203.0.113.9",
      "forwarded",
    ]],
  ];
  for (const [name, xff, want] of cases) {
    const t0 = performance.now();
    let r = clientAddress({ host: "127.0.0.1", port: 5000 }, xff, proxy);
    for (let i = 0; i < 99; i++) r = clientAddress({ host: "127.0.0.1", port: 5000 }, xff, proxy);
    const ms = (performance.now() - t0) / 100;
    assert.deepEqual([r.host, r.source], want, name);
    // Reading all of it (split, parse) took 80 ms for the trusted one; the end only, microseconds.
    assert.ok(ms < 2, `${name}: ${ms.toFixed(3)} ms per header`);
  }
});

const wide: [string, boolean][] = [
  ["0.0.0.0/0", true],
  ["10.0.0.0/8", true],
  ["192.168.0.0/23", true],
  ["192.168.1.0/24", false],
  ["127.0.0.1/32", false],
  ["::/0", true],
  ["fd00::/8", true],
  ["2001:db8::/63", true],
  ["2001:db8::/64", false],
  ["::1/128", false],
  ["::ffff:10.0.0.0/104", true], // the IPv4 /8
  ["::ffff:192.0.2.0/120", false], // the IPv4 /24
];
for (const [text, want] of wide) {
  Deno.test(`forwarded: ${text} is ${want ? "" : "not "}a wide range`, () => {
    assert.equal(isWideRange(list(text)[0]!), want);
  });
}
