/**
 * The adversarial soak, shared by tests/robust/soak_test.ts (short, with assertions) and
 * bench/soak_bench.ts (long, figures only). Real processes on loopback: a server, alice and
 * bob chatting through --json stdin/stdout (alice sends every ~200 ms; bob answers each one,
 * so every message is checked once and in order, and alice's answer times are round trips),
 * and, in this process, a malicious member and name churn:
 *
 * - mallory (registered through the real cookie + signature flow, from 127.0.0.2) floods bob
 *   with HELLOs direct and relayed: junk inits under a good mac1, junk under a bad one, replays
 *   of her own answered init, fresh valid inits; with a real Noise session she sends sealed
 *   DATA fragments of messages that never complete; plaintext DATA; CONNECTs for bob;
 * - churners from 127.0.0.3 and 127.0.0.4 register and leave in a loop (a handful of names,
 *   within the per-IP caps and registration rate), so alice's and bob's rosters churn.
 *
 * Meanwhile a STUN prober checks the server answers, and bob's and the server's memory and CPU
 * are sampled from /proc. All traffic stays on loopback (127.0.0.0/8).
 */
import { freePort } from "../e2e/harness.ts";
import { readProc, USER_HZ } from "../../bench/_proc.ts";
import { type Identity, newIdentity, sign, xPublicFromEd } from "../../lib/identity/identity.ts";
import { mac1Key, withMac1 } from "../../lib/peer/mac1.ts";
import { SecureLayer } from "../../lib/peer/secure.ts";
import { bindingRequest } from "../../lib/stun/binding.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { toHex } from "../../lib/wire/bytes.ts";
import {
  decode,
  encode,
  HS_INIT_LEN,
  MAGIC,
  type Member,
  type Message,
  registerSigInput,
  T,
  VERSION,
} from "../../lib/wire/codec.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;
const SEALED_AD = Uint8Array.of(MAGIC, VERSION, T.SEALED);
const enc = new TextEncoder();

export interface SoakOptions {
  /** How long the chat and the attack run. */
  seconds: number;
  /** Mallory's datagrams per second, all kinds together. */
  floodPerSec: number;
  /** Progress lines (the bench prints them; the test keeps quiet). */
  progress?: (line: string) => void;
  progressEverySec?: number;
  /**
   * Caps bob's V8 old space (--max-old-space-size, MiB). RSS grows with a lazy collector too;
   * under a cap a live heap that keeps growing ends the process (out of memory), so bob running
   * to the end with a tight cap shows his live heap stayed under it. (V8's --trace-gc cannot
   * tell instead: it writes to stdout and breaks the --json lines.)
   */
  bobMaxHeapMiB?: number;
}

export interface Sample {
  t: number;
  bobRssKiB: number;
  serverRssKiB: number;
}

export interface SoakFigures {
  seconds: number;
  /** Messages each way: sent, and how many arrived how many times (all must be once). */
  aliceToBob: Way;
  bobToAlice: Way;
  /** Round trips alice -> bob -> alice, as the test sees them (ms). */
  rttMs: Percentiles;
  stunMs: Percentiles & { sent: number; answered: number };
  bob: ProcFigures;
  server: ProcFigures;
  alice: ProcFigures;
  /** Datagrams mallory sent, by kind. */
  flood: Record<string, number>;
  churn: { registered: number; refused: number };
  /** Bob's drop counters at the end (/stats). */
  bobDrops: Record<string, number>;
  /** Bob's V8 old-space cap, if one was set. */
  bobMaxHeapMiB?: number;
  /** Lines a process wrote to stderr at warn level or above, or an exit. */
  trouble: string[];
  samples: Sample[];
}

/** One direction of the chat: how many arrived how many times (all must be once). */
export interface Way {
  sent: number;
  once: number;
  twice: number;
  missing: number;
  outOfOrder: number;
  /** The first few missing, by number. */
  lost: number[];
}

export interface Percentiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export interface ProcFigures {
  rssStartMiB: number;
  rssMaxMiB: number;
  rssEndMiB: number;
  /** Least-squares slope of RSS over the run, MiB per minute. */
  rssSlopeMiBPerMin: number;
  /** Mean RSS of the last quarter of samples minus that of the first quarter, MiB. */
  rssGrowthMiB: number;
  cpuPercent: number;
}

