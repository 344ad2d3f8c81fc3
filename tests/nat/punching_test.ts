import assert from "node:assert/strict";
import type { NatReport } from "../../lib/nat/discovery.ts";
import { forPunching } from "../../lib/nat/verdict.ts";

const base: NatReport = {
  udp: true,
  public: { host: "203.0.113.10", port: 40000 },
  natted: true,
  mapping: "unknown",
  filtering: "unknown",
  allocation: "preserving",
  hairpin: "unknown",
  rttMs: 2,
  server: { primary: { host: "198.51.100.2", port: 8848 }, other: null, secondPort: 8849 },
  notes: [],
};

const cases: [string, NatReport | null, string][] = [
  ["no report", null, "unknown"],
  [
    "decided mappings pass through",
    { ...base, mapping: "address-and-port-dependent" },
    "address-and-port-dependent",
  ],
  ["decided EI", { ...base, mapping: "endpoint-independent" }, "endpoint-independent"],
  ["one-address server, port unchanged towards its second port", base, "endpoint-independent"],
  [
    "no second port: nothing to go by",
    { ...base, server: { ...base.server, secondPort: null } },
    "unknown",
  ],
  ["a full RFC 5780 server that still says unknown", {
    ...base,
    server: { ...base.server, other: { host: "198.51.100.3", port: 8849 } },
  }, "unknown"],
  ["no answer", { ...base, public: null }, "unknown"],
];
for (const [name, r, want] of cases) {
  Deno.test(`forPunching: ${name}`, () => assert.equal(forPunching(r), want));
}
