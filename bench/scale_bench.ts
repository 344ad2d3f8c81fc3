/**
 * How many peers one server holds: starts a real `p2pchat serve` on 127.0.0.1, registers
 * `--peers` fake peers the way real peers do (each its own Ed25519 key, its own socket on its
 * own loopback address and port, REGISTER, COOKIE, signed REGISTER, REGISTER_OK; `--per-ip`
 * peers share an address, so the server's per-IP caps stay at their defaults), holds them with
 * keepalives at the interval the server asks for, for `--hold` seconds, and prints the server's
 * RSS, registrations per second, the keepalive answer rate, round trips and losses.
 *
 * The peers live in child processes (bench/_scale_peers.ts) of at most `--per-process` sockets
 * each, because one process may not open enough file descriptors for them all.
 *
 * @example deno run -A bench/scale_bench.ts --peers 100000 --hold 60
 */
import { bindingRequest, parseBindingResponse } from "../lib/stun/binding.ts";
import { loadAverage, type ProcReading, readProc, ssDrops, USER_HZ } from "./_proc.ts";
import type { SliceConfig, SliceRegistered, SliceResult } from "./_scale_peers.ts";
import { flags, int, UsageError } from "./_args.ts";
import { guard } from "./_guard.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const PEERS = new URL("./_scale_peers.ts", import.meta.url).pathname;
const HOST = "127.0.0.1";
/** The server's core when pinned; the peers get the others. */
const SERVER_CORE = 0;

interface Options {
  peers: number;
  holdSeconds: number;
  perIp: number;
  roomSize: number;
  perProcess: number;
  window: number;
  timeoutMs: number;
  keepaliveSeconds: number;
  pin: boolean;
  /** V8 flags for the server process (e.g. "--max-semi-space-size=1"), or "". */
  serverV8Flags: string;
}

const USAGE = `usage: deno run -A bench/scale_bench.ts [options]
  --peers N          fake peers to register and hold (default 100000, at most 250000)
  --hold S           seconds to hold them all with keepalives, measured (default 60, 10 to 900)
  --per-ip N         peers per loopback address (default 16, the server's default per-IP cap)
  --room-size N      peers per room (default 8)
  --per-process N    peer sockets per child process (default 16000: under a 20000 fd limit)
  --window N         registrations in progress at once, in all (default 128)
  --timeout MS       a keepalive unanswered this long is lost (default 2000)
  --keepalive S      the server's --keepalive (default 15, the server's own default)
  --no-pin           do not pin the server to core ${SERVER_CORE} and the peers to the others
  --server-v8-flags F  run the server with deno run --v8-flags=F (default: none)
`;

