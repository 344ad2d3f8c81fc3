/**
 * A slice of scale_bench's fake peers, in a process of its own (one process holds fewer file
 * descriptors than 100,000 sockets need). Each peer has its own identity key and its own socket
 * on its own loopback address and port, registers the way a real peer does (REGISTER, COOKIE,
 * REGISTER signed with the cookie, REGISTER_OK) and then sends a keepalive every interval the
 * server gave it, counted from its own REGISTER_OK, as a peer's agent does.
 *
 * Protocol with scale_bench.ts: the configuration as one JSON argument; JSON lines on stdout
 * (`ready` once every socket and key is made, `registered` once every peer has registered or
 * given up, then `result`); on stdin the line `register` starts registering (so no process is
 * still making keys while others register) and `hold <ms>` the measured period. End of stdin
 * (the parent died) exits at once.
 */
import { decode, encode, MAGIC, type Message, registerSigInput, T } from "../lib/wire/codec.ts";
import { publicFromSecret, signWith } from "../lib/crypto/ed25519.ts";
import { toHex } from "../lib/wire/bytes.ts";
import { Fifo } from "../lib/util/fifo.ts";

export interface SliceConfig {
  serverPort: number;
  /** The first peer's global number and how many this process runs. */
  first: number;
  count: number;
  /** Peers that share one loopback address (the server's per-IP cap counts them). */
  perIp: number;
  roomSize: number;
  /** Registrations this process keeps in progress at once. */
  window: number;
  /** A keepalive unanswered this long is lost. */
  timeoutMs: number;
  /** A registration step unanswered this long is sent again, at most REGISTER_TRIES times. */
  retryMs: number;
}

export interface SliceResult {
  type: "result";
  sent: number;
  answered: number;
  lost: number;
  /** Keepalives answered with an error (the server forgot the peer). */
  errors: number;
  /** Keepalive round trips in µs, all of them. */
  rttUs: number[];
  /** Replies that matched nothing outstanding (late, or duplicates). */
  unmatched: number;
  /** Other datagrams received during the measured period (peer_joined and friends). */
  other: number;
}

export interface SliceRegistered {
  type: "registered";
  ok: number;
  failed: number;
  /** Sends of a REGISTER beyond the first two per peer (a step was lost or late). */
  resends: number;
  /** performance.timeOrigin + now at the first REGISTER and at the last REGISTER_OK. */
  firstAt: number;
  lastAt: number;
  firstError?: string;
}

const REGISTER_TRIES = 8;
/** Receive buffer per socket: larger than any datagram the server sends (MAX_SEND 1200). */
const BUFFER = 1500;
/** How often due keepalives and timeouts are looked at. */
const TICK_MS = 5;

/** Peer number `n`'s loopback address: 127.1.0.1 on, `perIp` peers each, last byte 1-250. */
export function peerHost(n: number, perIp: number): string {
  const ip = Math.floor(n / perIp);
  const last = (ip % 250) + 1, rest = Math.floor(ip / 250);
  return `127.${1 + Math.floor(rest / 256)}.${rest % 256}.${last}`;
}

const wall = () => performance.timeOrigin + performance.now();

class Peer {
  readonly conn: Deno.DatagramConn;
  readonly id: string;
  readonly name: string;
  readonly room: string;
  /** An Ed25519 key of its own (the X25519 half of an identity is never used here). */
  private secret = crypto.getRandomValues(new Uint8Array(32));
  private edPublic = publicFromSecret(this.secret);
  private nonce = toHex(crypto.getRandomValues(new Uint8Array(8)));
  keepalive: Uint8Array | null = null;
  intervalMs = 0;
  /** Registration: tries so far and when the last step was sent; keepalive: when it is due. */
  tries = 0;
  stepAt = 0;
  nextKeepalive = Infinity;
  /** The outstanding keepalive's send time, or -1. */
  kaSentAt = -1;
  done = false;

