/// <reference lib="deno.worker" />
/**
 * One bench client, run in a Web Worker so the load generator is not one JS thread racing the
 * server for the same event loop. It owns one UDP socket on 127.0.0.1, registers one fake peer
 * from it (so its keepalives are for a known id at the registered address), then keeps at most
 * `window` requests outstanding until told to stop, and reports counts and latency samples.
 *
 * Matching: a STUN reply by its 12-byte transaction id; a keepalive_ack by order (the server
 * answers one client's keepalives in the order they arrive, and loopback does not reorder).
 */
import { bindingRequest, parseBindingResponse } from "../lib/stun/binding.ts";
import { decode, encode, MAGIC, type Message, registerSigInput, T } from "../lib/wire/codec.ts";
import { newIdentity, sign } from "../lib/identity/identity.ts";
import { toHex } from "../lib/wire/bytes.ts";
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

/** Latency samples kept per kind and client; beyond this, reservoir sampling keeps it fair. */
const MAX_SAMPLES = 1 << 20;
const REGISTER_TRIES = 25;
const REGISTER_EVERY_MS = 200;
/** How often outstanding requests are checked against the timeout. */
const SWEEP_MS = 20;

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

/** A pool of random bytes handed out 12 at a time, so a txid costs no syscall of its own. */
class TxIds {
  private pool = new Uint8Array(12 * 4096);
  private at = this.pool.length;
  next(): Uint8Array {
    if (this.at === this.pool.length) {
      crypto.getRandomValues(this.pool);
      this.at = 0;
    }
    const t = this.pool.slice(this.at, this.at + 12);
    this.at += 12;
    return t;
  }
}

/** Key for a 12-byte txid found at `off` in `b`. */
function txKey(b: Uint8Array, off: number): string {
  return toHex(b.subarray(off, off + 12));
}

function isStunSuccess(b: Uint8Array): boolean {
  // Binding success response 0x0101 and the magic cookie.
  return b.length >= 20 && b[0] === 0x01 && b[1] === 0x01 && b[4] === 0x21 && b[5] === 0x12 &&
    b[6] === 0xa4 && b[7] === 0x42;
}

