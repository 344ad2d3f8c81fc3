/// <reference lib="deno.worker" />
/**
 * A bench worker: a Web Worker, so the load generator is not one JS thread racing the server
 * for the same event loop. It drives one or more client sockets on 127.0.0.1, each optionally
 * registering one fake peer (so its keepalives are for a known id at the registered address),
 * then either keeps at most `window` requests outstanding per socket (closed loop) or sends
 * `rate` requests a second over its sockets whatever comes back (open loop), until told to
 * stop, and reports counts and latency samples.
 *
 * Where the bench has the FFI permission on Linux, the sockets use batched system calls
 * (lib/net/mmsg.ts) in a busy loop, so the load costs far less than the answers: the figures
 * are the server's, not the load generator's. Elsewhere, Deno.DatagramConn and timers.
 *
 * Matching: a STUN reply by its transaction id, whose last 4 bytes count the client's requests;
 * a keepalive_ack by order (the server answers one client's keepalives in the order they
 * arrive, and loopback does not reorder).
 */
import { bindingRequest, parseBindingResponse } from "../lib/stun/binding.ts";
import { crc32 } from "../lib/stun/_crc32.ts";
import { decode, encode, MAGIC, type Message, registerSigInput, T } from "../lib/wire/codec.ts";
import { newIdentity, sign } from "../lib/identity/identity.ts";
import { toHex } from "../lib/wire/bytes.ts";
import type { Addr } from "../lib/wire/addr.ts";
import { openUdp, type Udp } from "../lib/net/udp.ts";
import { mmsgUsable, openMmsgUdp } from "../lib/net/mmsg.ts";
import type {
  ClientInit,
  ClientPhase,
  ClientResult,
  FromClient,
  Kind,
  KindResult,
  ToClient,
} from "./_messages.ts";
import { KINDS } from "./_messages.ts";
import { udpSocketDrops } from "./_proc.ts";

const HOST = "127.0.0.1";
/** Latency samples kept per kind and client; beyond this, reservoir sampling keeps it fair. */
const MAX_SAMPLES = 1 << 20;
const REGISTER_TRIES = 25;
const REGISTER_EVERY_MS = 200;
/** How often outstanding requests are checked against the timeout. */
const SWEEP_MS = 20;
/** Open loop: how often the pacer sends what is due (the runtime's timers tick in ms). */
const PACE_MS = 1;
/** Open loop: requests outstanding at most; past it a due send is skipped and counted. */
const MAX_OUTSTANDING = 16384;
/** STUN FINGERPRINT: CRC-32 of what precedes the attribute, XORed with "STUN" (RFC 8489 14.7). */
const FINGERPRINT_XOR = 0x5354554e;

class Tally {
  sent = 0;
  answered = 0;
  errors = 0;
  lost = 0;
  unmatched = 0;
  private samples = new Float64Array(4096);
  private n = 0;
  private seen = 0;

  sample(us: number): void {
    this.seen++;
    if (this.n < MAX_SAMPLES) {
      if (this.n === this.samples.length) {
        const bigger = new Float64Array(Math.min(this.samples.length * 2, MAX_SAMPLES));
        bigger.set(this.samples);
        this.samples = bigger;
      }
      this.samples[this.n++] = us;
      return;
    }
    const j = Math.floor(Math.random() * this.seen);
    if (j < MAX_SAMPLES) this.samples[j] = us;
  }

  result(): KindResult {
    const { sent, answered, errors, lost, unmatched } = this;
    return { sent, answered, errors, lost, unmatched, rttUs: this.samples.slice(0, this.n) };
  }
}

/**
 * Binding requests with FINGERPRINT whose transaction ids are 8 random bytes (one draw per
 * client) and a 32-bit request counter: a reply's id gives its request back with no string
 * and no syscall per request. Checked once against bindingRequest.
 */