  constructor(n: number, cfg: SliceConfig) {
    this.conn = Deno.listenDatagram({
      hostname: peerHost(n, cfg.perIp),
      port: 0,
      transport: "udp",
    });
    this.id = n.toString(16).padStart(16, "0");
    this.name = `p${n}`;
    this.room = `scale-${Math.floor(n / cfg.roomSize)}`;
  }

  register(cookie: Uint8Array): Uint8Array {
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id: this.id,
      nonce: this.nonce,
      name: this.name,
      room: this.room,
      locals: [],
      key: this.edPublic,
      cookie,
      sig: new Uint8Array(0),
    };
    if (cookie.length > 0) m.sig = signWith(this.secret, registerSigInput(m));
    return encode(m);
  }
}

async function main(cfg: SliceConfig): Promise<void> {
  const out = (o: unknown) => console.log(JSON.stringify(o));
  const server: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: cfg.serverPort };
  const peers: Peer[] = [];
  for (let i = 0; i < cfg.count; i++) peers.push(new Peer(cfg.first + i, cfg));

  let measuring = false, measureFrom = Infinity, measureUntil = Infinity, stopped = false;
  /** Whether a keepalive sent at `at` was sent in the measured period. */
  const measured = (at: number) => at >= measureFrom && at < measureUntil;
  const r: SliceResult = {
    type: "result",
    sent: 0,
    answered: 0,
    lost: 0,
    errors: 0,
    rttUs: [],
    unmatched: 0,
    other: 0,
  };
  const reg: SliceRegistered = {
    type: "registered",
    ok: 0,
    failed: 0,
    resends: 0,
    firstAt: 0,
    lastAt: 0,
  };
  let inProgress = 0, nextToStart = 0;
  /** Registrations under way; registered peers by when their next keepalive is due. */
  const registering = new Set<Peer>();
  const due = new Fifo<Peer>();
  /** Keepalives sent and not yet answered or timed out, oldest first. */
  const waiting = new Fifo<{ peer: Peer; at: number }>();
  let onAllRegistered!: () => void;
  const allRegistered = new Promise<void>((res) => onAllRegistered = res);

  const send = (p: Peer, bytes: Uint8Array) => {
    p.conn.send(bytes, server).catch(() => {});
  };
  const finishRegistration = (p: Peer, ok: boolean, why?: string) => {
    p.done = true;
    inProgress--;
    registering.delete(p);
    if (ok) {
      reg.ok++;
      reg.lastAt = wall();
    } else {
      reg.failed++;
      if (why && reg.firstError === undefined) reg.firstError = `${p.name}: ${why}`;
    }
    startMore();
    if (reg.ok + reg.failed === peers.length) onAllRegistered();
  };
  const startMore = () => {
    while (inProgress < cfg.window && nextToStart < peers.length) {
      const p = peers[nextToStart++]!;
      inProgress++;
      registering.add(p);
      if (reg.firstAt === 0) reg.firstAt = wall();
      p.tries = 1;
      p.stepAt = performance.now();
      send(p, p.register(new Uint8Array(0)));
    }
  };

  const onDatagram = (p: Peer, b: Uint8Array, now: number) => {
    if (b.length < 5 || b[0] !== MAGIC) return;
    const type = b[2];
    if (p.keepalive) {
      if (type === T.KEEPALIVE_ACK || (type === T.ERROR && b[4] === T.KEEPALIVE)) {
        if (p.kaSentAt < 0) {
          if (measuring) r.unmatched++;
          return;
        }
        if (measured(p.kaSentAt)) {
          r.answered++;
          if (type === T.ERROR) r.errors++;
          r.rttUs.push(Math.round((now - p.kaSentAt) * 1000));
        }
        p.kaSentAt = -1;
      } else if (measuring) r.other++;
      return;
    }
    if (p.done) return;
    if (type === T.COOKIE) {
      const d = decode(b);
      if (d.ok && d.value.type === "cookie") {
        p.stepAt = now;
        send(p, p.register(d.value.cookie));
      }
    } else if (type === T.REGISTER_OK) {
      const d = decode(b);
      if (d.ok && d.value.type === "register_ok" && d.value.id === p.id) {
        p.keepalive = encode({ type: "keepalive", id: p.id, token: d.value.token });
        p.intervalMs = d.value.keepaliveMs;
        p.nextKeepalive = now + p.intervalMs;
        due.push(p); // all intervals are equal, so the queue stays in time order
        finishRegistration(p, true);
      }
    } else if (type === T.ERROR && b[4] === T.REGISTER) {
      const d = decode(b);
      finishRegistration(p, false, d.ok && d.value.type === "error" ? d.value.text : "error");
    }
  };

  const receive = async (p: Peer) => {
    const buf = new Uint8Array(BUFFER);
    while (!stopped) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await p.conn.receive(buf);
      } catch (e) {
        if (stopped || e instanceof Deno.errors.BadResource) return;
        continue;
      }
      onDatagram(p, got[0], performance.now());
    }
  };
  const loops = peers.map(receive);

  // Registration retries, keepalives when due, keepalive timeouts: one timer for all, looking
  // only at what can be due (each list is in time order, so the first ones are the next).
  const tick = () => {
    const now = performance.now();
    for (const p of registering) {
      if (now - p.stepAt < cfg.retryMs) continue;
      if (p.tries >= REGISTER_TRIES) {
        finishRegistration(p, false, `no answer after ${p.tries} tries`);
        continue;
      }
      // Start again from the cookie request: a cookie may have aged out meanwhile.
      p.tries++;
      reg.resends++;
      p.stepAt = now;
      send(p, p.register(new Uint8Array(0)));
    }
    while (waiting.length > 0 && now - waiting.peek()!.at >= cfg.timeoutMs) {
      const w = waiting.shift()!;
      if (w.peer.kaSentAt !== w.at) continue; // answered
      if (measured(w.at)) r.lost++;
      w.peer.kaSentAt = -1;
    }
    while (due.length > 0 && now >= due.peek()!.nextKeepalive) {
      const p = due.shift()!;
      p.nextKeepalive += p.intervalMs;
      due.push(p);
      if (measured(p.kaSentAt)) r.lost++; // the one before was never answered
      p.kaSentAt = now;
      waiting.push({ peer: p, at: now });
      if (measuring) r.sent++;
      send(p, p.keepalive!);
    }
  };
  const ticker = setInterval(tick, TICK_MS);

  const stdin = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  const commands = (async function* () {
    let buf = "";
    for await (const chunk of stdin) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, nl);
        buf = buf.slice(nl + 1);
      }
    }
  })();

  out({ type: "ready" });
  const go = await commands.next();
  if (go.done || go.value !== "register") Deno.exit(0); // the parent went away or gave up
  startMore();
  await allRegistered;
  out(reg);
  const first = await commands.next();
  const m = first.done ? null : /^hold (\d+)$/.exec(first.value);
  if (!m) Deno.exit(0); // the parent went away or gave up
  measuring = true;
  measureFrom = performance.now();
  await new Promise((res) => setTimeout(res, Number(m[1])));
  measuring = false;
  measureUntil = performance.now();
  // Keepalives sent in the period get their timeout to be answered.
  const drainUntil = performance.now() + cfg.timeoutMs + 50;
  while (performance.now() < drainUntil && peers.some((p) => measured(p.kaSentAt))) {
    await new Promise((res) => setTimeout(res, 20));
  }
  for (const p of peers) if (measured(p.kaSentAt)) r.lost++;
  clearInterval(ticker);
  stopped = true;
  for (const p of peers) p.conn.close();
  await Promise.all(loops);
  out(r);
}

if (import.meta.main) {
  await main(JSON.parse(Deno.args[0]!) as SliceConfig);
  Deno.exit(0);
}