async function run(
  init: ClientInit,
  phase: (p: ClientPhase["phase"]) => Promise<ClientPhase>,
): Promise<ClientResult> {
  const conn = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const server: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: init.serverPort };
  const tallies: Record<Kind, Tally> = { stun: new Tally(), keepalive: new Tally() };
  // The registration token is only known after REGISTER_OK; the bytes are filled in then.
  let keepalive = encode({ type: "keepalive", id: init.id, token: "0".repeat(16) });
  /** Our id as it appears on the wire, right after MAGIC, VERSION, TYPE. */
  const idBytes = keepalive.slice(3, 11);
  const me = newIdentity();
  const regNonce = toHex(crypto.getRandomValues(new Uint8Array(8)));
  const register = (cookie: Uint8Array): Uint8Array => {
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id: init.id,
      nonce: regNonce,
      name: init.name,
      room: init.room,
      locals: [],
      key: me.edPublic,
      cookie,
      sig: new Uint8Array(0),
    };
    if (cookie.length > 0) m.sig = sign(me, registerSigInput(m));
    return encode(m);
  };
  const txids = new TxIds();
  /** STUN: txid key -> send time; Map keeps insertion order, so the oldest come first. */
  const stunOut = new Map<string, { at: number; req: Uint8Array }>();
  /** Keepalives: send times in order; `kaHead` is the oldest outstanding. */
  const kaOut: number[] = [];
  let kaHead = 0;
  let outstanding = 0;
  let turn = 0;
  let sending = false;
  let measureFrom = Infinity;
  let checkedMapped = false;
  let sendFailures = 0;
  let registered: (() => void) | undefined;
  let failed: ((e: Error) => void) | undefined;

  const send = (bytes: Uint8Array) => {
    conn.send(bytes, server).catch(() => sendFailures++);
  };

  const sendOne = (now: number) => {
    const kind = init.kinds[turn++ % init.kinds.length]!;
    if (now >= measureFrom) tallies[kind].sent++;
    outstanding++;
    if (kind === "stun") {
      const txid = txids.next();
      const req = bindingRequest(txid);
      stunOut.set(toHex(txid), { at: now, req });
      send(req);
    } else {
      kaOut.push(now);
      send(keepalive);
    }
  };

  const refill = () => {
    if (!sending) return;
    const now = performance.now();
    while (outstanding < init.window) sendOne(now);
  };

  const answered = (kind: Kind, sentAt: number, now: number, error: boolean) => {
    outstanding--;
    if (sentAt < measureFrom) return;
    const t = tallies[kind];
    t.answered++;
    if (error) t.errors++;
    t.sample((now - sentAt) * 1000);
  };

  const onDatagram = (b: Uint8Array, now: number) => {
    if (isStunSuccess(b)) {
      const key = txKey(b, 8);
      const entry = stunOut.get(key);
      if (!entry) {
        if (now >= measureFrom) tallies.stun.unmatched++;
        return;
      }
      stunOut.delete(key);
      if (!checkedMapped) {
        // Once per client, check the reply properly: FINGERPRINT and our own mapped address.
        checkedMapped = true;
        const mapped = parseBindingResponse(b, entry.req.subarray(8, 20));
        const local = (conn.addr as Deno.NetAddr).port;
        if (!mapped || mapped.host !== "127.0.0.1" || mapped.port !== local) {
          throw new Error(`Cannot trust the server: bad Binding response ${toHex(b)}`);
        }
      }
      answered("stun", entry.at, now, false);
      return;
    }
    if (b.length < 5 || b[0] !== MAGIC) return;
    const type = b[2];
    const ack = type === T.KEEPALIVE_ACK && b.length >= 11 &&
      idBytes.every((x, i) => b[3 + i] === x);
    if (ack || (type === T.ERROR && b[4] === T.KEEPALIVE)) {
      if (kaHead >= kaOut.length) {
        if (now >= measureFrom) tallies.keepalive.unmatched++;
        return;
      }
      answered("keepalive", kaOut[kaHead++]!, now, type === T.ERROR);
      if (kaHead > 4096 && kaHead * 2 > kaOut.length) {
        kaOut.splice(0, kaHead);
        kaHead = 0;
      }
      return;
    }
    if (type === T.COOKIE && registered) {
      // Registration proves our address (echo the cookie) and our key (sign).
      const d = decode(b);
      if (d.ok && d.value.type === "cookie") send(register(d.value.cookie));
      return;
    }
    if (type === T.REGISTER_OK && registered) {
      const d = decode(b);
      if (d.ok && d.value.type === "register_ok" && d.value.id === init.id) {
        keepalive = encode({ type: "keepalive", id: init.id, token: d.value.token });
        registered();
      }
      return;
    }
    if (type === T.ERROR && b[4] === T.REGISTER && failed) {
      const d = decode(b);
      const why = d.ok && d.value.type === "error" ? d.value.text : "error reply";
      failed(new Error(`Cannot register ${init.name}: ${why}`));
    }
    // peer_joined and friends (the other bench clients joining the room): not ours to count.
  };

  const sweep = () => {
    const now = performance.now();
    const deadline = now - init.timeoutMs;
    for (const [key, e] of stunOut) {
      if (e.at > deadline) break;
      stunOut.delete(key);
      outstanding--;
      if (e.at >= measureFrom) tallies.stun.lost++;
    }
    while (kaHead < kaOut.length && kaOut[kaHead]! <= deadline) {
      if (kaOut[kaHead]! >= measureFrom) tallies.keepalive.lost++;
      kaHead++;
      outstanding--;
    }
    refill();
  };

  let loopError: unknown;
  let closed = false;
  const loop = (async () => {
    const buf = new Uint8Array(2048);
    while (!closed) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await conn.receive(buf);
      } catch (e) {
        if (closed || e instanceof Deno.errors.BadResource) return;
        continue; // ICMP errors: keep going
      }
      try {
        onDatagram(got[0], performance.now());
      } catch (e) {
        loopError = e;
        return;
      }
      refill();
    }
  })();

  try {
    // Register, retrying: the first datagram may race the server's start.
    await new Promise<void>((resolve, reject) => {
      let tries = 0;
      const reg = register(new Uint8Array(0));
      const t = setInterval(() => {
        if (++tries > REGISTER_TRIES) {
          done();
          reject(
            new Error(`Cannot register ${init.name}: no register_ok after ${tries - 1} tries`),
          );
        } else send(reg);
      }, REGISTER_EVERY_MS);
      const done = () => {
        clearInterval(t);
        registered = failed = undefined;
      };
      registered = () => (done(), resolve());
      failed = (e) => (done(), reject(e));
      send(reg);
    });
    self.postMessage(
      {
        type: "ready",
        index: init.index,
        local: (conn.addr as Deno.NetAddr).port,
      } satisfies FromClient,
    );

    const sweeper = setInterval(sweep, SWEEP_MS);
    const localPort = (conn.addr as Deno.NetAddr).port;
    /** Sends for `ms`, then waits for what is outstanding to be answered or to time out. */
    const runFor = async (ms: number) => {
      sending = true;
      refill();
      await new Promise((r) => setTimeout(r, ms));
      sending = false;
      const drainUntil = performance.now() + init.timeoutMs + 2 * SWEEP_MS;
      while (outstanding > 0 && performance.now() < drainUntil && loopError === undefined) {
        await new Promise((r) => setTimeout(r, 5));
      }
      sweep();
    };
    let drops0: number | undefined, drops1: number | undefined;
    try {
      const warmup = await phase("warmup");
      if (warmup.ms > 0) await runFor(warmup.ms);
      // Start the measured period from a clean slate: a keepalive lost in the warm-up must not
      // shift the order-based matching of the measured ones.
      stunOut.clear();
      kaOut.length = 0;
      kaHead = 0;
      outstanding = 0;
      self.postMessage({ type: "warm", index: init.index } satisfies FromClient);
      const measure = await phase("measure");
      drops0 = udpSocketDrops(localPort);
      measureFrom = performance.now();
      await runFor(measure.ms);
      drops1 = udpSocketDrops(localPort);
    } finally {
      clearInterval(sweeper);
    }
    if (loopError !== undefined) throw loopError;
    if (sendFailures > 0) {
      throw new Error(`Cannot send: ${sendFailures} datagrams failed to send`);
    }
    // Requests sent in the measured period that the sweep has not expired yet: count as lost.
    for (const e of stunOut.values()) if (e.at >= measureFrom) tallies.stun.lost++;
    for (let i = kaHead; i < kaOut.length; i++) {
      if (kaOut[i]! >= measureFrom) tallies.keepalive.lost++;
    }
    return {
      stun: tallies.stun.result(),
      keepalive: tallies.keepalive.result(),
      socketDrops: drops0 !== undefined && drops1 !== undefined ? drops1 - drops0 : undefined,
    };
  } finally {
    closed = true;
    conn.close();
    await loop;
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
