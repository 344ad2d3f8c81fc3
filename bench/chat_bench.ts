/**
 * Chat transport bench: starts a real `p2pchat serve` and two real `p2pchat join --json` peers
 * (alice, bob) on 127.0.0.1, then sends messages alice → bob through alice's stdin and reads
 * them from bob's stdout. For each path (direct, and relayed with `--test-drop-direct`) it runs
 * a bulk phase (N messages of S bytes, at most W written and not yet received) and a ping phase
 * (small messages one at a time), and prints msg/s, MB/s, latency p50/p99 and the CPU each
 * process used. Every message must arrive exactly once, whole and in order, or the bench fails.
 * Loopback only; it stops by itself and always kills what it started.
 *
 * @example deno run -A bench/chat_bench.ts --count 400 --size 16384
 */
import { readProc, USER_HZ } from "./_proc.ts";
import {
  FRAG_SIZE,
  type Fragment,
  type Received,
  Receiver,
  Sender,
  type TxEvent,
} from "../lib/peer/delivery.ts";
import { flags, int, num, UsageError } from "./_args.ts";
import { guard } from "./_guard.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const HOST = "127.0.0.1";
const PATHS = ["direct", "relay"] as const;
type PathKind = typeof PATHS[number];
/** The largest message a peer sends (lib/peer/delivery.ts MAX_MESSAGE). */
const MAX_SIZE = 16 * 1024;
/** Room for the index and separators at the start of every message. */
const MIN_SIZE = 16;
/** The relay limit the bench's server runs with: far above anything loopback carries. */
const RELAY_RATE = 1_000_000_000;
/** How long after the last message the bench waits for late duplicates. */
const DUPLICATE_WAIT_MS = 1000;
/** Peers' flags: quick keepalives and punching, as the e2e tests use. */
const PEER_FLAGS = ["--keepalive", "0.5", "--ack-timeout", "300", "--punch-window", "1500"];

export interface Options {
  count: number;
  size: number;
  window: number;
  pings: number;
  pingSize: number;
  paths: PathKind[];
  timeoutS: number;
  /** Directory for V8 tick logs of alice and bob (`node --prof-process` reads them), or null. */
  profDir: string | null;
  /**
   * Directory for the runtime's CPU profiles of alice and bob (DIR/<path>-<name>.cpuprofile,
   * Chrome DevTools' format), or null. The peers are then stopped with SIGTERM, so they write it.
   */
  cpuProfDir: string | null;
  /** Random loss in percent, each way, for the simulated path; null: the real processes. */
  simLossPct: number | null;
  /** One-way delay of the simulated path, ms. */
  simDelayMs: number;
  /** The simulated path's bottleneck towards the receiver, fragments per ms (null: none). */
  simRate: number | null;
  /** Fragments its queue holds; more are dropped. */
  simQueue: number;
}

const USAGE = `usage: deno run -A bench/chat_bench.ts [options]
  --count N       messages in the bulk phase (default 400)
  --size S        bytes per bulk message, ${MIN_SIZE}-${MAX_SIZE} (default 16384)
  --window W      bulk messages written to alice and not yet printed by bob, at most
                  (default 64; 0: write them all at once)
  --pings M       messages in the ping phase, one at a time (default 100; 0: none)
  --ping-size S   bytes per ping message (default 64)
  --paths P       direct, relay or direct,relay (default direct,relay)
  --timeout S     give up on a phase after this many seconds (default 120)
  --sim-loss P    no processes: run lib/peer/delivery.ts's Sender and Receiver over a
                  simulated path losing P% of datagrams each way, in virtual time
                  (6 seeds), and print how long delivery took and what it cost
  --sim-delay MS  one-way delay of the simulated path (default 10)
  --sim-rate R    a bottleneck on it towards the receiver: R fragments per ms
  --sim-queue Q   fragments the bottleneck queues, more are dropped (default 30)
  --prof DIR      write V8 tick logs of the peers to DIR/<path>-<name>.log, for
                  node --prof-process (sampling, and no inlining so that time is
                  charged to the right function, slow the peers down)
  --cpu-prof DIR  write the runtime's CPU profiles of the peers (deno run --cpu-prof)
                  to DIR/<path>-<name>.cpuprofile; bench/_cpuprof.ts summarises them
`;

