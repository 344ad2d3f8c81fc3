/** Addresses as users type them (--server) and as the codecs write them. */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Addr,
  addrKey,
  formatAddr,
  ipFromBytes,
  ipv4Bytes,
  ipv6Bytes,
  parseHostPort,
  sameAddr,
} from "../../lib/wire/addr.ts";

const DEFAULT_PORT = 8848;

const accepted: { text: string; want: Addr; defaultPort?: number }[] = [
  { text: "192.0.2.1:5", want: { host: "192.0.2.1", port: 5 } },
  { text: "0.0.0.0:1", want: { host: "0.0.0.0", port: 1 } },
  { text: "255.255.255.255:65535", want: { host: "255.255.255.255", port: 65535 } },
  { text: "10.0.0.1", defaultPort: DEFAULT_PORT, want: { host: "10.0.0.1", port: 8848 } },
  { text: "10.0.0.1:9", defaultPort: DEFAULT_PORT, want: { host: "10.0.0.1", port: 9 } },
  { text: "example.com:9000", want: { host: "example.com", port: 9000 } },
  { text: "chat-1.example.org.:80", want: { host: "chat-1.example.org.", port: 80 } },
  { text: "localhost", defaultPort: DEFAULT_PORT, want: { host: "localhost", port: 8848 } },
  { text: "[::1]:5", want: { host: "::1", port: 5 } },
  { text: "[::1]", defaultPort: DEFAULT_PORT, want: { host: "::1", port: 8848 } },
  { text: "[2001:db8::1]:443", want: { host: "2001:db8::1", port: 443 } },
  { text: "[::ffff:192.0.2.1]:5", want: { host: "::ffff:192.0.2.1", port: 5 } },
];

for (const c of accepted) {
  Deno.test(`addr: parseHostPort accepts ${JSON.stringify(c.text)}`, () => {
    assert.deepEqual(parseHostPort(c.text, c.defaultPort), { ok: true, value: c.want });
  });
}

const refused: { text: string; reason: RegExp; defaultPort?: number }[] = [
  { text: "192.0.2.1", reason: /^a port is required \(HOST:PORT\)$/ },
  { text: "[::1]", reason: /^a port is required/ },
  { text: "192.0.2.1:0", reason: /^"0" is not a port \(1-65535\)$/ },
  { text: "192.0.2.1:65536", reason: /^"65536" is not a port/ },
  { text: "192.0.2.1:", reason: /^"" is not a port/, defaultPort: DEFAULT_PORT },
  { text: "192.0.2.1:http", reason: /^"http" is not a port/ },
  { text: "192.0.2.1:-1", reason: /^"-1" is not a port/ },
  { text: "192.0.2.1: 5", reason: /^" 5" is not a port/ },
  { text: "[::1]:0", reason: /^"0" is not a port/ },
  { text: "256.0.0.1:5", reason: /^"256\.0\.0\.1" is not an IPv4 address$/ },
  { text: "192.0.2:5", reason: /^"192\.0\.2" is not an IPv4 address$/ },
  { text: "192.0.2.1.7:5", reason: /^"192\.0\.2\.1\.7" is not an IPv4 address$/ },
  { text: "3221225985:5", reason: /is not an IPv4 address/ },
  // The OS resolver reads "010" as octal 8, so this would reach 127.0.0.8, not 127.0.0.10.
  { text: "127.0.0.010:5", reason: /^"127\.0\.0\.010" is not an IPv4 address/ },
  { text: "010.0.0.1:5", reason: /is not an IPv4 address/ },
  { text: ":5", reason: /^"" is not a host name or address$/ },
  { text: "", reason: /^"" is not a host name or address$/, defaultPort: DEFAULT_PORT },
  { text: "-host:5", reason: /^"-host" is not a host name or address$/ },
  { text: "under_score:5", reason: /is not a host name or address/ },
  { text: "two words:5", reason: /is not a host name or address/ },
  { text: `${"a".repeat(254)}:5`, reason: /is not a host name or address/ },
  { text: "[]:5", reason: /is not a host name or address/ },
  // IPv6 must be bracketed, or "::1:5" would be ambiguous.
  { text: "::1:5", reason: /^write IPv6 addresses as \[ADDR\]:PORT$/ },
  { text: "2001:db8::1", reason: /^write IPv6 addresses as \[ADDR\]:PORT$/ },
  { text: "[::1]5", reason: /^write IPv6 addresses as \[ADDR\]:PORT$/ },
  { text: "[192.0.2.1]:5", reason: /^"192\.0\.2\.1" is not an IPv6 address$/ },
  { text: "[fe80::1%eth0]:5", reason: /^"fe80::1%eth0" is not an IPv6 address$/ },
  { text: "[1::2::3]:5", reason: /is not an IPv6 address/ },
  { text: "[example.com]:5", reason: /is not an IPv6 address/ },
];

