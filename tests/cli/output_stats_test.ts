/** /stats as the terminal shows it and as JSON carries it. */
import assert from "node:assert/strict";
import { ChatOutput, JsonOutput } from "../../lib/cli/output.ts";

const counters = { data_sent: 480, mtu_probes: 1, timeouts: 0 };

Deno.test("output: /stats in the terminal: drops, then what the transport did, sorted", () => {
  const lines: string[] = [];
  const out = new ChatOutput({ print: (l) => lines.push(l), prompt: () => {} }, false, "bob");
  out.stats({ replay: 2, bad_mac1: 1 }, counters);
  out.stats({}, counters);
  assert.deepEqual(lines, [
    "* dropped: bad_mac1 1, replay 2",
    "* transport: data_sent 480, mtu_probes 1, timeouts 0",
    "* nothing dropped",
    "* transport: data_sent 480, mtu_probes 1, timeouts 0",
  ]);
});

Deno.test("output: /stats as JSON: drops and counters side by side", () => {
  const lines: string[] = [];
  new JsonOutput((l) => lines.push(l)).stats({ replay: 2 }, counters);
  assert.deepEqual(lines.map((l) => JSON.parse(l)), [
    { type: "stats", drops: { replay: 2 }, counters },
  ]);
});