/** Parses the command line; throws UsageError on a mistake. */
export function parseOptions(args: string[]): Options | "help" {
  const v = flags(args, {
    count: { type: "string" },
    size: { type: "string" },
    window: { type: "string" },
    pings: { type: "string" },
    "ping-size": { type: "string" },
    paths: { type: "string" },
    timeout: { type: "string" },
    prof: { type: "string" },
    "cpu-prof": { type: "string" },
    "sim-loss": { type: "string" },
    "sim-delay": { type: "string" },
    "sim-rate": { type: "string" },
    "sim-queue": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) return "help";
  const paths = (v.paths ?? "direct,relay").split(",");
  for (const p of paths) {
    if (!(PATHS as readonly string[]).includes(p)) {
      throw new UsageError(`Cannot parse --paths "${v.paths}": use ${PATHS.join(", ")}`);
    }
  }
  return {
    count: int(v.count, "--count", 1, 1_000_000, 400),
    size: int(v.size, "--size", MIN_SIZE, MAX_SIZE, MAX_SIZE),
    window: int(v.window, "--window", 0, 1_000_000, 64),
    pings: int(v.pings, "--pings", 0, 100_000, 100),
    pingSize: int(v["ping-size"], "--ping-size", MIN_SIZE, MAX_SIZE, 64),
    paths: [...new Set(paths)] as PathKind[],
    timeoutS: int(v.timeout, "--timeout", 5, 3600, 120),
    profDir: v.prof ?? null,
    cpuProfDir: v["cpu-prof"] ?? null,
    simLossPct: v["sim-loss"] === undefined ? null : int(v["sim-loss"], "--sim-loss", 0, 90, 0),
    simDelayMs: int(v["sim-delay"], "--sim-delay", 0, 10_000, 10),
    simRate: v["sim-rate"] === undefined ? null : num(v["sim-rate"], "--sim-rate", 0.001, 1000),
    simQueue: int(v["sim-queue"], "--sim-queue", 1, 100_000, 30),
  };
}

function freePort(): number {
  const s = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

// ---- processes ----

type Event = Record<string, unknown>;

interface Proc {
  name: string;
  child: Deno.ChildProcess;
  stderr: string[];
  exited: boolean;
  /** Called for every JSON line on stdout, with the time the bench read it. */
  onEvent: (e: Event, at: number) => void;
  write(line: string): Promise<void>;
  kill(): void;
  status: Promise<unknown>;
}

function spawn(
  name: string,
  args: string[],
  configHome: string,
  v8Flags?: string,
  runFlags: string[] = [],
): Proc {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...runFlags, MAIN, ...args],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: {
      NO_COLOR: "1",
      XDG_CONFIG_HOME: configHome,
      ...(v8Flags ? { DENO_V8_FLAGS: v8Flags } : {}),
    },
  }).spawn();
  const writer = child.stdin.getWriter();
  const enc = new TextEncoder();
  const p: Proc = {
    name,
    child,
    stderr: [],
    exited: false,
    onEvent: () => {},
    write: (line) => writer.write(enc.encode(line + "\n")),
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    },
    status: child.status,
  };
  p.status.then(() => p.exited = true);
  const lines = async (s: ReadableStream<Uint8Array>, each: (line: string) => void) => {
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of s) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          each(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      }
    } catch { /* killed */ }
  };
  lines(child.stdout, (l) => {
    const at = performance.now();
    try {
      p.onEvent(JSON.parse(l), at);
    } catch (e) {
      if (e instanceof SyntaxError) p.stderr.push(`(not JSON on stdout) ${l.slice(0, 200)}`);
      else throw e;
    }
  });
  // Keep the first lines: a flood of identical errors should not eat memory.
  lines(child.stderr, (l) => p.stderr.length < 200 && p.stderr.push(l));
  return p;
}

/** Resolves when `pred` holds for an event from `p` (checked from now on), or rejects. */
function waitEvent(p: Proc, pred: (e: Event) => boolean, ms: number, what: string): Promise<Event> {
  return new Promise((resolve, reject) => {
    const prev = p.onEvent;
    const timer = setTimeout(() => {
      p.onEvent = prev;
      reject(new Error(`Cannot run the bench: no ${what} from ${p.name} within ${ms} ms`));
    }, ms);
    p.onEvent = (e, at) => {
      prev(e, at);
      if (!pred(e)) return;
      clearTimeout(timer);
      p.onEvent = prev;
      resolve(e);
    };
  });
}