for (const c of refused) {
  Deno.test(`addr: parseHostPort refuses ${JSON.stringify(c.text)}`, () => {
    const r = parseHostPort(c.text, c.defaultPort);
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.reason, c.reason);
  });
}

Deno.test("addr: formatAddr brackets IPv6 only", () => {
  assert.equal(formatAddr({ host: "192.0.2.1", port: 5 }), "192.0.2.1:5");
  assert.equal(formatAddr({ host: "example.com", port: 80 }), "example.com:80");
  assert.equal(formatAddr({ host: "::1", port: 5 }), "[::1]:5");
  assert.equal(formatAddr({ host: "2001:db8::1", port: 65535 }), "[2001:db8::1]:65535");
});

Deno.test("addr: formatting what was typed with a port gives the same text back", () => {
  for (const c of accepted.filter((c) => c.defaultPort === undefined)) {
    const r = parseHostPort(c.text);
    assert.ok(r.ok, c.text);
    assert.equal(formatAddr(r.value), c.text);
  }
});

const port = fc.integer({ min: 1, max: 65535 });

Deno.test("addr: any IPv4 or IPv6 address survives format then parse (property)", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
      ),
      port,
      (ip, p) => {
        const a = { host: ipFromBytes(ip), port: p };
        assert.deepEqual(parseHostPort(formatAddr(a)), { ok: true, value: a });
        assert.deepEqual(ip.length === 4 ? ipv4Bytes(a.host) : ipv6Bytes(a.host), ip);
      },
    ),
  );
});

Deno.test("addr: parseHostPort never throws (property)", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 60 }), fc.option(port, { nil: undefined }), (s, p) => {
      const r = parseHostPort(s, p);
      if (r.ok) assert.ok(r.value.port >= 1 && r.value.port <= 65535);
      else assert.equal(typeof r.reason, "string");
    }),
  );
});

const v4: { text: string; want: number[] | null }[] = [
  { text: "192.0.2.1", want: [192, 0, 2, 1] },
  { text: "0.0.0.0", want: [0, 0, 0, 0] },
  { text: "255.255.255.255", want: [255, 255, 255, 255] },
  { text: "255.255.255.256", want: null },
  { text: "1.2.3", want: null },
  { text: "1.2.3.4.5", want: null },
  { text: "1.2.3.1000", want: null },
  { text: " 1.2.3.4", want: null },
  { text: "::1", want: null },
  { text: "", want: null },
];

for (const c of v4) {
  Deno.test(`addr: ipv4Bytes ${JSON.stringify(c.text)}`, () => {
    const got = ipv4Bytes(c.text);
    assert.deepEqual(got && [...got], c.want);
  });
}

const zero16 = new Array(16).fill(0);
const v6: { text: string; want: number[] | null }[] = [
  { text: "::", want: zero16 },
  { text: "::1", want: [...zero16.slice(1), 1] },
  { text: "1::", want: [0, 1, ...zero16.slice(2)] },
  {
    text: "2001:db8::ff00:42:8329",
    want: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0xff, 0x00, 0x00, 0x42, 0x83, 0x29],
  },
  { text: "2001:DB8::1", want: [0x20, 0x01, 0x0d, 0xb8, ...zero16.slice(4, 15), 1] },
  { text: "1:2:3:4:5:6:7:8", want: [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8] },
  { text: "::ffff:192.0.2.1", want: [...zero16.slice(0, 10), 0xff, 0xff, 192, 0, 2, 1] },
  { text: "1:2:3:4:5:6:192.0.2.1", want: [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 192, 0, 2, 1] },
  { text: "1:2:3:4:5:6:7:8:9", want: null },
  { text: "1:2:3:4:5:6:7", want: null },
  { text: "1:2:3:4:5:6:7:8::", want: null },
  { text: "1::2::3", want: null },
  { text: ":::", want: null },
  { text: ":1:2:3:4:5:6:7", want: null },
  { text: "1:2:3:4:5:6:7:", want: null },
  { text: "12345::", want: null },
  { text: "::g", want: null },
  { text: "::ffff:192.0.2.256", want: null },
  { text: "fe80::1%eth0", want: null },
  { text: "192.0.2.1", want: null },
  { text: "", want: null },
];

