/**
 * Server throughput bench: starts a real `p2pchat serve` on 127.0.0.1, registers one fake peer
 * per client, floods the server with STUN Binding requests and/or keepalives from N client
 * sockets (each in its own worker, each with at most `--window` requests outstanding) and
 * prints requests sent, answered, answered/s, loss and round-trip percentiles, plus the
 * server's CPU use and peak RSS. Loopback only; it stops by itself and always kills the server.
 *
 * @example deno run -A bench/server_bench.ts --seconds 5 --clients 4 --mix both
 */
import { parseArgs } from "node:util";
import { bindingRequest, parseBindingResponse } from "../lib/stun/binding.ts";
import { toHex } from "../lib/wire/bytes.ts";
import { type ProcReading, readProc, udpSocketDrops, USER_HZ } from "./_proc.ts";
import {
  type ClientResult,
  type FromClient,
  type Kind,
  type KindResult,
  KINDS,
  type ToClient,
} from "./_messages.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CLIENT = new URL("./_client.ts", import.meta.url).href;
const HOST = "127.0.0.1";
const MIXES = ["stun", "keepalive", "both"] as const;
type Mix = typeof MIXES[number];

class UsageError extends Error {}

export interface Options {
  seconds: number;
  clients: number;
  mix: Mix;
  /** 0: pick a free port. */
  port: number;
  window: number;
  warmupSeconds: number;
  timeoutMs: number;
}

const USAGE = `usage: deno run -A bench/server_bench.ts [options]
  --seconds S     measured duration (default 5, at most 300)
  --clients N     client sockets, one worker each (default 4, at most 64)
  --mix M         stun | keepalive | both (default both: each client alternates)
  --port P        server UDP port on 127.0.0.1 (default: a free one)
  --window W      outstanding requests per client (default 32, at most 1024)
  --warmup S      unmeasured warm-up before the measured period (default 0.5)
  --timeout MS    a request unanswered this long is lost (default 1000)
`;

function num(text: string | undefined, flag: string, min: number, max: number, dflt: number) {
  if (text === undefined) return dflt;
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v) || v < min || v > max) {
    throw new UsageError(`Cannot parse ${flag} "${text}": use a number from ${min} to ${max}`);
  }
  return v;
}

function int(text: string | undefined, flag: string, min: number, max: number, dflt: number) {
  const v = num(text, flag, min, max, dflt);
  if (!Number.isInteger(v)) throw new UsageError(`Cannot parse ${flag} "${text}": not an integer`);
  return v;
}

