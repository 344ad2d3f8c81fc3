/**
 * Summarises a `.cpuprofile` (`deno run --cpu-prof`, Chrome DevTools' format): the functions
 * with the most self time and the most total time (each sample counted once per function on
 * its stack), as shares of the profile's non-idle samples.
 *
 * @example deno run -R bench/_cpuprof.ts DIR/direct-alice.cpuprofile --top 40
 */
import { parseArgs } from "node:util";
import { int } from "./_args.ts";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

/** Self and total share by function, over the samples not spent idle or in the GC root. */
export function summarise(p: Profile): {
  busy: number;
  rows: { name: string; self: number; total: number }[];
} {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: Node) => {
    const f = n.callFrame;
    const file = f.url.replace(/^.*\/(lib|bench|ext|node|main)/, "$1");
    return `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!)!;
    const dt = p.timeDeltas[i] ?? 0;
    if (n.callFrame.functionName === "(idle)") continue;
    busy += dt;
    const l = label(n);
    self.set(l, (self.get(l) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const s = label(byId.get(id)!);
      if (seen.has(s)) continue;
      seen.add(s);
      total.set(s, (total.get(s) ?? 0) + dt);
    }
  }
  const rows = [...total.keys()].map((name) => ({
    name,
    self: (self.get(name) ?? 0) / busy,
    total: total.get(name)! / busy,
  }));
  return { busy, rows };
}

if (import.meta.main) {
  const { values: v, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string" }, sort: { type: "string" } },
  });
  const top = int(v.top, "--top", 1, 10_000, 40);
  for (const file of positionals) {
    const { busy, rows } = summarise(JSON.parse(Deno.readTextFileSync(String(file))));
    console.log(`${file}: ${(busy / 1000).toFixed(0)} ms busy`);
    const key = v.sort === "total" ? "total" : "self";
    rows.sort((a, b) => b[key] - a[key]);
    for (const r of rows.slice(0, top)) {
      console.log(
        `${(100 * r.self).toFixed(1).padStart(5)}% ${
          (100 * r.total).toFixed(1).padStart(5)
        }%  ${r.name}`,
      );
    }
  }
}