for (const c of v6) {
  Deno.test(`addr: ipv6Bytes ${JSON.stringify(c.text)}`, () => {
    const got = ipv6Bytes(c.text);
    assert.deepEqual(got && [...got], c.want);
  });
}

// RFC 5952 section 4: lower case, no leading zeros, "::" for the longest run of two or more
// zero groups (the first one on a tie).
const canonical: { text: string; want: string }[] = [
  { text: "2001:0db8:0000:0000:0000:0000:0000:0001", want: "2001:db8::1" },
  { text: "2001:DB8::1", want: "2001:db8::1" },
  { text: "2001:db8:0:1:1:1:1:1", want: "2001:db8:0:1:1:1:1:1" },
  { text: "2001:db8:0:0:1:0:0:1", want: "2001:db8::1:0:0:1" },
  { text: "1:0:0:2:0:0:0:3", want: "1:0:0:2::3" },
  { text: "0:0:0:0:0:0:0:0", want: "::" },
  { text: "0:0:0:0:0:0:0:1", want: "::1" },
  { text: "1:0:0:0:0:0:0:0", want: "1::" },
];

for (const c of canonical) {
  Deno.test(`addr: ipFromBytes writes ${c.text} as ${c.want}`, () => {
    assert.equal(ipFromBytes(ipv6Bytes(c.text)!), c.want);
  });
}

Deno.test("addr: ipFromBytes writes 4 bytes as dotted decimal", () => {
  assert.equal(ipFromBytes(Uint8Array.of(192, 0, 2, 1)), "192.0.2.1");
  assert.equal(ipFromBytes(Uint8Array.of(0, 0, 0, 0)), "0.0.0.0");
});

const a = { host: "192.0.2.1", port: 4000 };
const keyCases: { name: string; x: Addr; y: Addr; same: boolean }[] = [
  { name: "equal copies", x: a, y: { ...a }, same: true },
  { name: "other port", x: a, y: { ...a, port: 4001 }, same: false },
  { name: "other host", x: a, y: { ...a, host: "192.0.2.2" }, same: false },
  {
    name: "digits moved between host and port",
    x: { host: "192.0.2.1", port: 45 },
    y: { host: "192.0.2.14", port: 5 },
    same: false,
  },
  { name: "IPv6 equal", x: { host: "::1", port: 5 }, y: { host: "::1", port: 5 }, same: true },
  {
    name: "IPv6 vs IPv4-looking host",
    x: { host: "::1", port: 5 },
    y: { host: "1", port: 5 },
    same: false,
  },
];

for (const c of keyCases) {
  Deno.test(`addr: sameAddr and addrKey agree: ${c.name}`, () => {
    assert.equal(sameAddr(c.x, c.y), c.same);
    assert.equal(sameAddr(c.y, c.x), c.same);
    assert.equal(addrKey(c.x) === addrKey(c.y), c.same);
  });
}

Deno.test("addr: addrKey is the printed address, so maps keyed by it log readably", () => {
  const seen = new Map<string, number>();
  for (const x of [a, { ...a }, { ...a, port: 4001 }, a]) {
    seen.set(addrKey(x), (seen.get(addrKey(x)) ?? 0) + 1);
  }
  assert.deepEqual([...seen], [["192.0.2.1:4000", 3], ["192.0.2.1:4001", 1]]);
  assert.equal(addrKey({ host: "::1", port: 5 }), "[::1]:5");
});