function parseOptions(args: string[]): Options | "help" {
  const v = flags(args, {
    peers: { type: "string" },
    hold: { type: "string" },
    "per-ip": { type: "string" },
    "room-size": { type: "string" },
    "per-process": { type: "string" },
    window: { type: "string" },
    timeout: { type: "string" },
    keepalive: { type: "string" },
    "no-pin": { type: "boolean" },
    "server-v8-flags": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) return "help";
  return {
    peers: int(v.peers, "--peers", 1, 250_000, 100_000),
    holdSeconds: int(v.hold, "--hold", 10, 900, 60),
    perIp: int(v["per-ip"], "--per-ip", 1, 1000, 16),
    roomSize: int(v["room-size"], "--room-size", 1, 64, 8),
    perProcess: int(v["per-process"], "--per-process", 100, 60_000, 16_000),
    window: int(v.window, "--window", 1, 4096, 128),
    timeoutMs: int(v.timeout, "--timeout", 100, 10_000, 2000),
    keepaliveSeconds: int(v.keepalive, "--keepalive", 1, 3600, 15),
    pin: !(v["no-pin"] ?? false),
    serverV8Flags: v["server-v8-flags"] ?? "",
  };
}

function freePort(): number {
  const s = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

function taskset(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir && Deno.statSync(`${dir}/taskset`).isFile) return `${dir}/taskset`;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Waits until the server answers a STUN Binding request. */
async function waitReady(port: number, ms: number, exited: () => boolean): Promise<void> {
  const conn = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  const txid = crypto.getRandomValues(new Uint8Array(12));
  const req = bindingRequest(txid);
  const to: Deno.NetAddr = { transport: "udp", hostname: HOST, port };
  const ping = setInterval(() => conn.send(req, to).catch(() => {}), 100);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (!exited()) {
      let got;
      try {
        got = await conn.receive();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource) break;
        continue;
      }
      if (parseBindingResponse(got[0], txid)) return;
    }
  } finally {
    clearInterval(ping);
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  throw new Error(`Cannot start p2pchat serve on ${HOST}:${port}: no STUN answer within ${ms} ms`);
}

/** A child process of peers, its JSON lines on stdout turned into messages. */
class Slice {
  readonly child: Deno.ChildProcess;
  private lines: AsyncGenerator<string>;
  private stdin: WritableStreamDefaultWriter<Uint8Array>;
  stderr: string[] = [];

  constructor(cfg: SliceConfig, prefix: string[]) {
    const cmd = [...prefix, Deno.execPath(), "run", "-A", PEERS, JSON.stringify(cfg)];
    const child = this.child = new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.stdin = this.child.stdin.getWriter();
    const out = this.child.stdout.pipeThrough(new TextDecoderStream());
    this.lines = (async function* () {
      let buf = "";
      for await (const chunk of out) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          yield buf.slice(0, nl);
          buf = buf.slice(nl + 1);
        }
      }
    })();
    (async () => {
      const dec = new TextDecoder();
      for await (const c of child.stderr) {
        if (this.stderr.length < 50) this.stderr.push(dec.decode(c));
      }
    })().catch(() => {});
  }

  async next<T>(type: string): Promise<T> {
    for (;;) {
      const l = await this.lines.next();
      if (l.done) {
        throw new Error(`Cannot run the peers: a child ended early: ${this.stderr.join("")}`);
      }
      if (!l.value.startsWith("{")) continue;
      const m = JSON.parse(l.value);
      if (m.type === type) return m as T;
    }
  }

  async say(line: string): Promise<void> {
    await this.stdin.write(new TextEncoder().encode(line + "\n"));
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

const mib = (kib: number | undefined) =>
  kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;

async function bench(o: Options): Promise<void> {
  const ts = o.pin && navigator.hardwareConcurrency >= 2 ? taskset() : undefined;
  const cores = navigator.hardwareConcurrency;
  const rest = cores === 2 ? "1" : `1-${cores - 1}`;
  const serverPrefix = ts ? [ts, "-c", String(SERVER_CORE)] : [];
  const peerPrefix = ts ? [ts, "-c", rest] : [];
  const port = freePort();
  const rooms = Math.ceil(o.peers / o.roomSize);
  const serverArgs = [
    "serve",
    "--host",
    HOST,
    "--port",
    String(port),
    "--alt-port",
    "0",
    "--log-level",
    "warning",
    "--keepalive",
    String(o.keepaliveSeconds),
    // Server-wide caps, raised to fit the bench; the per-IP and per-key caps keep their
    // defaults unless --per-ip asks for more peers per address.
    "--max-peers",
    String(o.peers),
    "--max-rooms",
    String(rooms),
    "--max-names",
    String(o.peers),
    ...(o.perIp > 16 ? ["--max-per-ip", String(o.perIp)] : []),
    ...(o.perIp > 64 ? ["--max-names-per-ip", String(o.perIp)] : []),
    ...(o.perIp > 30 ? ["--max-registrations", String(2 * o.perIp)] : []),
  ];
  const v8 = o.serverV8Flags ? [`--v8-flags=${o.serverV8Flags}`] : [];
  const server = new Deno.Command(serverPrefix[0] ?? Deno.execPath(), {
    args: [
      ...serverPrefix.slice(1),
      ...(ts ? [Deno.execPath()] : []),
      "run",
      "-A",
      ...v8,
      MAIN,
      ...serverArgs,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let serverExited = false;
  server.status.then(() => serverExited = true);
  const serverErr: string[] = [];
  (async () => {
    const dec = new TextDecoder();
    for await (const c of server.stderr) if (serverErr.length < 50) serverErr.push(dec.decode(c));
  })().catch(() => {});
  const slices: Slice[] = [];
  const killAll = () => {
    for (const s of slices) s.kill();
    try {
      server.kill("SIGKILL");
    } catch { /* gone */ }
  };
  // Hard deadline: start-up, registering (a generous 5 ms a peer: a shared machine can be slow),
  // the hold, the drain.
  const budgetMs = 120_000 + 5 * o.peers + (o.holdSeconds + 30) * 1000;
  const disarm = guard("scale_bench", budgetMs, killAll);
  try {
    await waitReady(port, 20_000, () => serverExited);
    const pid = server.pid;
    const atStart = readProc(pid);
    const n = Math.ceil(o.peers / o.perProcess);
    console.log(
      `p2pchat serve on ${HOST}:${port} (pid ${pid}), ${
        [...v8, ...serverArgs.slice(5)].join(" ")
      }; ` +
        `${o.peers} peers in ${n} processes, ${o.perIp} per loopback address, rooms of ` +
        `${o.roomSize}; ${
          ts ? `server on core ${SERVER_CORE}, peers on cores ${rest}` : "not pinned"
        }; ` +
        `load average ${loadAverage() ?? "n/a"}`,
    );
    const each = Math.ceil(o.peers / n);
    for (let i = 0; i < n; i++) {
      const first = i * each;
      const count = Math.min(each, o.peers - first);
      slices.push(
        new Slice({
          serverPort: port,
          first,
          count,
          perIp: o.perIp,
          roomSize: o.roomSize,
          window: Math.max(1, Math.round(o.window / n)),
          timeoutMs: o.timeoutMs,
          retryMs: 1000,
        }, peerPrefix),
      );
    }
    await Promise.all(slices.map((s) => s.next<{ type: "ready" }>("ready")));
    const cpuReg0 = readProc(pid);
    const t0 = performance.now();
    await Promise.all(slices.map((s) => s.say("register")));
    const regs = await Promise.all(slices.map((s) => s.next<SliceRegistered>("registered")));
    const regMs = performance.now() - t0;
    const cpuReg1 = readProc(pid);
    const ok = regs.reduce((a, r) => a + r.ok, 0);
    const failed = regs.reduce((a, r) => a + r.failed, 0);
    const resends = regs.reduce((a, r) => a + r.resends, 0);
    const firstAt = Math.min(...regs.map((r) => r.firstAt));
    const lastAt = Math.max(...regs.map((r) => r.lastAt));
    const regSeconds = (lastAt - firstAt) / 1000;
    const afterReg = readProc(pid);
    const cpuPct = (a: ProcReading, b: ProcReading, s: number) =>
      a.cpuTicks !== undefined && b.cpuTicks !== undefined
        ? `${((100 * (b.cpuTicks - a.cpuTicks)) / USER_HZ / s).toFixed(0)}%`
        : "n/a";
    console.log(
      `registered ${ok} of ${o.peers} (${failed} failed, ${resends} resent) in ` +
        `${regSeconds.toFixed(1)} s from the first REGISTER to the last REGISTER_OK: ` +
        `${(ok / regSeconds).toFixed(0)} registrations/s; server CPU ` +
        `${cpuPct(cpuReg0, cpuReg1, regMs / 1000)} meanwhile`,
    );
    const why = regs.find((r) => r.firstError)?.firstError;
    if (why) console.log(`first refusal: ${why}`);
    console.log(
      `server RSS: ${mib(atStart.rssKiB)} after start, ${mib(afterReg.rssKiB)} with ${ok} peers`,
    );

    const serverDrops = () => ssDrops(["src", `${HOST}:${port}`]);
    const peerDrops = () => ssDrops(["src", "127.1.0.0/16"]); // peerHost's addresses
    const [drops0, peers0] = await Promise.all([serverDrops(), peerDrops()]);
    const cpu0 = readProc(pid), me0 = slices.map((s) => readProc(s.child.pid));
    const rss: number[] = [];
    const sampler = setInterval(() => {
      const r = readProc(pid).rssKiB;
      if (r !== undefined) rss.push(r);
    }, 1000);
    await Promise.all(slices.map((s) => s.say(`hold ${o.holdSeconds * 1000}`)));
    const results = await Promise.all(slices.map((s) => s.next<SliceResult>("result")));
    clearInterval(sampler);
    const cpu1 = readProc(pid), me1 = slices.map((s) => readProc(s.child.pid));
    const [drops1, peers1] = await Promise.all([serverDrops(), peerDrops()]);
    if (serverExited) throw new Error("Cannot trust the figures: the server exited during the run");
    const end = readProc(pid);
    const sum = (k: "sent" | "answered" | "lost" | "errors" | "unmatched" | "other") =>
      results.reduce((a, r) => a + r[k], 0);
    const rtt = new Float64Array(results.reduce((a, r) => a + r.rttUs.length, 0));
    let at = 0;
    for (const r of results) {
      rtt.set(r.rttUs, at);
      at += r.rttUs.length;
    }
    rtt.sort();
    const holdS = o.holdSeconds + o.timeoutMs / 1000;
    const sent = sum("sent"), answered = sum("answered");
    console.log(
      `hold ${o.holdSeconds} s, keepalive every ${o.keepaliveSeconds} s: ${sent} keepalives sent ` +
        `(${(sent / o.holdSeconds).toFixed(0)}/s), ${answered} answered ` +
        `(${sent ? ((100 * answered) / sent).toFixed(3) : "-"}%), ${sum("lost")} lost, ` +
        `${sum("errors")} answered with an error (peer forgotten), ${sum("unmatched")} late`,
    );
    console.log(
      `keepalive round trip: p50 ${percentile(rtt, 50).toFixed(0)} µs, p99 ` +
        `${percentile(rtt, 99).toFixed(0)} µs, p99.9 ${percentile(rtt, 99.9).toFixed(0)} µs, ` +
        `max ${percentile(rtt, 100).toFixed(0)} µs`,
    );
    const peerCpu = me0.reduce((a, p0, i) => {
      const p1 = me1[i]!;
      return p0.cpuTicks !== undefined && p1.cpuTicks !== undefined
        ? a + (p1.cpuTicks - p0.cpuTicks)
        : a;
    }, 0);
    console.log(
      `CPU during the hold (100% = one core): server ${cpuPct(cpu0, cpu1, holdS)}, peers ` +
        `${((100 * peerCpu) / USER_HZ / holdS).toFixed(0)}%; server socket kernel drops ` +
        `${
          drops0 !== undefined && drops1 !== undefined ? drops1 - drops0 : "n/a"
        }, peers' sockets ` +
        `${peers0 !== undefined && peers1 !== undefined ? peers1 - peers0 : "n/a"}`,
    );
    console.log(
      `server RSS during the hold: min ${mib(Math.min(...rss))}, max ${mib(Math.max(...rss))}, ` +
        `at the end ${mib(end.rssKiB)}; peak over its life (VmHWM) ${mib(end.peakKiB)}`,
    );
  } finally {
    disarm();
    for (const s of slices) s.kill();
    await Promise.all(slices.map((s) => s.child.status.catch(() => {})));
    try {
      server.kill("SIGTERM");
    } catch { /* gone */ }
    const t = setTimeout(() => {
      try {
        server.kill("SIGKILL");
      } catch { /* gone */ }
    }, 3000);
    await server.status.catch(() => {});
    clearTimeout(t);
    if (serverErr.length > 0) {
      console.error(serverErr.join("").trim().split("\n").map((l) => `server: ${l}`).join("\n"));
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
    console.error(`scale_bench: ${e instanceof Error ? e.message : e}`);
    if (e instanceof UsageError) console.error(USAGE);
    code = e instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