class Requests {
  private template: Uint8Array;
  private view: DataView;
  constructor() {
    const txid = new Uint8Array(12);
    crypto.getRandomValues(txid.subarray(0, 8));
    this.template = bindingRequest(txid);
    this.view = new DataView(this.template.buffer);
    if (this.template.length !== 28) throw new Error("Cannot build requests: unexpected layout");
    const check = this.make(7);
    txid[11] = 7;
    if (toHex(check) !== toHex(bindingRequest(txid))) {
      throw new Error("Cannot build requests: FINGERPRINT differs from bindingRequest");
    }
  }
  /** Request number `n` (a fresh array: a send keeps its bytes until sent). */
  make(n: number): Uint8Array {
    this.view.setUint32(16, n, false);
    this.view.setUint32(24, (crc32(this.template.subarray(0, 20)) ^ FINGERPRINT_XOR) >>> 0, false);
    return this.template.slice();
  }
  /** The transaction id of request `n`. */
  txid(n: number): Uint8Array {
    this.view.setUint32(16, n, false);
    return this.template.slice(8, 20);
  }
  /** Whether `b` (a STUN message) answers one of ours, and which: -1 if not. */
  number(b: Uint8Array): number {
    for (let i = 8; i < 16; i++) if (b[i] !== this.template[i]) return -1;
    return ((b[16]! << 24) | (b[17]! << 16) | (b[18]! << 8) | b[19]!) >>> 0;
  }
}

function isStunSuccess(b: Uint8Array): boolean {
  // Binding success response 0x0101 and the magic cookie.
  return b.length >= 20 && b[0] === 0x01 && b[1] === 0x01 && b[4] === 0x21 && b[5] === 0x12 &&
    b[6] === 0xa4 && b[7] === 0x42;
}

/** Shared by a worker's sockets: tallies, the measured period, the first error. */
interface Shared {
  init: ClientInit;
  tallies: Record<Kind, Tally>;
  measureFrom: number;
  /** Closed loop only: whether to keep windows full. */
  sending: boolean;
  error: unknown;
  /** Open loop: due sends skipped because MAX_OUTSTANDING were outstanding. */
  skipped: number;
}

/** One socket and its fake peer: what is outstanding, how replies match. */
class Conn {
  readonly udp: Udp & { done: Promise<void> } & { receiveNow?: () => number; flush?: () => void };
  private server: Addr;
  private requests = new Requests();
  private nextRequest = 0;
  /** STUN: request number -> send time; Map keeps insertion order, so the oldest come first. */
  private stunOut = new Map<number, number>();
  /** Keepalives: send times in order; `kaHead` is the oldest outstanding. */
  private kaOut: number[] = [];
  private kaHead = 0;
  outstanding = 0;
  private turn = 0;
  private checkedMapped = false;
  private keepalive: Uint8Array;
  private idBytes: Uint8Array;
  private me = newIdentity();
  private regNonce = toHex(crypto.getRandomValues(new Uint8Array(8)));
  registered = false;
  failure: string | undefined;

  constructor(private s: Shared, private id: string, private name: string, busy: boolean) {
    this.server = { host: HOST, port: s.init.serverPort };
    // The registration token is only known after REGISTER_OK; the bytes are filled in then.
    this.keepalive = encode({ type: "keepalive", id, token: "0".repeat(16) });
    /** Our id as it appears on the wire, right after MAGIC, VERSION, TYPE. */
    this.idBytes = this.keepalive.slice(3, 11);
    const onPacket = (b: Uint8Array) => {
      if (s.error !== undefined) return;
      try {
        this.onDatagram(b, performance.now());
      } catch (e) {
        s.error = e;
        return;
      }
      this.refill();
    };
    this.udp = busy
      ? openMmsgUdp(HOST, 0, onPacket, { manual: true })
      : openUdp(HOST, 0, onPacket, { batched: false });
  }

  get localPort(): number {
    return this.udp.local.port;
  }