async function waitStderr(p: Proc, re: RegExp, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!p.stderr.some((l) => re.test(l))) {
    if (p.exited || Date.now() > end) {
      throw new Error(`Cannot start ${p.name}: no line matching ${re} on its stderr`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- one room: a server, alice and bob ----

interface Room {
  server: Proc;
  alice: Proc;
  bob: Proc;
  path: string;
}

async function openRoom(
  kind: PathKind,
  dirs: string[],
  procs: Proc[],
  profDir: string | null,
  cpuProfDir: string | null,
): Promise<Room> {
  const port = freePort();
  const dir = () => {
    const d = Deno.makeTempDirSync({ prefix: "p2pchat-bench-" });
    dirs.push(d);
    return d;
  };
  const server = spawn("server", [
    "serve",
    "--host",
    HOST,
    "--port",
    String(port),
    "--keepalive",
    "0.5",
    "--relay-rate",
    String(RELAY_RATE),
  ], dir());
  procs.push(server);
  await waitStderr(server, /listening on/, 20_000);
  const extra = kind === "relay" ? ["--test-drop-direct"] : [];
  const join = (name: string) => {
    const p = spawn(
      name,
      ["join", "--json", "--name", name, "--server", `${HOST}:${port}`, ...PEER_FLAGS, ...extra],
      dir(),
      profDir
        ? `--prof,--no-turbo-inlining,--no-logfile-per-isolate,--logfile=${profDir}/${kind}-${name}.log`
        : undefined,
      cpuProfDir
        ? [
          "--cpu-prof",
          `--cpu-prof-dir=${cpuProfDir}`,
          `--cpu-prof-name=${kind}-${name}.cpuprofile`,
        ]
        : [],
    );
    procs.push(p);
    return p;
  };
  const alice = join("alice");
  const aliceReady = waitEvent(alice, (e) => e.type === "ready", 20_000, "ready");
  await aliceReady;
  const bob = join("bob");
  const wanted = kind === "relay" ? ["relay"] : ["lan", "direct"];
  const isPath = (peer: string) => (e: Event) =>
    e.type === "path" && e.peer === peer && wanted.includes(e.path as string);
  const [a] = await Promise.all([
    waitEvent(alice, isPath("bob"), 20_000, `a ${wanted.join("/")} path to bob`),
    waitEvent(bob, isPath("alice"), 20_000, `a ${wanted.join("/")} path to alice`),
  ]);
  return { server, alice, bob, path: String(a.path) };
}

/** Busy and total clock ticks of the whole machine so far (/proc/stat), or undefined. */
function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return undefined; // not Linux
  }
}

// ---- messages ----

/** Message `i` of a phase: its index, then filler that depends on the index, `size` bytes. */
function text(tag: string, i: number, size: number): string {
  const head = `${tag}${i}:`;
  const fill = "abcdefghijklmnopqrstuvwxyz0123456789";
  let s = head;
  const off = i % fill.length;
  while (s.length < size) s += fill.slice(off) + fill.slice(0, off);
  return s.slice(0, size);
}

interface PhaseResult {
  label: string;
  count: number;
  size: number;
  seconds: number;
  latencyMs: Float64Array;
  cpu: Record<string, number | undefined>;
  /** UDP datagrams sent on this host during the phase (all processes), or undefined. */
  udpOut: number | undefined;
}

/**
 * UDP datagrams sent so far in this network namespace (`OutDatagrams` of /proc/net/snmp), or
 * undefined (not Linux). Every process counts, so it is ours only on an otherwise quiet host.
 */
function udpOut(): number | undefined {
  try {
    const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) =>
      l.startsWith("Udp:")
    );
    const names = lines[0]!.trim().split(/\s+/), values = lines[1]!.trim().split(/\s+/);
    const v = Number(values[names.indexOf("OutDatagrams")]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Sends `count` messages of `size` bytes alice → bob with at most `window` outstanding (0: no
 * limit) and checks bob prints each exactly once, whole and in order, and alice reports each
 * delivered. Rejects on any violation or after `timeoutMs`.
 */
async function phase(
  room: Room,
  label: string,
  tag: string,
  count: number,
  size: number,
  window: number,
  timeoutMs: number,
): Promise<PhaseResult> {
  const { alice, bob, server } = room;
  const sentAt = new Float64Array(count);
  const latency = new Float64Array(count);
  let received = 0;
  let delivered = 0;
  let failure: Error | null = null;
  let wake: () => void = () => {};
  const progress = () => wake();
  const bobPrev = bob.onEvent;
  const alicePrev = alice.onEvent;
  bob.onEvent = (e, at) => {
    if (e.type !== "message" || e.from !== "alice" || typeof e.text !== "string") return;
    if (!e.text.startsWith(tag)) return;
    const i = Number(e.text.slice(tag.length, e.text.indexOf(":")));
    if (i !== received) {
      failure ??= new Error(
        `${label}: bob printed message ${i} when ${received} was next (lost, duplicated or reordered)`,
      );
    } else if (e.text !== text(tag, i, size)) {
      failure ??= new Error(`${label}: message ${i} arrived changed`);
    } else {
      latency[i] = at - sentAt[i]!;
      received++;
    }
    progress();
  };
  alice.onEvent = (e) => {
    if (e.type === "delivered" && e.to === "bob") delivered++;
    if (e.type === "undelivered" || e.type === "error") {
      failure ??= new Error(`${label}: alice reported ${JSON.stringify(e)}`);
    }
    progress();
  };
  const pids = {
    alice: alice.child.pid,
    bob: bob.child.pid,
    server: server.child.pid,
    bench: Deno.pid,
  };
  const m0 = machineTicks();
  const udp0 = udpOut();
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, readProc(pid)]));
  const t0 = performance.now();
  const deadline = t0 + timeoutMs;
  const until = async (done: () => boolean, what: string) => {
    while (!done() && !failure) {
      if (performance.now() > deadline) {
        failure = new Error(`${label}: timed out waiting for ${what}`);
        break;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    if (failure) throw failure;
  };
  try {
    for (let i = 0; i < count; i++) {
      if (window > 0) await until(() => i - received < window, `room in the window`);
      sentAt[i] = performance.now();
      await alice.write(`/msg bob ${text(tag, i, size)}`);
    }
    await until(() => received === count, `bob to print all ${count} messages`);
    const t1 = performance.now();
    const cpu1 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, readProc(pid)]));
    const m1 = machineTicks();
    const udp1 = udpOut();
    await until(() => delivered >= count, `alice's ${count} delivery reports`);
    const seconds = (t1 - t0) / 1000;
    const cpu: Record<string, number | undefined> = {};
    for (const k of Object.keys(pids)) {
      const a = cpu0[k]!.cpuTicks, b = cpu1[k]!.cpuTicks;
      cpu[k] = a === undefined || b === undefined ? undefined : (b - a) / USER_HZ / seconds;
    }
    // The share of all cores that was busy, whoever used it (other jobs too).
    cpu.machine = m0 && m1 && m1.total > m0.total
      ? (m1.busy - m0.busy) / (m1.total - m0.total)
      : undefined;
    latency.sort();
    const udp = udp0 === undefined || udp1 === undefined ? undefined : udp1 - udp0;
    return { label, count, size, seconds, latencyMs: latency, cpu, udpOut: udp };
  } finally {
    bob.onEvent = bobPrev;
    alice.onEvent = alicePrev;
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join("  ")
  ).join("\n");
}