export function percentiles(xs: number[]): Percentiles {
  const s = xs.slice().sort((a, b) => a - b);
  const at = (q: number) => s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.length ? s[s.length - 1]! : NaN };
}

function procFigures(samples: { t: number; kib: number }[], cpuTicks: number, secs: number) {
  const mib = samples.map((s) => s.kib / 1024);
  const n = mib.length;
  const q = Math.max(1, Math.floor(n / 4));
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
  const ts = samples.map((s) => s.t / 60_000);
  const mt = mean(ts), mr = mean(mib);
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) {
    num += (ts[i]! - mt) * (mib[i]! - mr);
    den += (ts[i]! - mt) ** 2;
  }
  return {
    rssStartMiB: mib[0] ?? NaN,
    rssMaxMiB: Math.max(...mib),
    rssEndMiB: mib[n - 1] ?? NaN,
    rssSlopeMiBPerMin: den > 0 ? num / den : 0,
    rssGrowthMiB: mean(mib.slice(n - q)) - mean(mib.slice(0, q)),
    cpuPercent: (100 * cpuTicks / USER_HZ) / secs,
  };
}

// ---- child processes ----------------------------------------------------------------------------

interface Child {
  name: string;
  proc: Deno.ChildProcess;
  home: string;
  stderr: string[];
  exited: boolean;
  write(line: string): Promise<void>;
  /** Called with each --json event and the time it was read. */
  onEvent: (e: Record<string, unknown>, at: number) => void;
  events: Record<string, unknown>[];
}

function spawn(name: string, args: string[], v8Flags: string[] = []): Child {
  const home = Deno.makeTempDirSync({ prefix: "p2pchat-soak-" });
  const proc = new Deno.Command(Deno.execPath(), {
    cwd: ROOT,
    args: ["run", ...v8Flags.map((f) => `--v8-flags=${f}`), "-A", MAIN, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", XDG_CONFIG_HOME: home },
  }).spawn();
  const writer = proc.stdin.getWriter();
  const c: Child = {
    name,
    proc,
    home,
    stderr: [],
    exited: false,
    events: [],
    onEvent: () => {},
    write: (line) => writer.write(enc.encode(line + "\n")),
  };
  const lines = async (s: ReadableStream<Uint8Array>, each: (l: string) => void) => {
    let buf = "";
    try {
      for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          each(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      }
    } catch { /* killed */ }
  };
  lines(proc.stdout, (l) => {
    const at = performance.now();
    try {
      const e = JSON.parse(l);
      c.events.push(e);
      c.onEvent(e, at);
    } catch { /* not an event */ }
  });
  lines(proc.stderr, (l) => c.stderr.push(l));
  proc.status.then(() => c.exited = true);
  return c;
}

async function waitFor(what: string, ms: number, ok: () => boolean, c?: Child): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > end || c?.exited) {
      throw new Error(
        `Cannot ${what}: ${c?.exited ? "exited" : `not within ${ms} ms`}` +
          (c ? `\nstderr:\n${c.stderr.join("\n")}` : ""),
      );
    }
    await sleep(20);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- fake members on raw sockets ----------------------------------------------------------------

const netAddr = (a: Addr): Deno.NetAddr => ({ transport: "udp", hostname: a.host, port: a.port });
const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const hexId = () => toHex(rnd(8));

type RegisterOk = Extract<Message, { type: "register_ok" }>;

/** Where a fake member's datagrams go: a real socket here, the in-memory network elsewhere. */
export interface Link {
  /** Sends to `to`, or to the server. */
  send(bytes: Uint8Array, to?: Addr): void;
  /** The full registration (cookie and signature): REGISTER_OK, or why not. */
  register(id: string, name: string, who: Identity): Promise<RegisterOk | string>;
  /** Everything that arrives. */
  onMessage: (m: Message, from: Addr) => void;
}

/** One UDP socket holding any number of registrations; answers are told apart by nonce/token. */
class Socket implements Link {
  readonly conn: Deno.DatagramConn;
  private waiting = new Map<string, (m: Message) => void>();
  onMessage: (m: Message, from: Addr) => void = () => {};
  sent = 0;
  errors = 0;
  private closed = false;

  constructor(host: string, readonly server: Addr) {
    this.conn = Deno.listenDatagram({ hostname: host, port: 0, transport: "udp" });
    this.loop();
  }

