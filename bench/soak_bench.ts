/**
 * The adversarial soak for minutes: a server, alice and bob chatting, a malicious member
 * flooding bob, name churn (tests/robust/_soak.ts has the scenario). Prints progress every
 * `--every` seconds, then the figures: messages each way (all must arrive exactly once), chat
 * round trips, STUN answer times, bob's, alice's and the server's RSS and CPU, what mallory
 * sent and what bob dropped.
 *
 *   deno run -A bench/soak_bench.ts [--seconds 600] [--flood 400] [--every 30] [--samples]
 *                                    [--bob-heap MIB]
 *
 * --samples prints bob's and the server's RSS once a second. --bob-heap caps bob's V8 old space
 * (--max-old-space-size): RSS also grows with a lazy collector, but a live heap that keeps
 * growing makes a capped bob run out of memory and exit (the run then fails).
 * Linux for the memory and CPU figures (/proc). All traffic stays on 127.0.0.0/8.
 * Exits 1 if a message was lost, duplicated or reordered, or a process exited.
 */
import { parseArgs } from "node:util";
import { report, runSoak } from "../tests/robust/_soak.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "600" },
    flood: { type: "string", default: "400" },
    every: { type: "string", default: "30" },
    samples: { type: "boolean", default: false },
    "bob-heap": { type: "string", default: "0" },
  },
});
const seconds = Number(values.seconds);
const flood = Number(values.flood);
const every = Number(values.every);
if (!(seconds >= 5 && seconds <= 86_400) || !(flood >= 0 && flood <= 20_000) || !(every >= 1)) {
  console.error("soak_bench: --seconds takes 5 to 86400, --flood 0 to 20000, --every 1 or more");
  Deno.exit(2);
}

console.log(`soak: ${seconds} s, mallory at ${flood} datagrams/s`);
const f = await runSoak({
  seconds,
  floodPerSec: flood,
  progress: (l) => console.log(l),
  progressEverySec: every,
  bobMaxHeapMiB: Number(values["bob-heap"]) || undefined,
});
console.log(report(f));
if (values.samples) {
  console.log("t_s bob_rss_mib server_rss_mib");
  for (const s of f.samples) {
    console.log(
      `${(s.t / 1000).toFixed(0)} ${(s.bobRssKiB / 1024).toFixed(1)} ${
        (s.serverRssKiB / 1024).toFixed(1)
      }`,
    );
  }
}
const bad = [f.aliceToBob, f.bobToAlice].some((x) => x.once !== x.sent || x.outOfOrder > 0) ||
  f.trouble.some((t) => t.endsWith("exited"));
Deno.exit(bad ? 1 : 0);