function row(path: string, r: PhaseResult): string[] {
  const pct = (v: number | undefined) => v === undefined ? "n/a" : `${(100 * v).toFixed(0)}%`;
  return [
    `${path} ${r.label}`,
    String(r.count),
    String(r.size),
    r.seconds.toFixed(2),
    (r.count / r.seconds).toFixed(0),
    ((r.count * r.size) / r.seconds / 1e6).toFixed(2),
    percentile(r.latencyMs, 50).toFixed(1),
    percentile(r.latencyMs, 99).toFixed(1),
    `${pct(r.cpu.alice)} ${pct(r.cpu.bob)} ${pct(r.cpu.server)} ${pct(r.cpu.bench)}`,
    pct(r.cpu.machine),
    ["alice", "bob", "server"].map((k) => {
      const c = r.cpu[k];
      const mb = r.count * r.size / 1e6;
      if (mb < 1) return "-"; // too little data for a per-MB figure
      return c === undefined ? "n/a" : (c * r.seconds * 1000 / mb).toFixed(0);
    }).join(" "),
    r.udpOut === undefined
      ? "n/a"
      : (r.udpOut / (r.count * Math.max(1, Math.ceil(r.size / FRAG_SIZE)))).toFixed(2),
  ];
}

// ---- main ----

async function bench(o: Options): Promise<void> {
  const procs: Proc[] = [];
  const dirs: string[] = [];
  const killAll = () => procs.forEach((p) => p.kill());
  // The bench must stop by itself whatever happens: a hard deadline over everything.
  const budgetMs = o.paths.length * (60_000 + 2 * o.timeoutS * 1000);
  const disarm = guard("chat_bench", budgetMs, killAll);
  const rows: string[][] = [[
    "path phase",
    "msgs",
    "bytes",
    "seconds",
    "msg/s",
    "MB/s",
    "p50 ms",
    "p99 ms",
    "CPU alice bob server bench",
    "machine busy",
    "CPU ms/MB alice bob server",
    "UDP sent/fragment",
  ]];
  let failed = false;
  try {
    console.log(
      `alice → bob on ${HOST}: bulk ${o.count} × ${o.size} bytes, window ${o.window || "all"}; ` +
        `ping ${o.pings} × ${o.pingSize} bytes, one at a time; MB = 10^6 bytes; ` +
        `latency: alice's stdin line written → bob's stdout line read; CPU: 100% = one core; ` +
        `machine busy: share of all ${navigator.hardwareConcurrency} cores, any process; ` +
        `UDP sent/fragment: datagrams sent on this host (/proc/net/snmp, any process) per ` +
        `DATA fragment delivered (relayed: each datagram is sent twice, to and by the server)`,
    );
    for (const kind of o.paths) {
      const room = await openRoom(kind, dirs, procs, o.profDir, o.cpuProfDir);
      const timeout = o.timeoutS * 1000;
      // Warm-up (unmeasured): the first messages pay for JIT compilation.
      await phase(room, "warm-up", "w", Math.min(50, o.count), o.size, o.window, timeout);
      const bulk = await phase(room, "bulk", "b", o.count, o.size, o.window, timeout);
      rows.push(row(`${kind} (${room.path})`, bulk));
      if (o.pings > 0) {
        const ping = await phase(room, "ping", "p", o.pings, o.pingSize, 1, timeout);
        rows.push(row(`${kind} (${room.path})`, ping));
      }
      // Late duplicates would show up as an out-of-order message here.
      let late = 0;
      room.bob.onEvent = (e) => {
        if (e.type === "message") late++;
      };
      await new Promise((r) => setTimeout(r, DUPLICATE_WAIT_MS));
      if (late > 0) throw new Error(`${kind}: bob printed ${late} messages after the last one`);
      if (o.cpuProfDir) {
        // A peer writes its CPU profile when it exits on its own: SIGTERM makes it leave.
        for (const p of [room.alice, room.bob]) p.child.kill("SIGTERM");
        const exited = Promise.allSettled([room.alice.status, room.bob.status]);
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      }
      for (const p of [room.alice, room.bob, room.server]) p.kill();
      await Promise.allSettled([room.alice.status, room.bob.status, room.server.status]);
    }
    console.log(table(rows));
    console.log("every message arrived exactly once, whole and in order");
  } catch (e) {
    failed = true;
    console.log(table(rows));
    console.error(`chat_bench: ${e instanceof Error ? e.message : e}`);
    for (const p of procs) {
      if (p.stderr.length) console.error(`--- ${p.name} stderr ---\n${p.stderr.join("\n")}`);
    }
  } finally {
    disarm();
    killAll();
    await Promise.allSettled(procs.map((p) => p.status));
    for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
  if (failed) Deno.exit(1);
}

// ---- the transport alone, over a simulated lossy path ----

/** A deterministic pseudo-random sequence in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
}

/** A DATA_ACK as batching versions of lib/peer/delivery.ts build it (declared here: older ones have no such type). */
interface Ack {
  seq: number;
  frag: number;
  batch?: { below: number; blocks: { seq: number; mask: number }[] };
}

/** What a receiver with batched DATA_ACKs has besides the API every version has. */
interface Batching {
  pollAck(now: number): Ack | null;
  nextDeadline(): number | null;
  tick(now: number): void;
}
/** A sender that takes batched DATA_ACKs. */
interface TakesBatches {
  onAcks(a: Ack, events: TxEvent[], now: number): void;
}

/**
 * Sender → Receiver over a path with `delayMs` each way and random loss, in virtual time,
 * driven by arrivals and the machines' deadlines as a host would. Runs on every version of
 * lib/peer/delivery.ts: with batched DATA_ACKs (`pollAck`, `onAcks`) where the receiver has
 * them, else one per fragment (send, tick, onAck, nextDeadline, pending).
 */
function simulate(o: Options, seed: number) {
  const loss = (o.simLossPct ?? 0) / 100;
  const tx = new Sender();
  const rx = new Receiver();
  const batching = "pollAck" in rx ? rx as unknown as Batching : null;
  const ev: TxEvent[] = [];
  const got: Received[] = [];
  const lossData = lcg(seed), lossAck = lcg(seed + 1000);
  let acks = 0;
  type Arrival = { at: number; f?: Fragment; seq?: number; frag?: number; ack?: Ack };
  const q: Arrival[] = [];
  const schedule = (a: Arrival) => {
    let i = q.length;
    while (i > 0 && q[i - 1]!.at > a.at) i--;
    q.splice(i, 0, a);
  };
  const msgs = Array.from(
    { length: o.count },
    (_, i) => new TextEncoder().encode(text("s", i, o.size)),
  );
  msgs.forEach((m, i) => tx.send(i + 1, m, false, 0));
  let now = 0, sent = 0, queueDrops = 0, busyUntil = 0;
  const send = () => {
    for (const f of tx.tick(now, ev)) {
      sent++;
      let at = now;
      if (o.simRate !== null) {
        // The bottleneck: one fragment every 1/rate ms, at most simQueue waiting.
        const start = Math.max(now, busyUntil);
        if ((start - now) * o.simRate >= o.simQueue) {
          queueDrops++;
          continue;
        }
        busyUntil = at = start + 1 / o.simRate;
      }
      if (lossData() >= loss) schedule({ at: at + o.simDelayMs, f });
    }
  };
  const sendAcks = (b: Batching) => {
    for (let ack = b.pollAck(now); ack; ack = b.pollAck(now)) {
      acks++;
      if (lossAck() >= loss) schedule({ at: now + o.simDelayMs, ack });
    }
  };
  send();
  while (tx.pending > 0) {
    const d = tx.nextDeadline();
    const a = q[0];
    const rxAt = batching?.nextDeadline() ?? Infinity;
    if (batching && rxAt < (a?.at ?? Infinity) && rxAt < (d ?? Infinity)) {
      now = rxAt;
      batching.tick(now);
      sendAcks(batching);
      continue;
    }
    if (a && (d === null || a.at <= d)) {
      q.shift();
      now = a.at;
      if (a.f) {
        const took = rx.onData(a.f, got, now);
        if (batching) sendAcks(batching);
        else if (took) {
          acks++;
          if (lossAck() >= loss) schedule({ at: now + o.simDelayMs, seq: a.f.seq, frag: a.f.frag });
        }
        continue;
      }
      if (a.ack) (tx as unknown as TakesBatches).onAcks(a.ack, ev, now);
      else tx.onAck(a.seq!, a.frag!, ev, now);
    } else if (d !== null) now = Math.max(now, d);
    else throw new Error(`Cannot finish the simulation: the sender stalled at ${now} ms`);
    send();
  }
  // Released at most once each, in order, unchanged (given-up messages may be missing).
  const inOrder = got.every((g, i) =>
    (i === 0 || g.msgNo > got[i - 1]!.msgNo) && g.bytes.length === msgs[g.msgNo - 1]!.length
  );
  const undelivered = ev.filter((e) => e.type === "undelivered").length;
  const frags = msgs.reduce((n, m) => n + Math.max(1, Math.ceil(m.length / FRAG_SIZE)), 0);
  return {
    seconds: now / 1000,
    sent,
    frags,
    acks,
    inOrder,
    undelivered,
    queueDrops,
    got: got.length,
  };
}

function simBench(o: Options): void {
  console.log(
    `Sender → Receiver, simulated: ${o.count} × ${o.size} bytes, ${o.simLossPct}% loss each ` +
      `way (DATA and ACKs), ${o.simDelayMs} ms each way` +
      (o.simRate === null ? "" : `, bottleneck ${o.simRate} fragments/ms queueing ${o.simQueue}`) +
      `; virtual time`,
  );
  const rows = [[
    "seed",
    "virtual s",
    "fragments",
    "DATA sent",
    "sent/fragment",
    "ACKs/fragment",
    "queue drops",
    "undelivered",
    "released",
    "once, in order",
  ]];
  for (let seed = 1; seed <= 6; seed++) {
    const r = simulate(o, seed);
    rows.push([
      String(seed),
      r.seconds.toFixed(2),
      String(r.frags),
      String(r.sent),
      (r.sent / r.frags).toFixed(2),
      (r.acks / r.frags).toFixed(2),
      String(r.queueDrops),
      String(r.undelivered),
      `${r.got}/${o.count}`,
      r.inOrder ? "yes" : "NO",
    ]);
  }
  console.log(table(rows));
}

if (import.meta.main) {
  let o;
  try {
    o = parseOptions(Deno.args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`chat_bench: ${e.message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (o === "help") console.log(USAGE);
  else if (o.simLossPct !== null) simBench(o);
  else await bench(o);
}
