/** `p2pchat nat` output, driven in-process with a canned report: text, JSON, failure. */
import assert from "node:assert/strict";
import { formatNat, natJson, runNat } from "../../lib/cli/nat.ts";
import type { NatReport } from "../../lib/nat/discovery.ts";
import { verdict } from "../../lib/nat/verdict.ts";

const REPORT: NatReport = {
  udp: true,
  public: { host: "203.0.113.10", port: 40000 },
  natted: true,
  mapping: "endpoint-independent",
  filtering: "address-and-port-dependent",
  allocation: "preserving",
  hairpin: false,
  rttMs: 12.34,
  server: {
    primary: { host: "198.51.100.2", port: 8848 },
    other: { host: "198.51.100.3", port: 8849 },
    secondPort: 8849,
  },
  notes: [],
};

const NO_PORTMAP = { probed: false, found: [] };

Deno.test("nat --json: the documented keys and terms", () => {
  const j = natJson(REPORT, NO_PORTMAP);
  assert.deepEqual(
    {
      udp: j.udp,
      public: j.public,
      mapping: j.mapping,
      filtering: j.filtering,
      allocation: j.allocation,
      hairpin: j.hairpin,
      portmap: j.portmap,
    },
    {
      udp: true,
      public: "203.0.113.10:40000",
      mapping: "endpoint-independent",
      filtering: "address-and-port-dependent",
      allocation: "preserving",
      hairpin: false,
      portmap: [],
    },
  );
  assert.equal(j.portmapProbed, false);
  assert.equal(j.rttMs, 12.3);
  assert.equal(j.otherAddress, "198.51.100.3:8849");
  assert.equal(typeof j.verdict, "string");
});

Deno.test("nat: the text report, one finding per line and a verdict", () => {
  const text = formatNat(REPORT, NO_PORTMAP);
  const lines = text.trimEnd().split("\n");
  assert.equal(
    lines[0],
    "NAT report from 198.51.100.2:8848 (RFC 5780, other address 198.51.100.3:8849)",
  );
  for (
    const re of [
      /^ {2}UDP +yes$/,
      /^ {2}public +203\.0\.113\.10:40000 \(behind a NAT\)$/,
      /^ {2}mapping +endpoint-independent$/,
      /^ {2}filtering +address-and-port-dependent$/,
      /^ {2}allocation +preserving$/,
      /^ {2}hairpin +no$/,
      /^ {2}port mapping +not probed$/,
      /^ {2}RTT +12\.3 ms$/,
      /^verdict: direct with everyone except peers behind symmetric NATs/,
    ]
  ) assert.ok(lines.some((l) => re.test(l)), `${re} in\n${text}`);
  const probed = formatNat(REPORT, { probed: true, found: ["NAT-PMP", "PCP"] });
  assert.match(probed, /port mapping +NAT-PMP, PCP/);
  assert.match(formatNat(REPORT, { probed: true, found: [] }), /port mapping +none found/);
});

const verdicts: [string, Partial<NatReport>, RegExp][] = [
  ["no UDP", { udp: false }, /no answer over UDP/],
  ["no NAT", { natted: false, filtering: "endpoint-independent" }, /no NAT and no filtering/],
  ["full cone", { filtering: "endpoint-independent" }, /^direct with everyone:/],
  ["restricted", { filtering: "address-dependent" }, /^direct with everyone:/],
  ["port-restricted", {}, /except peers behind symmetric NATs/],
  ["symmetric", { mapping: "address-and-port-dependent", allocation: "random" }, /^symmetric NAT:/],
  [
    "sequential symmetric",
    { mapping: "address-and-port-dependent", allocation: "sequential" },
    /sequential ports/,
  ],
  ["unknown", { mapping: "unknown" }, /mapping unknown/],
];
for (const [what, change, re] of verdicts) {
  Deno.test(`nat verdict: ${what}`, () => assert.match(verdict({ ...REPORT, ...change }), re));
}

Deno.test("nat: no answer prints the JSON, then fails with one Cannot line", async () => {
  const out: string[] = [];
  const silent: NatReport = { ...REPORT, udp: false, public: null, rttMs: null };
  await assert.rejects(
    runNat(
      { target: { host: "192.0.2.9", port: 8848 }, kind: "p2pchat", json: true, timeoutMs: 1200 },
      {
        out: (s) => out.push(s),
        resolve: (a) => Promise.resolve(a),
        discover: () => Promise.resolve(silent),
      },
    ),
    /^Error: Cannot reach server 192\.0\.2\.9:8848: no answer within 1\.2 s over UDP \(if this network blocks UDP, `p2pchat join` still gets through over the server's WebSocket\)$/,
  );
  assert.equal(JSON.parse(out.join("")).udp, false);
});

Deno.test("nat: --stun asks without guessing a second port; a prober plugs in", async () => {
  const out: string[] = [];
  let asked: unknown;
  const code = await runNat(
    { target: { host: "192.0.2.9", port: 3478 }, kind: "stun", json: true, timeoutMs: 500 },
    {
      out: (s) => out.push(s),
      resolve: (a) => Promise.resolve(a),
      discover: (o) => {
        asked = o;
        return Promise.resolve(REPORT);
      },
      portmap: () => Promise.resolve(["UPnP"]),
    },
  );
  assert.equal(code, 0);
  assert.deepEqual(asked, {
    server: { host: "192.0.2.9", port: 3478 },
    guessAltPort: false,
    timeoutMs: 500,
  });
  const j = JSON.parse(out.join(""));
  assert.deepEqual([j.portmap, j.portmapProbed], [["UPnP"], true]);
});
