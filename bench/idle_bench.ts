/**
 * What an idle chat costs: a server and three peers on loopback, all connected, then nobody
 * types for `--seconds`. Prints the CPU share of one peer process and how often its threads
 * were woken (context switches, from /proc), beside the wake-ups its keepalives need.
 *
 *   deno run -A bench/idle_bench.ts [--seconds 60] [--keepalive 15]
 *
 * Linux only (/proc). All traffic stays on 127.0.0.1.
 */
import { parseArgs } from "node:util";
import { readProc, USER_HZ } from "./_proc.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    keepalive: { type: "string", default: "15" },
  },
});
const seconds = Number(values.seconds);
const keepalive = Number(values.keepalive);
if (!(seconds >= 1 && seconds <= 3600) || !(keepalive >= 1 && keepalive <= 3600)) {
  console.error("idle_bench: --seconds and --keepalive take 1 to 3600");
  Deno.exit(2);
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const children: Deno.ChildProcess[] = [];
const dirs: string[] = [];

function freePort(): number {
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

function spawn(args: string[]): Deno.ChildProcess {
  const home = Deno.makeTempDirSync({ prefix: "p2pchat-bench-" });
  dirs.push(home);
  const c = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
    env: { XDG_CONFIG_HOME: home, NO_COLOR: "1" },
  }).spawn();
  children.push(c);
  return c;
}

/** Resolves once `names` all have a direct or lan path, from the peer's --json stdout. */
async function connected(c: Deno.ChildProcess, names: string[]): Promise<void> {
  const want = new Set(names);
  let buf = "";
  const reader = c.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (want.size > 0) {
    const { value, done } = await reader.read();
    if (done) throw new Error("a peer exited before it connected");
    buf += value;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const e = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (e.type === "path" && (e.path === "direct" || e.path === "lan")) want.delete(e.peer);
    }
  }
  // Keep draining stdout so the peer never blocks on a full pipe.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
}

/** Context switches of every thread of `pid` (voluntary + involuntary). */
function switches(pid: number): number {
  let n = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const s = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/status`);
      for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) n += Number(m[1]);
    } catch { /* thread ended */ }
  }
  return n;
}

const watchdog = setTimeout(() => {
  console.error("idle_bench: took far too long; giving up");
  cleanup();
  Deno.exit(1);
}, (seconds + 60) * 1000);

function cleanup(): void {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* gone */ }
  }
  for (const d of dirs) Deno.removeSync(d, { recursive: true });
}

try {
  const port = freePort();
  spawn([
    "serve",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--keepalive",
    String(keepalive),
    "--log-level",
    "error",
  ]);
  await new Promise((r) => setTimeout(r, 1500));
  const names = ["alice", "bob", "carol"];
  const peers = names.map((n) =>
    spawn([
      "join",
      "--no-portmap",
      "--json",
      "--name",
      n,
      "--server",
      `127.0.0.1:${port}`,
      "--keepalive",
      String(keepalive),
    ])
  );
  await Promise.all(peers.map((c, i) => connected(c, names.filter((_, j) => j !== i))));
  // Let the connection bursts (punch windows) and the runtime's start-up work (compilation,
  // the garbage collector's heap shrinking) settle before measuring.
  await new Promise((r) => setTimeout(r, 10_000));
  const pid = peers[0]!.pid;
  const cpu0 = readProc(pid).cpuTicks ?? NaN;
  const sw0 = switches(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = ((readProc(pid).cpuTicks ?? NaN) - cpu0) / USER_HZ;
  const sw = switches(pid) - sw0;
  // One keepalive to the server and one per direct path, each every `keepalive` seconds.
  const needed = (1 + (names.length - 1)) / keepalive;
  console.log(
    `idle peer in a room of ${names.length}, keepalive ${keepalive} s, ${
      elapsed.toFixed(1)
    } s measured`,
  );
  console.log(
    `cpu           ${(100 * cpu / elapsed).toFixed(3)} % of a core (${(cpu * 1000).toFixed(0)} ms)`,
  );
  console.log(`thread wakes  ${(sw / elapsed).toFixed(2)} /s (all threads, context switches)`);
  console.log(`keepalives    ${needed.toFixed(2)} /s needed (server + ${names.length - 1} paths)`);
} finally {
  clearTimeout(watchdog);
  cleanup();
}
