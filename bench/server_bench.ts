/**
 * Server throughput bench: starts a real `p2pchat serve` on 127.0.0.1, registers one fake peer
 * per client, floods the server with STUN Binding requests and/or keepalives from N client
 * sockets (each in its own worker, each with at most `--window` requests outstanding) and
 * prints requests sent, answered, answered/s, loss and round-trip percentiles, plus the
 * server's CPU use and peak RSS. Loopback only; it stops by itself and always kills the server.
 *
 * `--vs-coturn` measures coturn's `turnserver` (STUN only, one relay thread) beside it in the
 * same run: rounds of STUN throughput taking turns, then round-trip times at one fixed offered
 * rate for both. `--rate` sends at a fixed rate instead of keeping a window full.
 *
 * @example deno run -A bench/server_bench.ts --seconds 5 --clients 4 --mix both
 * @example deno run -A bench/server_bench.ts --vs-coturn
 */
import { bindingRequest, parseBindingResponse } from "../lib/stun/binding.ts";
import { toHex } from "../lib/wire/bytes.ts";
import {
  loadAverage,
  type ProcReading,
  readProc,
  socketsOf,
  udpSocketDrops,
  USER_HZ,
} from "./_proc.ts";
import {
  type ClientResult,
  type FromClient,
  type Kind,
  type KindResult,
  KINDS,
  type ToClient,
} from "./_messages.ts";
import { flags, int, num, UsageError } from "./_args.ts";
import { guard } from "./_guard.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CLIENT = new URL("./_client.ts", import.meta.url).href;
const HOST = "127.0.0.1";
const MIXES = ["stun", "keepalive", "both"] as const;
type Mix = typeof MIXES[number];
/** The core the server runs on when pinned; the bench takes the others. */
const SERVER_CORE = 0;

export interface Options {
  seconds: number;
  clients: number;
  mix: Mix;
  /** 0: pick a free port. */
  port: number;
  window: number;
  warmupSeconds: number;
  timeoutMs: number;
  /** Total requests per second, open loop; 0: closed loop (keep `window` outstanding). */
  rate: number;
  /** Also measure coturn, STUN only, in the same run. */
  vsCoturn: boolean;
  /** With vsCoturn: throughput rounds per server, taking turns. */
  rounds: number;
  /** With vsCoturn: the fixed offered rate (requests/s) latency is measured at. */
  latencyRate: number;
  /** Pin the server(s) to one core and the bench to the others (taskset), where possible. */
  pin: boolean;
  /**
   * Run p2pchat with `deno task serve`'s permissions (no FFI), so its sockets are
   * Deno.DatagramConn rather than batched system calls.
   */
  denoSockets: boolean;
  /** V8 flags for the p2pchat server process, or "". */
  serverV8Flags: string;
}

const USAGE = `usage: deno run -A bench/server_bench.ts [options]
  --seconds S     measured duration (default 5, at most 300)
  --clients N     client sockets, spread over one worker per bench core (default 4, at most 64)
  --mix M         stun | keepalive | both (default both: each client alternates)
  --port P        server UDP port on 127.0.0.1 (default: a free one)
  --window W      outstanding requests per client (default 32, at most 1024)
  --rate R        send R requests/s in all, answered or not (open loop; default: window)
  --warmup S      unmeasured warm-up before the measured period (default 0.5)
  --timeout MS    a request unanswered this long is lost (default 1000)
  --vs-coturn     also run coturn's turnserver (STUN only, one relay thread) and compare:
                  STUN only, --rounds rounds each taking turns, then latency at --latency-rate
  --rounds N      with --vs-coturn: throughput rounds per server (default 3, at most 20)
  --latency-rate R  with --vs-coturn: the fixed offered rate for latency (default 20000)
  --no-pin        do not pin the server to core ${SERVER_CORE} and the bench to the others
  --deno-sockets  run p2pchat without the FFI permission (as on macOS and Windows): its sockets
                  are then Deno.DatagramConn, not batched system calls
  --server-v8-flags F  run p2pchat with deno run --v8-flags=F (default: none)
`;