/** Parses the command line; throws UsageError on a mistake. */
export function parseOptions(args: string[]): Options | "help" {
  let v;
  try {
    v = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        seconds: { type: "string" },
        clients: { type: "string" },
        mix: { type: "string" },
        port: { type: "string" },
        window: { type: "string" },
        warmup: { type: "string" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    throw new UsageError(`Cannot parse arguments: ${e instanceof Error ? e.message : e}`);
  }
  if (v.help) return "help";
  const mix = v.mix ?? "both";
  if (!(MIXES as readonly string[]).includes(mix)) {
    throw new UsageError(`Cannot parse --mix "${mix}": use ${MIXES.join(", ")}`);
  }
  const seconds = num(v.seconds, "--seconds", 0.1, 300, 5);
  return {
    seconds,
    clients: int(v.clients, "--clients", 1, 64, 4),
    mix: mix as Mix,
    port: int(v.port, "--port", 0, 65535, 0),
    window: int(v.window, "--window", 1, 1024, 32),
    warmupSeconds: num(v.warmup, "--warmup", 0, 30, 0.5),
    timeoutMs: int(v.timeout, "--timeout", 10, 10_000, 1000),
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

// ---- the server process ----

interface Server {
  child: Deno.ChildProcess;
  port: number;
  stderr: string[];
  exited: boolean;
  status: Promise<Deno.CommandStatus>;
}

function startServer(port: number): Server {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "serve",
      "--host",
      HOST,
      "--port",
      String(port),
      "--log-level",
      "warning",
      // Every bench client registers from 127.0.0.1; the per-IP limit is not what we measure.
      "--max-registrations",
      "100000",
      "--max-per-ip",
      "100000",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const server: Server = { child, port, stderr: [], exited: false, status: child.status };
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

/** Stops the server: SIGTERM, then SIGKILL if it lingers. Safe to call twice. */
async function stopServer(s: Server): Promise<void> {
  if (s.exited) return;
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

/** Waits until the server answers a STUN Binding request correctly (it logs nothing at warning). */
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
  throw new Error(`Cannot start p2pchat serve on ${HOST}:${s.port}: ${why}`);
}

// ---- the clients ----

interface Clients {
  workers: Worker[];
  /** Resolves when every client has registered. */
  ready: Promise<void>;
  /** Resolves when every client has finished the warm-up and drained. */
  warm: Promise<void>;
  results: Promise<ClientResult[]>;
}

function startClients(o: Options, serverPort: number): Clients {
  const kinds: Kind[] = o.mix === "both" ? ["stun", "keepalive"] : [o.mix];
  const room = `bench-${toHex(crypto.getRandomValues(new Uint8Array(3)))}`;
  const workers: Worker[] = [];
  const results: (ClientResult | undefined)[] = [];
  let readyCount = 0, warmCount = 0, resultCount = 0;
  let onReady!: () => void, onWarm!: () => void, onResults!: (r: ClientResult[]) => void;
  let fail!: (e: Error) => void;
  const failed = new Promise<never>((_, reject) => fail = reject);
  failed.catch(() => {}); // observed through `ready` and `results`
  const ready = Promise.race([new Promise<void>((r) => onReady = r), failed]);
  const warm = Promise.race([new Promise<void>((r) => onWarm = r), failed]);
  const all = Promise.race([
    new Promise<ClientResult[]>((r) => onResults = r),
    failed,
  ]);
  for (let i = 0; i < o.clients; i++) {
    const w = new Worker(CLIENT, { type: "module" });
    w.onmessage = (ev: MessageEvent<FromClient>) => {
      const m = ev.data;
      if (m.type === "error") return fail(new Error(`client ${m.index}: ${m.message}`));
      if (m.type === "ready" && ++readyCount === o.clients) onReady();
      if (m.type === "warm" && ++warmCount === o.clients) onWarm();
      if (m.type === "result") {
        results[m.index] = m.results;
        if (++resultCount === o.clients) onResults(results as ClientResult[]);
      }
    };
    w.onerror = (ev) => {
      ev.preventDefault();
      fail(new Error(`Cannot run client ${i}: ${ev.message}`));
    };
    workers.push(w);
    w.postMessage(
      {
        type: "init",
        index: i,
        serverPort,
        kinds,
        window: o.window,
        timeoutMs: o.timeoutMs,
        id: toHex(crypto.getRandomValues(new Uint8Array(8))),
        name: `bench-${i}`,
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
  const all = [head, ...body];
  const widths = head.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  return all.map((r) =>
    r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join("  ")
  ).join("\n");
}

function mib(kib: number | undefined): string {
  return kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;
}

// ---- main ----

async function bench(o: Options): Promise<void> {
  const port = o.port || freePort();
  const server = startServer(port);
  let clients: Clients | undefined;
  // The bench must stop by itself whatever happens: a hard deadline over everything.
  const budgetMs = 30_000 + (o.warmupSeconds + o.seconds) * 1000 + 3 * o.timeoutMs;
  const watchdog = setTimeout(() => {
    console.error(`server_bench: Cannot finish: still running after ${budgetMs} ms; giving up`);
    try {
      server.child.kill("SIGKILL");
    } catch { /* gone */ }
    Deno.exit(1);
  }, budgetMs);
  const onSignal = () => {
    try {
      server.child.kill("SIGKILL");
    } catch { /* gone */ }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    await waitReady(server, 20_000);
    const pid = server.child.pid;
    const atStart = readProc(pid);
    console.log(
      `p2pchat serve on ${HOST}:${port} (pid ${pid}); ${o.clients} clients x window ${o.window}, ` +
        `mix ${o.mix}, ${o.warmupSeconds} s warm-up + ${o.seconds} s measured, ` +
        `timeout ${o.timeoutMs} ms`,
    );
    clients = startClients(o, port);
    await clients.ready;
    const phase = (phase: "warmup" | "measure", ms: number) => {
      const m: ToClient = { type: "phase", phase, ms };
      for (const w of clients!.workers) w.postMessage(m);
    };
    phase("warmup", o.warmupSeconds * 1000);
    await clients.warm;
    const me = Deno.pid;
    const cpu0 = readProc(pid), me0 = readProc(me), drops0 = udpSocketDrops(port);
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
      throw new Error("Cannot trust the figures: the server exited during the run");
    }
    const end = readProc(pid);
    const drops1 = udpSocketDrops(port);

    const kinds = KINDS.filter((k) => results.some((r) => r[k].sent > 0));
    const rows = kinds.map((k) => merge(k, results.map((r) => r[k])));
    if (rows.length > 1) rows.push(merge("total", results.flatMap((r) => kinds.map((k) => r[k]))));
    console.log(table(rows, o.seconds));
    const unmatched = rows.filter((r) => r.label !== "total").reduce((n, r) => n + r.unmatched, 0);
    if (unmatched > 0) console.log(`replies that matched no outstanding request: ${unmatched}`);
    const cpu = (a: ProcReading, b: ProcReading) =>
      a.cpuTicks !== undefined && b.cpuTicks !== undefined
        ? `${((100 * (b.cpuTicks - a.cpuTicks)) / USER_HZ / o.seconds).toFixed(0)}%`
        : "n/a";
    const serverDrops = drops0 !== undefined && drops1 !== undefined
      ? String(drops1 - drops0)
      : "n/a";
    const clientDrops = results.every((r) => r.socketDrops !== undefined)
      ? String(results.reduce((n, r) => n + r.socketDrops!, 0))
      : "n/a";
    console.log(
      `CPU during the measured period (100% = one core; ${navigator.hardwareConcurrency} cores): ` +
        `server ${cpu(cpu0, cpu1)}, bench clients ${cpu(me0, me1)}`,
    );
    console.log(
      `server RSS: ${mib(atStart.rssKiB)} after start, ${mib(end.rssKiB)} at the end, ` +
        `peak (VmHWM) ${mib(end.peakKiB)}`,
    );
    console.log(
      `kernel drops (receive buffer full) from the measured period on: server socket ` +
        `${serverDrops}, client sockets ${clientDrops}`,
    );
    if (drops0 !== undefined && drops1 !== undefined && drops1 > drops0) {
      console.log(
        `note: the server socket's receive buffer overflowed: ${o.clients} x ${o.window} = ` +
          `${o.clients * o.window} requests outstanding is more than it holds, so the loss above ` +
          `is kernel drops (and keepalive latencies, matched by order, read high); ` +
          `lower --window to measure throughput`,
      );
    }
  } finally {
    clearTimeout(watchdog);
    Deno.removeSignalListener("SIGINT", onSignal);
    for (const w of clients?.workers ?? []) w.terminate();
    await stopServer(server);
    if (server.stderr.length > 0) {
      console.error(server.stderr.map((l) => `server: ${l}`).join("\n"));
    }
  }
}

if (import.meta.main) {
  let code = 0;
  try {
    const o = parseOptions(Deno.args);
    if (o === "help") console.log(USAGE);
    else await bench(o);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`server_bench: ${msg}`);
    if (e instanceof UsageError) console.error(USAGE);
    code = e instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
