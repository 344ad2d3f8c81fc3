/**
 * Birthday punching's success rate behind real kernel NAT: RUNS independent pairs, each a
 * port-restricted NAT and a symmetric NAT with random ports (nftables `fully-random`), each
 * pair in its own room with its own two routers, PARALLEL at a time. Prints how many ended
 * `direct`, and the median and slowest time to the direct path (from starting the second
 * peer). Needs root and the NAT lab's tools (tests/natlab/README.md).
 *
 *   deno run -A bench/birthday_rate.ts [--runs 20] [--parallel 5]
 */
import { parseArgs } from "node:util";
import { type SiteSpec, unsupported, up } from "../tests/natlab/lab.ts";
import { PORT, wrap } from "../tests/natlab/_labtest.ts";
import { Harness, isType } from "../tests/e2e/harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "20" }, parallel: { type: "string", default: "5" } },
});
const runs = Number(values.runs);
const parallel = Number(values.parallel);
if (!(runs >= 1 && runs <= 200) || !(parallel >= 1 && parallel <= 50)) {
  console.error("birthday_rate: --runs takes 1 to 200, --parallel 1 to 50");
  Deno.exit(2);
}
const why = unsupported();
if (why) {
  console.error(`birthday_rate: cannot build the NAT lab: ${why.reason}`);
  Deno.exit(1);
}

const sites: SiteSpec[] = Array.from({ length: runs }, (_, i) => [
  { name: `r${i}a`, nat: "port-restricted" as const },
  { name: `r${i}b`, nat: "symmetric" as const },
]).flat();
const lab = await up({ sites });
const h = new Harness();
const results: (number | null)[] = [];
try {
  const server = h.server(PORT, ["--log-level", "info"], wrap(lab, "server"));
  await server.waitStderr(/listening on/);
  const addr = `${lab.server.addrs[0]}:${PORT}`;
  let next = 0;
  const one = async (i: number): Promise<number | null> => {
    const args = ["--room", `b${i}`];
    const a = h.peer("a", addr, args, wrap(lab, `r${i}a1`));
    await a.waitFor(isType("ready"), 30000);
    const t0 = Date.now();
    const b = h.peer("b", addr, args, wrap(lab, `r${i}b1`));
    try {
      // Punch window (5 s) + birthday window (30 s) + start-up, with room to spare.
      await a.waitFor(isType("path", { peer: "b", path: "direct" }), 45000);
      return (Date.now() - t0) / 1000;
    } catch {
      return null;
    } finally {
      a.kill("SIGKILL");
      b.kill("SIGKILL");
    }
  };
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < runs) {
      const i = next++;
      results[i] = await one(i);
      console.error(
        `run ${i + 1}/${runs}: ${
          results[i] === null ? "relay" : `direct ${results[i]!.toFixed(1)} s`
        }`,
      );
    }
  }));
} finally {
  await h.cleanup();
  await lab.down();
}
const ok = results.filter((r): r is number => r !== null).sort((x, y) => x - y);
const median = ok.length ? ok[Math.floor((ok.length - 1) / 2)]! : NaN;
console.log(
  `birthday punching, port-restricted <-> symmetric: ${ok.length}/${runs} direct ` +
    `(${(100 * ok.length / runs).toFixed(0)} %), time to direct median ${median.toFixed(1)} s, ` +
    `slowest ${(ok.at(-1) ?? NaN).toFixed(1)} s (${parallel} pairs at a time on ` +
    `${navigator.hardwareConcurrency} cores)`,
);