  register(cookie: Uint8Array): Uint8Array {
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id: this.id,
      nonce: this.regNonce,
      name: this.name,
      room: this.s.init.room,
      locals: [],
      key: this.me.edPublic,
      cookie,
      sig: new Uint8Array(0),
    };
    if (cookie.length > 0) m.sig = sign(this.me, registerSigInput(m));
    return encode(m);
  }

  sendRegister(): void {
    this.udp.send(this.register(new Uint8Array(0)), this.server);
  }

  sendOne(now: number): void {
    const init = this.s.init;
    const kind = init.kinds[this.turn++ % init.kinds.length]!;
    if (now >= this.s.measureFrom) this.s.tallies[kind].sent++;
    this.outstanding++;
    if (kind === "stun") {
      const n = this.nextRequest++ >>> 0;
      this.stunOut.set(n, now);
      this.udp.send(this.requests.make(n), this.server);
    } else {
      this.kaOut.push(now);
      this.udp.send(this.keepalive, this.server);
    }
  }

  refill(): void {
    if (!this.s.sending) return;
    const now = performance.now();
    while (this.outstanding < this.s.init.window) this.sendOne(now);
  }

  private answered(kind: Kind, sentAt: number, now: number, error: boolean): void {
    this.outstanding--;
    if (sentAt < this.s.measureFrom) return;
    const t = this.s.tallies[kind];
    t.answered++;
    if (error) t.errors++;
    t.sample((now - sentAt) * 1000);
  }

  private onDatagram(b: Uint8Array, now: number): void {
    const tallies = this.s.tallies;
    if (isStunSuccess(b)) {
      const n = this.requests.number(b);
      const at = n < 0 ? undefined : this.stunOut.get(n);
      if (at === undefined) {
        if (now >= this.s.measureFrom) tallies.stun.unmatched++;
        return;
      }
      this.stunOut.delete(n);
      if (!this.checkedMapped) {
        // Once per socket, check the reply properly: FINGERPRINT and our own mapped address.
        this.checkedMapped = true;
        const mapped = parseBindingResponse(b, this.requests.txid(n));
        if (!mapped || mapped.host !== HOST || mapped.port !== this.localPort) {
          throw new Error(`Cannot trust the server: bad Binding response ${toHex(b)}`);
        }
      }
      this.answered("stun", at, now, false);
      return;
    }
    if (b.length < 5 || b[0] !== MAGIC) return;
    const type = b[2];
    const ack = type === T.KEEPALIVE_ACK && b.length >= 11 &&
      this.idBytes.every((x, i) => b[3 + i] === x);
    if (ack || (type === T.ERROR && b[4] === T.KEEPALIVE)) {
      if (this.kaHead >= this.kaOut.length) {
        if (now >= this.s.measureFrom) tallies.keepalive.unmatched++;
        return;
      }
      this.answered("keepalive", this.kaOut[this.kaHead++]!, now, type === T.ERROR);
      if (this.kaHead > 4096 && this.kaHead * 2 > this.kaOut.length) {
        this.kaOut.splice(0, this.kaHead);
        this.kaHead = 0;
      }
      return;
    }
    if (this.registered) return; // peer_joined and friends: not ours to count
    if (type === T.COOKIE) {
      // Registration proves our address (echo the cookie) and our key (sign).
      const d = decode(b);
      if (d.ok && d.value.type === "cookie") {
        this.udp.send(this.register(d.value.cookie), this.server);
      }
    } else if (type === T.REGISTER_OK) {
      const d = decode(b);
      if (d.ok && d.value.type === "register_ok" && d.value.id === this.id) {
        this.keepalive = encode({ type: "keepalive", id: this.id, token: d.value.token });
        this.registered = true;
      }
    } else if (type === T.ERROR && b[4] === T.REGISTER) {
      const d = decode(b);
      this.failure = d.ok && d.value.type === "error" ? d.value.text : "error reply";
    }
  }

  /** Counts what has waited past the timeout as lost (frees its window slot). */
  sweep(now: number): void {
    const deadline = now - this.s.init.timeoutMs;
    const from = this.s.measureFrom, tallies = this.s.tallies;
    for (const [n, at] of this.stunOut) {
      if (at > deadline) break;
      this.stunOut.delete(n);
      this.outstanding--;
      if (at >= from) tallies.stun.lost++;
    }
    while (this.kaHead < this.kaOut.length && this.kaOut[this.kaHead]! <= deadline) {
      if (this.kaOut[this.kaHead]! >= from) tallies.keepalive.lost++;
      this.kaHead++;
      this.outstanding--;
    }
  }

  /** Starts the measured period from a clean slate (a keepalive lost in the warm-up must not
   * shift the order-based matching of the measured ones). */
  reset(): void {
    this.stunOut.clear();
    this.kaOut.length = 0;
    this.kaHead = 0;
    this.outstanding = 0;
  }

  /** Requests sent in the measured period and never answered: lost. */
  countUnanswered(): void {
    const from = this.s.measureFrom, tallies = this.s.tallies;
    for (const at of this.stunOut.values()) if (at >= from) tallies.stun.lost++;
    for (let i = this.kaHead; i < this.kaOut.length; i++) {
      if (this.kaOut[i]! >= from) tallies.keepalive.lost++;
    }
  }
}