/** Parses the command line; throws UsageError on a mistake. */
export function parseOptions(args: string[]): Options | "help" {
  const v = flags(args, {
    seconds: { type: "string" },
    clients: { type: "string" },
    mix: { type: "string" },
    port: { type: "string" },
    window: { type: "string" },
    rate: { type: "string" },
    warmup: { type: "string" },
    timeout: { type: "string" },
    "vs-coturn": { type: "boolean" },
    rounds: { type: "string" },
    "latency-rate": { type: "string" },
    "no-pin": { type: "boolean" },
    "deno-sockets": { type: "boolean" },
    "server-v8-flags": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) return "help";
  const vsCoturn = v["vs-coturn"] ?? false;
  const mix = v.mix ?? (vsCoturn ? "stun" : "both");
  if (!(MIXES as readonly string[]).includes(mix)) {
    throw new UsageError(`Cannot parse --mix "${mix}": use ${MIXES.join(", ")}`);
  }
  if (vsCoturn && mix !== "stun") {
    throw new UsageError(`Cannot use --mix ${mix} with --vs-coturn: coturn answers STUN only`);
  }
  if (vsCoturn && v.rate !== undefined) {
    throw new UsageError("Cannot use --rate with --vs-coturn: use --latency-rate");
  }
  const seconds = num(v.seconds, "--seconds", 0.1, 300, 5);
  return {
    seconds,
    clients: int(v.clients, "--clients", 1, 64, 4),
    mix: mix as Mix,
    port: int(v.port, "--port", 0, 65535, 0),
    window: int(v.window, "--window", 1, 1024, 32),
    rate: int(v.rate, "--rate", 0, 1_000_000, 0),
    warmupSeconds: num(v.warmup, "--warmup", 0, 30, 0.5),
    timeoutMs: int(v.timeout, "--timeout", 10, 10_000, 1000),
    vsCoturn,
    rounds: int(v.rounds, "--rounds", 1, 20, 3),
    latencyRate: int(v["latency-rate"], "--latency-rate", 100, 1_000_000, 20_000),
    pin: !(v["no-pin"] ?? false),
    denoSockets: v["deno-sockets"] ?? false,
    serverV8Flags: v["server-v8-flags"] ?? "",
  };
}

function freePort(): number {
  const s = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The path of `name` on PATH, or undefined. */
function onPath(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const p = `${dir}/${name}`;
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

// ---- pinning ----

/**
 * Pins this process (every thread it has; workers started later inherit the main thread's
 * mask) to every core but SERVER_CORE. Returns the `taskset` prefix that puts a server on
 * SERVER_CORE (or [] and why it could not pin) and how many cores the bench's workers get.
 */
async function pinBench(
  o: Options,
): Promise<{ prefix: string[]; note: string; benchCores: number }> {
  const cores = navigator.hardwareConcurrency;
  // Unpinned, the server takes about one core whatever happens.
  const unpinned = (why: string) => ({
    prefix: [],
    note: `not pinned (${why})`,
    benchCores: Math.max(1, cores - 1),
  });
  if (!o.pin) return unpinned("--no-pin");
  const taskset = onPath("taskset");
  if (!taskset || cores < 2) return unpinned(taskset ? `${cores} core` : "no taskset");
  const rest = cores === 2 ? String(SERVER_CORE + 1) : `${SERVER_CORE + 1}-${cores - 1}`;
  const r = await new Deno.Command(taskset, {
    args: ["-a", "-p", "-c", rest, String(Deno.pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!r.success) return unpinned(`taskset: ${new TextDecoder().decode(r.stderr).trim()}`);
  return {
    prefix: [taskset, "-c", String(SERVER_CORE)],
    note: `server on core ${SERVER_CORE}, bench on cores ${rest}`,
    benchCores: cores - 1,
  };
}

// ---- the server processes ----

interface Server {
  name: "p2pchat" | "coturn";
  child: Deno.ChildProcess;
  port: number;
  stderr: string[];
  exited: boolean;
  status: Promise<Deno.CommandStatus>;
  /** A directory to remove once it is stopped. */
  dir?: string;
}

function spawn(
  name: Server["name"],
  cmd: string[],
  port: number,
  dir?: string,
): Server {
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const server: Server = { name, child, port, stderr: [], exited: false, status: child.status };
  if (dir) server.dir = dir;
  server.status.then(() => server.exited = true);
  (async () => {
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of child.stderr) {
        buf += dec.decode(chunk, { stream: true });
        const lines = buf.split("\n");
        buf = lines.pop()!;
        // Keep the first lines: a flood of identical errors should not eat memory.
        for (const l of lines) if (server.stderr.length < 200) server.stderr.push(l);
      }
    } catch { /* killed */ }
  })();
  return server;
}

/** Without the FFI permission: no batched system calls, as on macOS and Windows. */
const TASK_PERMISSIONS = ["--allow-net", "--allow-env", "--allow-sys"];

function startP2pchat(port: number, prefix: string[], o: Options): Server {
  return spawn("p2pchat", [
    ...prefix,
    Deno.execPath(),
    "run",
    ...(o.denoSockets ? TASK_PERMISSIONS : ["-A"]),
    ...(o.serverV8Flags ? [`--v8-flags=${o.serverV8Flags}`] : []),
    MAIN,
    "serve",
    "--host",
    HOST,
    "--port",
    String(port),
    "--alt-port",
    "0", // no RFC 5780 socket: one port, as coturn gets
    "--log-level",
    "warning",
    // Every bench client registers from 127.0.0.1; the per-IP limit is not what we measure.
    "--max-registrations",
    "100000",
    "--max-per-ip",
    "100000",
  ], port);
}

/**
 * coturn as a STUN server: no configuration file (-n), STUN only, one relay thread, UDP on
 * 127.0.0.1 alone (no TCP, TLS, DTLS, CLI), its database and pid file in a directory of ours.
 */
function startCoturn(port: number, prefix: string[], turnserver: string): Server {
  const dir = Deno.makeTempDirSync({ prefix: "p2pchat-bench-coturn-" });
  return spawn(
    "coturn",
    [
      ...prefix,
      turnserver,
      "-n",
      "--stun-only",
      "-m",
      "1",
      "--listening-ip",
      HOST,
      "--listening-port",
      String(port),
      "--no-tcp",
      "--no-tls",
      "--no-dtls",
      "--no-cli",
      "--log-file",
      "stdout",
      "--simple-log",
      "--db",
      `${dir}/turndb`,
      "--pidfile",
      `${dir}/turnserver.pid`,
    ],
    port,
    dir,
  );
}

/** Stops a server: SIGTERM, then SIGKILL if it lingers. Safe to call twice. */
async function stopServer(s: Server): Promise<void> {
  if (!s.exited) {
    try {
      s.child.kill("SIGTERM");
    } catch { /* gone */ }
    const t = setTimeout(() => {
      try {
        s.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 2000);
    await s.status.catch(() => {});
    clearTimeout(t);
  }
  if (s.dir) {
    try {
      Deno.removeSync(s.dir, { recursive: true });
    } catch { /* already gone */ }
  }
}

function killNow(s: Server): void {
  try {
    s.child.kill("SIGKILL");
  } catch { /* gone */ }
}

/** Waits until the server answers a STUN Binding request correctly. */
async function waitReady(s: Server, ms: number): Promise<void> {
  const conn = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  const local = (conn.addr as Deno.NetAddr).port;
  const txid = crypto.getRandomValues(new Uint8Array(12));
  const req = bindingRequest(txid);
  const to: Deno.NetAddr = { transport: "udp", hostname: HOST, port: s.port };
  let ok = false;
  const ping = setInterval(() => conn.send(req, to).catch(() => {}), 100);
  conn.send(req, to).catch(() => {});
  const deadline = Date.now() + ms;
  const close = () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  // Either ends a receive() that would otherwise wait forever.
  const timer = setTimeout(close, ms);
  s.status.then(close);
  try {
    while (Date.now() < deadline && !s.exited) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await conn.receive();
      } catch {
        // ICMP port unreachable while the server is starting, or closed by a timer.
        await sleep(20);
        continue;
      }
      const mapped = parseBindingResponse(got[0], txid);
      if (mapped && mapped.host === HOST && mapped.port === local) {
        ok = true;
        break;
      }
    }
  } finally {
    clearInterval(ping);
    clearTimeout(timer);
    close();
  }
  if (ok) return;
  const why = s.exited ? "it exited" : `no STUN answer within ${ms} ms`;
  // The server's own stderr, if any, is printed when it is stopped.
  throw new Error(`Cannot start ${s.name} on ${HOST}:${s.port}: ${why}`);
}

/** Fails unless every socket of `s` is on loopback: the bench never listens anywhere else. */
function checkLoopbackOnly(s: Server): string {
  const socks = socketsOf(s.child.pid);
  if (socks === undefined) return "n/a";
  const open = socks.map((k) => `${k.proto} ${k.host}:${k.port}`);
  const outside = socks.filter((k) => k.host !== HOST && k.host !== "::1");
  if (outside.length > 0) {
    throw new Error(`Cannot go on: ${s.name} listens beyond loopback (${open.join(", ")})`);
  }
  return open.join(", ");
}

// ---- the clients ----

interface Clients {
  workers: Worker[];
  /** Resolves when every client has registered; whether they use batched system calls. */
  ready: Promise<boolean>;
  /** Resolves when every client has finished the warm-up and drained. */
  warm: Promise<void>;
  results: Promise<ClientResult[]>;
}

interface Load {
  mix: Mix;
  /** Requests/s in all (open loop), or 0 for closed loop. */
  rate: number;
  register: boolean;
}

/**
 * Workers for `o.clients` sockets. A busy-looping worker owns a core, so there are at most as
 * many workers as the bench has cores; each drives its share of the sockets.
 */
function startClients(o: Options, load: Load, serverPort: number, cores: number): Clients {
  const kinds: Kind[] = load.mix === "both" ? ["stun", "keepalive"] : [load.mix];
  const room = `bench-${toHex(crypto.getRandomValues(new Uint8Array(3)))}`;
  const n = Math.max(1, Math.min(o.clients, cores));
  const workers: Worker[] = [];
  const results: (ClientResult | undefined)[] = [];
  let readyCount = 0, warmCount = 0, resultCount = 0, busy = true;
  let onReady!: (b: boolean) => void, onWarm!: () => void;
  let onResults!: (r: ClientResult[]) => void;
  let fail!: (e: Error) => void;
  const failed = new Promise<never>((_, reject) => fail = reject);
  const ready = Promise.race([new Promise<boolean>((r) => onReady = r), failed]);
  const warm = Promise.race([new Promise<void>((r) => onWarm = r), failed]);
  const all = Promise.race([
    new Promise<ClientResult[]>((r) => onResults = r),
    failed,
  ]);
  // A failure is seen by whichever of these is awaited at the time; not by the others.
  for (const p of [failed, ready, warm, all]) p.catch(() => {});
  for (let i = 0; i < n; i++) {
    const w = new Worker(CLIENT, { type: "module" });
    w.onmessage = (ev: MessageEvent<FromClient>) => {
      const m = ev.data;
      if (m.type === "error") return fail(new Error(`client ${m.index}: ${m.message}`));
      if (m.type === "ready") {
        busy &&= m.busy;
        if (++readyCount === n) onReady(busy);
      }
      if (m.type === "warm" && ++warmCount === n) onWarm();
      if (m.type === "result") {
        results[m.index] = m.results;
        if (++resultCount === n) onResults(results as ClientResult[]);
      }
    };
    w.onerror = (ev) => {
      ev.preventDefault();
      fail(new Error(`Cannot run client ${i}: ${ev.message}`));
    };
    workers.push(w);
    const clients = [];
    for (let c = i; c < o.clients; c += n) {
      clients.push({ id: toHex(crypto.getRandomValues(new Uint8Array(8))), name: `bench-${c}` });
    }
    w.postMessage(
      {
        type: "init",
        index: i,
        serverPort,
        kinds,
        window: o.window,
        rate: (load.rate * clients.length) / o.clients,
        timeoutMs: o.timeoutMs,
        register: load.register,
        clients,
        room,
      } satisfies ToClient,
    );
  }
  return { workers, ready, warm, results: all };
}

// ---- figures ----

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

interface Row {
  label: string;
  sent: number;
  answered: number;
  errors: number;
  lost: number;
  unmatched: number;
  rtt: Float64Array;
}

function merge(label: string, parts: KindResult[]): Row {
  const row: Row = { label, sent: 0, answered: 0, errors: 0, lost: 0, unmatched: 0, rtt: null! };
  let n = 0;
  for (const p of parts) {
    row.sent += p.sent;
    row.answered += p.answered;
    row.errors += p.errors;
    row.lost += p.lost;
    row.unmatched += p.unmatched;
    n += p.rttUs.length;
  }
  row.rtt = new Float64Array(n);
  let at = 0;
  for (const p of parts) {
    row.rtt.set(p.rttUs, at);
    at += p.rttUs.length;
  }
  row.rtt.sort();
  return row;
}

function table(rows: Row[], seconds: number): string {
  const head = ["mix", "sent", "answered", "answered/s", "loss %", "p50 µs", "p99 µs", "errors"];
  const body = rows.map((r) => [
    r.label,
    String(r.sent),
    String(r.answered),
    (r.answered / seconds).toFixed(0),
    r.sent ? ((100 * r.lost) / r.sent).toFixed(3) : "-",
    r.rtt.length ? percentile(r.rtt, 50).toFixed(0) : "-",
    r.rtt.length ? percentile(r.rtt, 99).toFixed(0) : "-",
    String(r.errors),
  ]);
  return align([head, ...body]);
}

function align(all: string[][]): string {
  const widths = all[0]!.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  return all.map((r) =>
    r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join("  ")
  ).join("\n");
}

function mib(kib: number | undefined): string {
  return kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;
}

/** What one measured period gave. */
interface Figures {
  rows: Row[];
  /** The all-kinds row (the only one for a single kind). */
  total: Row;
  /** Server and bench CPU over the measured period, in cores (1 = one core busy). */
  serverCores?: number;
  benchCores?: number;
  serverDrops?: number;
  clientDrops?: number;
  /** Open loop: sends skipped because too many were outstanding. */
  skipped: number;
  batched: boolean;
  end: ProcReading;
}

/** One warm-up and one measured period of `load` against `server`. */
async function measure(
  o: Options,
  server: Server,
  load: Load,
  cores: number,
): Promise<Figures> {
  const clients = startClients(o, load, server.port, cores);
  try {
    const batched = await clients.ready;
    const phase = (phase: "warmup" | "measure", ms: number) => {
      const m: ToClient = { type: "phase", phase, ms };
      for (const w of clients.workers) w.postMessage(m);
    };
    phase("warmup", o.warmupSeconds * 1000);
    await clients.warm;
    const pid = server.child.pid, me = Deno.pid;
    const cpu0 = readProc(pid), me0 = readProc(me), drops0 = udpSocketDrops(server.port);
    let cpu1: ProcReading = {}, me1: ProcReading = {};
    phase("measure", o.seconds * 1000);
    const t1 = setTimeout(() => {
      cpu1 = readProc(pid);
      me1 = readProc(me);
    }, o.seconds * 1000);
    let results;
    try {
      results = await clients.results;
    } finally {
      clearTimeout(t1);
    }
    if (server.exited) {
      throw new Error(`Cannot trust the figures: ${server.name} exited during the run`);
    }
    const drops1 = udpSocketDrops(server.port);
    const kinds = KINDS.filter((k) => results.some((r) => r[k].sent > 0));
    const rows = kinds.map((k) => merge(k, results.map((r) => r[k])));
    const total = rows.length > 1
      ? merge("total", results.flatMap((r) => kinds.map((k) => r[k])))
      : rows[0]!;
    if (rows.length > 1) rows.push(total);
    const cores = (a: ProcReading, b: ProcReading) =>
      a.cpuTicks !== undefined && b.cpuTicks !== undefined
        ? (b.cpuTicks - a.cpuTicks) / USER_HZ / o.seconds
        : undefined;
    const f: Figures = {
      rows,
      total,
      skipped: results.reduce((n, r) => n + r.skipped, 0),
      batched,
      end: readProc(pid),
    };
    const s = cores(cpu0, cpu1), b = cores(me0, me1);
    if (s !== undefined) f.serverCores = s;
    if (b !== undefined) f.benchCores = b;
    if (drops0 !== undefined && drops1 !== undefined) f.serverDrops = drops1 - drops0;
    if (results.every((r) => r.socketDrops !== undefined)) {
      f.clientDrops = results.reduce((n, r) => n + r.socketDrops!, 0);
    }
    return f;
  } finally {
    for (const w of clients.workers) w.terminate();
  }
}

const pct = (cores: number | undefined) =>
  cores === undefined ? "n/a" : `${(100 * cores).toFixed(0)}%`;

/** Runs `fn` with a hard deadline and Ctrl-C handling that always kill `servers`. */
async function guarded(
  servers: Server[],
  budgetMs: number,
  fn: () => Promise<void>,
): Promise<void> {
  const disarm = guard("server_bench", budgetMs, () => servers.forEach(killNow));
  try {
    await fn();
  } finally {
    disarm();
    for (const s of servers) {
      await stopServer(s);
      if (s.stderr.length > 0) console.error(s.stderr.map((l) => `${s.name}: ${l}`).join("\n"));
    }
  }
}

/** One measured period, as a bench run always was. */
async function single(o: Options): Promise<void> {
  const pin = await pinBench(o);
  const port = o.port || freePort();
  const server = startP2pchat(port, pin.prefix, o);
  const budgetMs = 30_000 + (o.warmupSeconds + o.seconds) * 1000 + 3 * o.timeoutMs;
  await guarded([server], budgetMs, async () => {
    await waitReady(server, 20_000);
    const pid = server.child.pid;
    const atStart = readProc(pid);
    const load = o.rate > 0 ? `rate ${o.rate}/s (open loop)` : `window ${o.window}`;
    console.log(
      `p2pchat serve on ${HOST}:${port} (pid ${pid}); ${o.clients} clients x ${load}, ` +
        `mix ${o.mix}, ${o.warmupSeconds} s warm-up + ${o.seconds} s measured, ` +
        `timeout ${o.timeoutMs} ms; ${pin.note}; load average ${loadAverage() ?? "n/a"}; ` +
        `server sockets: ${
          o.denoSockets ? "Deno.DatagramConn (no FFI)" : "batched where usable (-A)"
        }`,
    );
    const f = await measure(o, server, {
      mix: o.mix,
      rate: o.rate,
      register: o.mix !== "stun",
    }, pin.benchCores);
    console.log(table(f.rows, o.seconds));
    const unmatched = f.rows.filter((r) => r.label !== "total").reduce(
      (n, r) => n + r.unmatched,
      0,
    );
    if (unmatched > 0) console.log(`replies that matched no outstanding request: ${unmatched}`);
    if (f.skipped > 0) console.log(`sends skipped (too many outstanding): ${f.skipped}`);
    console.log(
      `CPU during the measured period (100% = one core; ${navigator.hardwareConcurrency} cores): ` +
        `server ${pct(f.serverCores)}, bench clients ${pct(f.benchCores)} ` +
        `(${f.batched ? "batched system calls, busy loop" : "Deno.DatagramConn"})`,
    );
    console.log(
      `server RSS: ${mib(atStart.rssKiB)} after start, ${mib(f.end.rssKiB)} at the end, ` +
        `peak (VmHWM) ${mib(f.end.peakKiB)}`,
    );
    console.log(
      `kernel drops (receive buffer full) from the measured period on: server socket ` +
        `${f.serverDrops ?? "n/a"}, client sockets ${f.clientDrops ?? "n/a"}`,
    );
    if ((f.serverDrops ?? 0) > 0) {
      console.log(
        `note: the server socket's receive buffer overflowed: ${o.clients} x ${o.window} = ` +
          `${o.clients * o.window} requests outstanding is more than it holds, so the loss above ` +
          `is kernel drops (and keepalive latencies, matched by order, read high); ` +
          `lower --window to measure throughput`,
      );
    }
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** p2pchat and coturn side by side: throughput rounds taking turns, then fixed-rate latency. */
async function vsCoturn(o: Options): Promise<void> {
  const turnserver = onPath("turnserver");
  if (!turnserver) {
    throw new Error(
      "Cannot compare with coturn: no turnserver on PATH (Debian: apt-get install coturn)",
    );
  }
  const pin = await pinBench(o);
  const servers = [
    startP2pchat(o.port || freePort(), pin.prefix, o),
    startCoturn(freePort(), pin.prefix, turnserver),
  ];
  const period = (o.warmupSeconds + o.seconds) * 1000 + 2 * o.timeoutMs + 3000;
  const budgetMs = 60_000 + (2 * o.rounds + 2) * period;
  await guarded(servers, budgetMs, async () => {
    for (const s of servers) await waitReady(s, 20_000);
    console.log(
      `STUN Binding, ${o.clients} clients, ${o.warmupSeconds} s warm-up + ${o.seconds} s ` +
        `measured per period; ${pin.note}; load average ${loadAverage() ?? "n/a"}; p2pchat ` +
        `sockets: ${o.denoSockets ? "Deno.DatagramConn (no FFI)" : "batched where usable (-A)"}` +
        (o.serverV8Flags ? `, --v8-flags=${o.serverV8Flags}` : ""),
    );
    for (const s of servers) {
      console.log(`${s.name} (pid ${s.child.pid}) sockets: ${checkLoopbackOnly(s)}`);
    }
    const head = [
      "round",
      "server",
      "answered/s",
      "loss %",
      "p99 µs",
      "server CPU",
      "bench CPU",
      "answered per server CPU-s",
    ];
    const lines: string[][] = [head];
    const rates: Record<Server["name"], number[]> = { p2pchat: [], coturn: [] };
    const perCpu: Record<Server["name"], number[]> = { p2pchat: [], coturn: [] };
    let batched = true;
    console.log(`throughput: each client keeps ${o.window} requests outstanding`);
    for (let r = 1; r <= o.rounds; r++) {
      // Take turns, and swap who goes first, so a drift in the machine's load hits both.
      const order = r % 2 ? servers : [...servers].reverse();
      for (const s of order) {
        const f = await measure(o, s, { mix: "stun", rate: 0, register: false }, pin.benchCores);
        batched &&= f.batched;
        const rate = f.total.answered / o.seconds;
        rates[s.name].push(rate);
        const per = f.serverCores ? rate / f.serverCores : NaN;
        if (Number.isFinite(per)) perCpu[s.name].push(per);
        const line = [
          String(r),
          s.name,
          rate.toFixed(0),
          f.total.sent ? ((100 * f.total.lost) / f.total.sent).toFixed(3) : "-",
          f.total.rtt.length ? percentile(f.total.rtt, 99).toFixed(0) : "-",
          pct(f.serverCores),
          pct(f.benchCores),
          Number.isFinite(per) ? per.toFixed(0) : "n/a",
        ];
        lines.push(line);
        console.log(line.join("  "));
      }
    }
    console.log(align(lines));
    const ratio = median(rates.p2pchat) / median(rates.coturn);
    console.log(
      `median answered/s: p2pchat ${median(rates.p2pchat).toFixed(0)}, coturn ` +
        `${median(rates.coturn).toFixed(0)}; ratio p2pchat/coturn ${ratio.toFixed(2)}`,
    );
    if (perCpu.p2pchat.length > 0 && perCpu.coturn.length > 0) {
      const r = median(perCpu.p2pchat) / median(perCpu.coturn);
      console.log(
        `median answered per server CPU-second: p2pchat ${median(perCpu.p2pchat).toFixed(0)}, ` +
          `coturn ${median(perCpu.coturn).toFixed(0)}; ratio ${r.toFixed(2)}`,
      );
    }
    console.log(
      `bench clients: ${
        batched ? "batched system calls, busy loop" : "Deno.DatagramConn (no FFI)"
      }`,
    );

    console.log(`latency: ${o.latencyRate} requests/s offered in all (open loop)`);
    const lat: string[][] = [
      ["server", "sent", "answered", "loss %", "p50 µs", "p99 µs", "p99.9 µs", "server CPU"],
    ];
    for (const s of servers) {
      const load = { mix: "stun" as const, rate: o.latencyRate, register: false };
      const f = await measure(o, s, load, pin.benchCores);
      const t = f.total;
      lat.push([
        s.name,
        String(t.sent),
        String(t.answered),
        t.sent ? ((100 * t.lost) / t.sent).toFixed(3) : "-",
        t.rtt.length ? percentile(t.rtt, 50).toFixed(0) : "-",
        t.rtt.length ? percentile(t.rtt, 99).toFixed(0) : "-",
        t.rtt.length ? percentile(t.rtt, 99.9).toFixed(0) : "-",
        pct(f.serverCores),
      ]);
      if (f.skipped > 0) {
        console.log(`${s.name}: ${f.skipped} sends skipped (too many outstanding)`);
      }
    }
    console.log(align(lat));
    for (const s of servers) {
      const p = readProc(s.child.pid);
      console.log(`${s.name} RSS at the end: ${mib(p.rssKiB)}, peak ${mib(p.peakKiB)}`);
    }
  });
}

if (import.meta.main) {
  let code = 0;
  try {
    const o = parseOptions(Deno.args);
    if (o === "help") console.log(USAGE);
    else if (o.vsCoturn) await vsCoturn(o);
    else await single(o);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`server_bench: ${msg}`);
    if (e instanceof UsageError) console.error(USAGE);
    code = e instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