  get local(): Addr {
    const a = this.conn.addr as Deno.NetAddr;
    return { host: a.hostname, port: a.port };
  }

  private async loop(): Promise<void> {
    const buf = new Uint8Array(65536);
    while (!this.closed) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await this.conn.receive(buf);
      } catch {
        if (this.closed) return;
        continue;
      }
      const d = decode(got[0]);
      if (!d.ok) continue;
      const m = d.value;
      const key = "nonce" in m ? m.nonce : "token" in m ? m.token : "";
      const w = this.waiting.get(key);
      if (w && (m.type === "cookie" || m.type === "register_ok" || m.type === "error")) w(m);
      const a = got[1] as Deno.NetAddr;
      this.onMessage(m, { host: a.hostname, port: a.port });
    }
  }

  send(bytes: Uint8Array, to: Addr = this.server): void {
    this.sent++;
    this.conn.send(bytes, netAddr(to)).catch(() => this.errors++);
  }

  /** The full registration: REGISTER, COOKIE, signed REGISTER, REGISTER_OK (or an error). */
  async register(
    id: string,
    name: string,
    who: Identity,
  ): Promise<RegisterOk | string> {
    const nonce = hexId();
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id,
      nonce,
      name,
      room: "lobby",
      locals: [],
      key: who.edPublic,
      cookie: new Uint8Array(0),
      sig: new Uint8Array(0),
    };
    const next = () =>
      new Promise<Message | null>((resolve) => {
        const t = setTimeout(() => resolve(null), 2000);
        this.waiting.set(nonce, (x) => {
          clearTimeout(t);
          resolve(x);
        });
      });
    for (let attempt = 0; attempt < 5 && !this.closed; attempt++) {
      let answer = next();
      this.send(encode(m));
      const c = await answer;
      if (c?.type !== "cookie") continue;
      const signed = { ...m, cookie: c.cookie };
      signed.sig = sign(who, registerSigInput(signed));
      answer = next();
      this.send(encode(signed));
      const ok = await answer;
      this.waiting.delete(nonce);
      if (ok?.type === "register_ok") return ok;
      if (ok?.type === "error") return ok.text;
    }
    this.waiting.delete(nonce);
    return "no answer";
  }

  close(): void {
    this.closed = true;
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** Mallory: a registered member of the room, attacking bob. */
export class Mallory {
  readonly me = newIdentity();
  readonly id = hexId();
  token = "";
  bob: Member | null = null;
  secure: SecureLayer;
  /** Her last init, once bob answered it: replays of it are answered from bob's cache. */
  answered: Uint8Array | null = null;
  private pending: Uint8Array | null = null;
  readonly sent = new Map<string, number>();
  private seq = 0;
  private msgNo = 1000;

  /** `now`: the clock for her Noise sessions (the in-memory network passes its own). */
  constructor(readonly sock: Link, private now: () => number = () => performance.now()) {
    this.secure = new SecureLayer({
      staticKey: { publicKey: this.me.xPublic, privateKey: this.me.xSecret },
      sessionId: this.id,
    });
    sock.onMessage = (m) => this.onMessage(m);
  }

  private learn(members: Member[]): void {
    for (const m of members) {
      if (m.name !== "bob") continue;
      if (this.bob?.id !== m.id) {
        if (this.bob) this.secure.removePeer(this.bob.id);
        this.secure.addPeer(m.id, xPublicFromEd(m.key)!);
        this.answered = this.pending = null;
      }
      this.bob = m;
    }
  }

  private onMessage(m: Message): void {
    if (m.type === "register_ok") this.learn(m.members);
    else if (m.type === "members") this.learn(m.members);
    else if (m.type === "peer_joined") this.learn([m.member]);
    else if (m.type === "hello_ack") this.onAck(m);
    else if (m.type === "relayed") {
      const d = decode(m.payload);
      if (d.ok && d.value.type === "hello_ack") this.onAck(d.value);
    }
  }

  private onAck(m: Extract<Message, { type: "hello_ack" }>): void {
    if (!this.bob || m.from !== this.bob.id) return;
    const r = this.secure.onHandshakeResp(m.resp, this.now());
    if (r.ok && r.fresh) this.answered = this.pending;
  }

  async join(): Promise<void> {
    const ok = await this.sock.register(this.id, "mallory", this.me);
    if (typeof ok === "string") throw new Error(`Cannot register mallory: ${ok}`);
    this.token = ok.token;
    this.learn(ok.members);
    if (!this.bob) throw new Error("Cannot attack bob: not in the room");
  }

  private count(kind: string): void {
    this.sent.set(kind, (this.sent.get(kind) ?? 0) + 1);
  }

  private hello(init: Uint8Array, goodMac = true): Uint8Array {
    const bob = this.bob!;
    const key = goodMac ? mac1Key(xPublicFromEd(bob.key)!) : rnd(32);
    return encode(
      withMac1({ type: "hello", from: this.id, to: bob.id, nonce: hexId(), init }, key),
    );
  }

  private relay(payload: Uint8Array): void {
    this.sock.send(
      encode({ type: "relay", from: this.id, token: this.token, to: this.bob!.id, payload }),
    );
  }

  /** A new real handshake with bob (her session, to seal DATA in; bob limits these). */
  freshInit(): void {
    if (!this.bob) return;
    this.secure.restartHandshake(this.bob.id);
    this.pending = this.secure.handshakeInit(this.bob.id, this.now(), Date.now());
    this.sock.send(this.hello(this.pending), this.bob.public);
    this.count("hello fresh init");
  }

  keepalive(): void {
    this.sock.send(encode({ type: "keepalive", id: this.id, token: this.token }));
  }

  /** One flood datagram of kind `k` (see KINDS). */
  flood(k: number): void {
    const bob = this.bob;
    if (!bob) return;
    const junkInit = () => rnd(HS_INIT_LEN);
    switch (k) {
      case 0:
        this.sock.send(this.hello(junkInit()), bob.public);
        return this.count("hello junk init, direct");
      case 1:
        this.sock.send(this.hello(junkInit(), false), bob.public);
        return this.count("hello bad mac1, direct");
      case 2:
        if (!this.answered) return this.freshInit();
        this.sock.send(this.hello(this.answered), bob.public);
        return this.count("hello replayed init, direct");
      case 3:
        this.relay(this.hello(this.answered ?? junkInit()));
        return this.count("hello junk/replayed init, relayed");
      case 4:
      case 5: {
        // A fragment of a 16-fragment message that never completes, sealed in her session.
        const seq = this.seq++ % 256;
        const data = encode({
          type: "data",
          from: this.id,
          to: bob.id,
          seq,
          floor: 0,
          msgNo: this.msgNo + seq,
          frag: k === 4 ? 0 : 1 + (seq % 15),
          frags: 16,
          direct: true,
          chunk: rnd(1024),
        });
        const body = this.secure.seal(bob.id, SEALED_AD, data, this.now());
        if (!body) return this.freshInit();
        this.sock.send(encode({ type: "sealed", body }), bob.public);
        return this.count("sealed DATA, never completed");
      }
      case 6:
        this.sock.send(
          encode({
            type: "data",
            from: this.id,
            to: bob.id,
            seq: 0,
            floor: 0,
            msgNo: 1,
            frag: 0,
            frags: 2,
            direct: true,
            chunk: rnd(512),
          }),
          bob.public,
        );
        return this.count("plaintext DATA");
      case 7:
        this.sock.send(
          encode({ type: "connect", from: this.id, token: this.token, to: bob.id, nonce: hexId() }),
        );
        return this.count("CONNECT");
      default:
        return this.freshInit();
    }
  }
}

/** Flood kinds, by weight: see Mallory.flood. */
export const KINDS = [0, 0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8];

/** Registers and leaves in a loop from one address, cycling through a few names. */
async function churn(
  sock: Socket,
  stop: () => boolean,
  stats: { registered: number; refused: number },
) {
  const names = Array.from({ length: 6 }, (_, i) => ({ name: `churn${i}`, who: newIdentity() }));
  for (let i = 0; !stop(); i++) {
    const n = names[i % names.length]!;
    const id = hexId();
    const ok = await sock.register(id, `${n.name}${sock.local.host.split(".")[3]}`, n.who);
    if (typeof ok === "string") stats.refused++;
    else {
      stats.registered++;
      await sleep(1500);
      sock.send(encode({ type: "leave", id, token: ok.token }));
    }
    // About 24 registrations a minute per address: under the default 30.
    await sleep(1000);
  }
}

/** Binds a loopback address other than 127.0.0.1 if the system allows, else 127.0.0.1. */
function loopback(n: number): string {
  const host = `127.0.0.${n}`;
  try {
    Deno.listenDatagram({ hostname: host, port: 0, transport: "udp" }).close();
    return host;
  } catch {
    return "127.0.0.1";
  }
}

// ---- the run ------------------------------------------------------------------------------------

export async function runSoak(o: SoakOptions): Promise<SoakFigures> {
  const say = o.progress ?? (() => {});
  const port = freePort();
  const server: Addr = { host: "127.0.0.1", port };
  const children: Child[] = [];
  const sockets: Socket[] = [];
  let stopping = false;
  const timers: ReturnType<typeof setInterval>[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    const srv = spawn("server", [
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--keepalive",
      "1",
      "--log-level",
      "warning",
    ]);
    children.push(srv);
    // The server logs "listening" at info, which warning hides: wait for STUN answers instead.
    const rawProbe = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    const stunAt = new Map<string, number>();
    const stunMs: number[] = [];
    let stunSent = 0;
    const stunListen = (async () => {
      const buf = new Uint8Array(2048);
      while (!stopping) {
        try {
          const [b] = await rawProbe.receive(buf);
          if (b.length >= 20 && b[0] === 0x01 && b[1] === 0x01) {
            const k = toHex(b.subarray(8, 20));
            const t = stunAt.get(k);
            if (t !== undefined) {
              stunMs.push(performance.now() - t);
              stunAt.delete(k);
            }
          }
        } catch {
          if (stopping) return;
        }
      }
    })();
    closers.push(async () => {
      rawProbe.close();
      await stunListen;
    });
    const stun = () => {
      const txid = rnd(12);
      stunAt.set(toHex(txid), performance.now());
      stunSent++;
      rawProbe.send(bindingRequest(txid), netAddr(server)).catch(() => {});
    };
    await waitFor("reach the server", 15_000, () => (stun(), stunMs.length > 0), srv);
    stunMs.length = 0;
    stunSent = 0;
    stunAt.clear();

    const peerArgs = (name: string) => [
      "join",
      "--json",
      // Nothing off loopback: no port mapping requests to a gateway.
      "--no-portmap",
      "--name",
      name,
      "--server",
      `127.0.0.1:${port}`,
      "--keepalive",
      "1",
      "--ack-timeout",
      "300",
      "--punch-window",
      "1500",
    ];
    const alice = spawn("alice", peerArgs("alice"));
    children.push(alice);
    await waitFor("start alice", 20_000, () => alice.events.some((e) => e.type === "ready"), alice);
    const bob = spawn(
      "bob",
      peerArgs("bob"),
      o.bobMaxHeapMiB ? [`--max-old-space-size=${o.bobMaxHeapMiB}`] : [],
    );
    children.push(bob);
    const pathed = (c: Child, peer: string) =>
      c.events.some((e) => e.type === "path" && e.peer === peer && e.path !== "relay");
    await waitFor(
      "connect alice and bob",
      20_000,
      () => pathed(alice, "bob") && pathed(bob, "alice"),
      bob,
    );

    // The attackers.
    const malloryAt = new Socket(loopback(2), server);
    sockets.push(malloryAt);
    const mallory = new Mallory(malloryAt);
    await mallory.join();
    const churnStats = { registered: 0, refused: 0 };
    const churners = [loopback(3), loopback(4)].map((h) => {
      const s = new Socket(h, server);
      sockets.push(s);
      return churn(s, () => stopping, churnStats);
    });
    closers.push(async () => void await Promise.allSettled(churners));
    await waitFor(
      "make bob see mallory",
      10_000,
      () => bob.events.some((e) => e.type === "peer" && e.name === "mallory"),
    );
    mallory.freshInit();

    // The chat: alice -> bob every 200 ms; bob answers each at once.
    const sentAt = new Map<number, number>();
    const bobGot: number[] = [];
    const aliceGot: number[] = [];
    const rtt: number[] = [];
    bob.onEvent = (e) => {
      if (e.type !== "message" || e.from !== "alice") return;
      const m = /^a-(\d+)$/.exec(String(e.text));
      if (!m) return;
      bobGot.push(Number(m[1]));
      bob.write(`/msg alice r-${m[1]}`).catch(() => {});
    };
    alice.onEvent = (e, at) => {
      if (e.type !== "message" || e.from !== "bob") return;
      const m = /^r-(\d+)$/.exec(String(e.text));
      if (!m) return;
      const k = Number(m[1]);
      aliceGot.push(k);
      const t = sentAt.get(k);
      if (t !== undefined) rtt.push(at - t);
    };

    const bobPid = bob.proc.pid, srvPid = srv.proc.pid, alicePid = alice.proc.pid;
    const cpu0 = [bobPid, srvPid, alicePid].map((p) => readProc(p).cpuTicks ?? 0);
    const t0 = performance.now();
    const samples: Sample[] = [];
    const rss = {
      bob: [] as { t: number; kib: number }[],
      server: [] as { t: number; kib: number }[],
      alice: [] as { t: number; kib: number }[],
    };
    const sample = () => {
      const t = performance.now() - t0;
      const b = readProc(bobPid).rssKiB ?? 0, s = readProc(srvPid).rssKiB ?? 0;
      const a = readProc(alicePid).rssKiB ?? 0;
      rss.bob.push({ t, kib: b });
      rss.server.push({ t, kib: s });
      rss.alice.push({ t, kib: a });
      samples.push({ t, bobRssKiB: b, serverRssKiB: s });
    };
    sample();
    timers.push(setInterval(sample, 1000));
    timers.push(setInterval(stun, 500));
    timers.push(setInterval(() => mallory.keepalive(), 1000));
    // Re-handshake now and then, so her session never reaches bob's reject-after.
    timers.push(setInterval(() => mallory.freshInit(), 30_000));
    let k = 0;
    const batch = Math.max(1, Math.round(o.floodPerSec / 50));
    timers.push(setInterval(() => {
      for (let i = 0; i < batch; i++) mallory.flood(KINDS[k++ % KINDS.length]!);
    }, 20));
    let n = 0;
    timers.push(setInterval(() => {
      const i = n++;
      sentAt.set(i, performance.now());
      alice.write(`/msg bob a-${i}`).catch(() => {});
    }, 200));
    const every = (o.progressEverySec ?? 30) * 1000;
    let nextReport = every;
    while (performance.now() - t0 < o.seconds * 1000) {
      await sleep(250);
      if (children.some((c) => c.exited)) break;
      if (performance.now() - t0 >= nextReport) {
        nextReport += every;
        const p = percentiles(rtt.slice(-300));
        const last = samples[samples.length - 1]!;
        say(
          `${
            Math.round((performance.now() - t0) / 1000)
          } s: ${n} sent, bob got ${bobGot.length}, ` +
            `alice got ${aliceGot.length} answers; rtt p50 ${p.p50.toFixed(1)} ms p99 ` +
            `${p.p99.toFixed(1)} ms; bob rss ${(last.bobRssKiB / 1024).toFixed(1)} MiB, ` +
            `server ${(last.serverRssKiB / 1024).toFixed(1)} MiB; flooded ` +
            `${[...mallory.sent.values()].reduce((a, b) => a + b, 0)}`,
        );
      }
    }
    const secs = (performance.now() - t0) / 1000;
    // Stop sending; let the last messages and answers land.
    for (const t of timers.splice(0)) clearInterval(t);
    const cpu1 = [bobPid, srvPid, alicePid].map((p) => readProc(p).cpuTicks ?? 0);
    await waitFor(
      "let the chat settle",
      35_000,
      () => bobGot.length >= n && aliceGot.length >= n || children.some((c) => c.exited),
    ).catch(() => {});
    sample();
    const before = bob.events.length;
    await bob.write("/stats");
    await waitFor(
      "read bob's stats",
      5000,
      () => bob.events.slice(before).some((e) => e.type === "stats"),
    ).catch(() => {});
    const st = bob.events.slice(before).find((e) => e.type === "stats");
    const tally = (got: number[], sent: number) => {
      const seen = new Map<number, number>();
      let outOfOrder = 0;
      for (let i = 0; i < got.length; i++) {
        seen.set(got[i]!, (seen.get(got[i]!) ?? 0) + 1);
        if (i > 0 && got[i]! <= got[i - 1]!) outOfOrder++;
      }
      let once = 0, twice = 0, missing = 0;
      const lost: number[] = [];
      for (let i = 0; i < sent; i++) {
        const c = seen.get(i) ?? 0;
        if (c === 0) missing++, lost.push(i);
        else if (c === 1) once++;
        else twice++;
      }
      return { sent, once, twice, missing, outOfOrder, lost: lost.slice(0, 20) };
    };
    stopping = true;
    const trouble = children.flatMap((c) => [
      ...(c.exited ? [`${c.name} exited`] : []),
      ...c.stderr.filter((l) => /WARN|ERR|FATAL|error|Uncaught/i.test(l)).slice(0, 20).map((l) =>
        `${c.name}: ${l}`
      ),
    ]);
    const stunAll = percentiles(stunMs);

    return {
      seconds: secs,
      aliceToBob: tally(bobGot, n),
      bobToAlice: tally(aliceGot, n),
      rttMs: percentiles(rtt),
      stunMs: { ...stunAll, sent: stunSent, answered: stunMs.length },
      bob: procFigures(rss.bob, cpu1[0]! - cpu0[0]!, secs),
      server: procFigures(rss.server, cpu1[1]! - cpu0[1]!, secs),
      alice: procFigures(rss.alice, cpu1[2]! - cpu0[2]!, secs),
      flood: Object.fromEntries(mallory.sent),
      churn: churnStats,
      bobDrops: (st?.drops ?? {}) as Record<string, number>,
      bobMaxHeapMiB: o.bobMaxHeapMiB,
      trouble,
      samples,
    };
  } finally {
    stopping = true;
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.close();
    for (const c of closers) await c().catch(() => {});
    for (const c of children) {
      try {
        c.proc.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await Promise.allSettled(children.map((c) => c.proc.status));
    for (const c of children) await Deno.remove(c.home, { recursive: true }).catch(() => {});
  }
}

/** The figures as a few lines of text, for the note. */
export function report(f: SoakFigures): string {
  const mib = (x: number) => x.toFixed(1);
  const p = (x: Percentiles) =>
    `p50 ${x.p50.toFixed(1)} ms, p99 ${x.p99.toFixed(1)} ms, max ${x.max.toFixed(1)} ms`;
  const proc = (name: string, x: ProcFigures) =>
    `${name}: RSS ${mib(x.rssStartMiB)} -> max ${mib(x.rssMaxMiB)} -> end ${
      mib(x.rssEndMiB)
    } MiB ` +
    `(slope ${x.rssSlopeMiBPerMin.toFixed(2)} MiB/min, last-quarter minus first-quarter ` +
    `${mib(x.rssGrowthMiB)} MiB), CPU ${x.cpuPercent.toFixed(1)}%`;
  const way = (x: Way) =>
    `${x.sent} sent, ${x.once} once, ${x.twice} more than once, ${x.missing} missing` +
    (x.lost.length ? ` (${x.lost.join(", ")})` : "") + `, ${x.outOfOrder} out of order`;
  const flood = Object.entries(f.flood).map(([k, v]) => `${k} ${v}`).join(", ");
  const total = Object.values(f.flood).reduce((a, b) => a + b, 0);
  const drops = Object.entries(f.bobDrops).sort().map(([k, v]) => `${k}=${v}`).join(" ");
  return [
    `soak: ${f.seconds.toFixed(0)} s`,
    `alice -> bob: ${way(f.aliceToBob)}`,
    `bob -> alice: ${way(f.bobToAlice)}`,
    `chat round trip (alice -> bob -> alice, through both processes' stdin/stdout): ${p(f.rttMs)}`,
    `server STUN: ${f.stunMs.answered}/${f.stunMs.sent} answered, ${p(f.stunMs)}`,
    proc("bob", f.bob),
    proc("server", f.server),
    proc("alice", f.alice),
    `mallory sent ${total} (${(total / f.seconds).toFixed(0)}/s): ${flood}`,
    `churn: ${f.churn.registered} registrations, ${f.churn.refused} refused`,
    `bob's drops: ${drops}`,
    ...(f.bobMaxHeapMiB ? [`bob ran with V8's old space capped at ${f.bobMaxHeapMiB} MiB`] : []),
    ...(f.trouble.length ? [`trouble: ${f.trouble.join(" | ")}`] : []),
  ].join("\n");
}