/**
 * How a worker waits. Busy (batched system calls, Linux with FFI): one loop that takes what
 * the sockets hold, sends what is due and flushes, never sleeping during a period; the worker
 * owns its core (the bench pins itself apart from the server). Otherwise: Deno.DatagramConn
 * receive loops and timers.
 */
class Driver {
  constructor(private s: Shared, private conns: Conn[], readonly busy: boolean) {}

  private outstanding(): number {
    let n = 0;
    for (const c of this.conns) n += c.outstanding;
    return n;
  }

  /** One pass of the busy loop: receive, (pace,) flush. */
  private spin(): void {
    for (const c of this.conns) while (c.udp.receiveNow!() > 0) { /* handled */ }
    for (const c of this.conns) c.udp.flush!();
  }

  /** Registers every socket's fake peer, resending until each is answered. */
  async registerAll(): Promise<void> {
    const deadline = performance.now() + REGISTER_TRIES * REGISTER_EVERY_MS;
    let next = 0;
    while (this.conns.some((c) => !c.registered)) {
      const now = performance.now();
      const failed = this.conns.find((c) => c.failure !== undefined);
      if (failed) throw new Error(`Cannot register: ${failed.failure}`);
      if (now > deadline) throw new Error(`Cannot register: no register_ok within ${deadline} ms`);
      if (now >= next) {
        for (const c of this.conns) if (!c.registered) c.sendRegister();
        next = now + REGISTER_EVERY_MS;
      }
      if (this.busy) this.spin();
      await new Promise((r) => setTimeout(r, this.busy ? 1 : 5));
    }
  }

  /** Sends for `ms`, then waits for what is outstanding to be answered or to time out. */
  async runFor(ms: number): Promise<void> {
    const { init } = this.s;
    const t0 = performance.now(), until = t0 + ms;
    let due = 0, turn = 0, lastSweep = t0;
    /** Open loop: whatever is due by `now` goes out, answered or not. */
    const pace = (now: number) => {
      const want = Math.floor(((now - t0) / 1000) * init.rate);
      for (; due < want; due++) {
        const c = this.conns[turn++ % this.conns.length]!;
        if (this.outstanding() >= MAX_OUTSTANDING) {
          if (now >= this.s.measureFrom) this.s.skipped++;
        } else c.sendOne(now);
      }
    };
    const sweep = (now: number) => {
      for (const c of this.conns) c.sweep(now);
      lastSweep = now;
    };
    this.s.sending = init.rate === 0;
    for (const c of this.conns) c.refill();
    if (this.busy) {
      for (let now = performance.now(); now < until; now = performance.now()) {
        if (this.s.error !== undefined) break;
        if (init.rate > 0) pace(now);
        this.spin();
        if (now - lastSweep >= SWEEP_MS) {
          sweep(now);
          for (const c of this.conns) c.refill();
        }
      }
    } else {
      const pacer = init.rate > 0 ? setInterval(() => pace(performance.now()), PACE_MS) : 0;
      const sweeper = setInterval(() => {
        sweep(performance.now());
        for (const c of this.conns) c.refill();
      }, SWEEP_MS);
      await new Promise((r) => setTimeout(r, ms));
      clearInterval(pacer);
      clearInterval(sweeper);
    }
    this.s.sending = false;
    const drainUntil = performance.now() + init.timeoutMs + 2 * SWEEP_MS;
    while (
      this.outstanding() > 0 && performance.now() < drainUntil && this.s.error === undefined
    ) {
      if (this.busy) this.spin();
      await new Promise((r) => setTimeout(r, this.busy ? 0 : 5));
      sweep(performance.now());
    }
    sweep(performance.now());
  }
}

async function run(
  init: ClientInit,
  phase: (p: ClientPhase["phase"]) => Promise<ClientPhase>,
): Promise<ClientResult> {
  const busy = mmsgUsable(HOST);
  const s: Shared = {
    init,
    tallies: { stun: new Tally(), keepalive: new Tally() },
    measureFrom: Infinity,
    sending: false,
    error: undefined,
    skipped: 0,
  };
  const conns: Conn[] = [];
  try {
    for (const c of init.clients) conns.push(new Conn(s, c.id, c.name, busy));
    const driver = new Driver(s, conns, busy);
    if (init.register) await driver.registerAll();
    self.postMessage({ type: "ready", index: init.index, busy } satisfies FromClient);
    const warmup = await phase("warmup");
    if (warmup.ms > 0) await driver.runFor(warmup.ms);
    for (const c of conns) c.reset();
    self.postMessage({ type: "warm", index: init.index } satisfies FromClient);
    const measure = await phase("measure");
    const drops = () => {
      let n = 0;
      for (const c of conns) {
        const d = udpSocketDrops(c.localPort);
        if (d === undefined) return undefined;
        n += d;
      }
      return n;
    };
    const drops0 = drops();
    s.measureFrom = performance.now();
    await driver.runFor(measure.ms);
    const drops1 = drops();
    if (s.error !== undefined) throw s.error;
    const errors = conns.reduce((n, c) => n + c.udp.sendErrors, 0);
    const dropped = conns.reduce((n, c) => n + c.udp.sendDropped, 0);
    if (errors > 0 || dropped > 0) {
      throw new Error(`Cannot send: ${errors} datagrams failed, ${dropped} were dropped`);
    }
    for (const c of conns) c.countUnanswered();
    return {
      stun: s.tallies.stun.result(),
      keepalive: s.tallies.keepalive.result(),
      socketDrops: drops0 !== undefined && drops1 !== undefined ? drops1 - drops0 : undefined,
      skipped: s.skipped,
    };
  } finally {
    for (const c of conns) c.udp.close();
    await Promise.all(conns.map((c) => c.udp.done));
  }
}

let started = false;
/** Phase messages, in arrival order, for whoever waits on `phase()`. */
const mailbox = new Map<ClientPhase["phase"], ClientPhase>();
const waiting = new Map<ClientPhase["phase"], (p: ClientPhase) => void>();
const phase = (name: ClientPhase["phase"]) =>
  new Promise<ClientPhase>((resolve) => {
    const m = mailbox.get(name);
    if (m) resolve(m);
    else waiting.set(name, resolve);
  });

self.onmessage = (ev: MessageEvent<ToClient>) => {
  const m = ev.data;
  if (m.type === "phase") {
    const w = waiting.get(m.phase);
    if (w) w(m);
    else mailbox.set(m.phase, m);
    return;
  }
  if (started) return;
  started = true;
  run(m, phase).then(
    (results) => {
      const transfer = KINDS.map((k) => results[k].rttUs.buffer as ArrayBuffer);
      self.postMessage(
        { type: "result", index: m.index, results } satisfies FromClient,
        transfer,
      );
    },
    (e) => {
      const message = e instanceof Error ? e.message : String(e);
      self.postMessage({ type: "error", index: m.index, message } satisfies FromClient);
    },
  );
};
