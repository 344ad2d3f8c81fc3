/**
 * Reliable, ordered message delivery to and from one peer over an unreliable path:
 * fragmentation, per-fragment ACKs, retransmission with backoff, duplicate suppression,
 * in-order release. Pure: it returns the datagrams to send and the events to report.
 */
import type { DataFields } from "../wire/codec.ts";
import { concat } from "../wire/bytes.ts";

/** Payload bytes per fragment: keeps DATA (+ relay wrapping) well under 1200 bytes. */
export const FRAG_SIZE = 1024;
/** Largest message, in UTF-8 bytes. */
export const MAX_MESSAGE = 16 * 1024;
/** Fragments in the largest message: MAX_MESSAGE in FRAG_SIZE chunks (16). */
export const MAX_MESSAGE_FRAGS = Math.ceil(MAX_MESSAGE / FRAG_SIZE);

export interface DeliveryConfig {
  initialRtoMs: number;
  maxRtoMs: number;
  /** Give up on a message after this long without a full acknowledgement. */
  giveUpMs: number;
  /** Fragments in flight at once to one peer. */
  window: number;
}

export const DEFAULT_DELIVERY_CONFIG: DeliveryConfig = {
  initialRtoMs: 400,
  maxRtoMs: 4000,
  giveUpMs: 30_000,
  window: 64,
};

export type Fragment = DataFields;

export type TxEvent = { type: "delivered"; msgNo: number } | {
  type: "undelivered";
  msgNo: number;
};

interface Outgoing {
  seq: number;
  msgNo: number;
  direct: boolean;
  chunks: Uint8Array[];
  acked: boolean[];
  left: number;
  firstSent: number; // -1 until sent
  nextSend: number;
  rto: number;
}

/** Splits UTF-8 bytes into fragments of at most FRAG_SIZE; an empty message is one empty chunk. */
export function split(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += FRAG_SIZE) out.push(bytes.subarray(i, i + FRAG_SIZE));
  if (out.length === 0) out.push(new Uint8Array(0));
  return out;
}

export class Sender {
  private nextSeq = 0;
  private queue: Outgoing[] = [];
  private inFlight = 0;

  constructor(private cfg: DeliveryConfig = DEFAULT_DELIVERY_CONFIG) {}

  get pending(): number {
    return this.queue.length;
  }

  /** Queues a message; its fragments go out on the next `tick`. */
  send(msgNo: number, bytes: Uint8Array, direct: boolean, now: number): void {
    const chunks = split(bytes);
    if (chunks.length > MAX_MESSAGE_FRAGS) throw new RangeError("message too large");
    this.queue.push({
      seq: this.nextSeq++,
      msgNo,
      direct,
      chunks,
      acked: chunks.map(() => false),
      left: chunks.length,
      firstSent: -1,
      nextSend: now,
      rto: this.cfg.initialRtoMs,
    });
  }

  /** Lowest sequence number still unacknowledged: receivers may skip anything below it. */
  private floor(): number {
    return this.queue[0]?.seq ?? this.nextSeq;
  }

  onAck(seq: number, frag: number, events: TxEvent[]): void {
    const i = this.queue.findIndex((o) => o.seq === seq);
    const o = this.queue[i];
    if (!o || frag >= o.chunks.length || o.acked[frag]) return;
    o.acked[frag] = true;
    o.left--;
    this.inFlight--;
    if (o.left === 0) {
      this.queue.splice(i, 1);
      events.push({ type: "delivered", msgNo: o.msgNo });
    }
  }

  /** Fragments due now (first sends and retransmissions) and give-ups. */
  tick(now: number, events: TxEvent[]): Fragment[] {
    const out: Fragment[] = [];
    for (let i = 0; i < this.queue.length; i++) {
      const o = this.queue[i]!;
      if (o.firstSent >= 0 && now - o.firstSent > this.cfg.giveUpMs) {
        this.inFlight -= o.left;
        this.queue.splice(i--, 1);
        events.push({ type: "undelivered", msgNo: o.msgNo });
        continue;
      }
      if (now < o.nextSend) continue;
      const first = o.firstSent < 0;
      if (first && this.inFlight + o.left > this.cfg.window && this.inFlight > 0) break;
      if (first) {
        o.firstSent = now;
        this.inFlight += o.left;
      } else {
        o.rto = Math.min(o.rto * 2, this.cfg.maxRtoMs);
      }
      o.nextSend = now + o.rto;
      const floor = this.floor();
      for (let f = 0; f < o.chunks.length; f++) {
        if (o.acked[f]) continue;
        out.push({
          seq: o.seq,
          floor,
          msgNo: o.msgNo,
          frag: f,
          frags: o.chunks.length,
          direct: o.direct,
          chunk: o.chunks[f]!,
        });
      }
    }
    return out;
  }

  /**
   * When `tick` next has work: a retransmission or give-up, or a first send the window allows.
   * Null when nothing is queued or everything waits for acknowledgements to open the window.
   */
  nextDeadline(): number | null {
    let at = Infinity;
    let inFlight = this.inFlight;
    for (const o of this.queue) {
      if (o.firstSent >= 0) {
        at = Math.min(at, o.nextSend, o.firstSent + this.cfg.giveUpMs + 1);
        continue;
      }
      // The same rule as `tick`: a first send that does not fit the window waits for ACKs.
      if (inFlight + o.left > this.cfg.window && inFlight > 0) break;
      inFlight += o.left;
      at = Math.min(at, o.nextSend);
    }
    return at === Infinity ? null : at;
  }

  /** The peer is gone: everything still queued is undeliverable. */
  abandon(events: TxEvent[]): void {
    for (const o of this.queue) events.push({ type: "undelivered", msgNo: o.msgNo });
    this.queue = [];
    this.inFlight = 0;
  }
}

export interface Received {
  msgNo: number;
  direct: boolean;
  bytes: Uint8Array;
}

/** Limits on what one peer can make us hold for it. */
export interface ReceiverConfig {
  /**
   * Bytes of incomplete messages kept for the peer; beyond it fragments are dropped unacked
   * (the sender retransmits them later). The next expected message is always taken, so the
   * most held is this plus MAX_MESSAGE.
   */
  maxBufferedBytes: number;
  /** An incomplete message is forgotten this long after its first fragment arrived. */
  partialTimeoutMs: number;
}

export const DEFAULT_RECEIVER_CONFIG: ReceiverConfig = {
  // Not the sender's window: fragments it has had acknowledged still wait here while one
  // earlier fragment is lost, so a healthy sender under loss buffers several windows' worth
  // (a 20%-loss lab run stalled at one window). 1 MiB per peer still bounds what a room of
  // hostile members can pin (63 MiB at 64 members).
  maxBufferedBytes: 1024 * 1024,
  // Past the sender's give-up (30 s) plus slack: only messages the sender abandoned time out.
  partialTimeoutMs: 40_000,
};

/**
 * Why a fragment was dropped unacked:
 * - `oversize`: a chunk over FRAG_SIZE, more than MAX_MESSAGE_FRAGS fragments, or frag >= frags
 * - `inconsistent`: its frags or msg_no differ from earlier fragments of the same seq
 * - `window`: too far ahead of the next expected message
 * - `buffer_full`: the peer already has `maxBufferedBytes` of incomplete messages with us
 * - `expired`: (counted per message) an incomplete message timed out and was forgotten
 */
export type RxDropReason = "oversize" | "inconsistent" | "window" | "buffer_full" | "expired";

interface Incomplete {
  msgNo: number;
  direct: boolean;
  chunks: (Uint8Array | undefined)[];
  left: number;
  bytes: number;
  firstAt: number;
}

/** How far ahead of the next expected message we buffer; beyond it, data is dropped unacked. */
const RX_WINDOW = 256;

export class Receiver {
  private expected = 0;
  /** By seq, in order of creation, so the oldest (first to time out) comes first. */
  private partial = new Map<number, Incomplete>();
  private bytes = 0;
  /** The latest `now` seen: time only moves forward here. */
  private now = 0;
  duplicates = 0;
  /** Dropped fragments (and timed-out messages) counted by reason. */
  readonly drops: Map<RxDropReason, number> = new Map();
  private cfg: ReceiverConfig;

  constructor(cfg: Partial<ReceiverConfig> = {}) {
    this.cfg = { ...DEFAULT_RECEIVER_CONFIG, ...cfg };
  }

  /** Bytes of incomplete messages held now. */
  get buffered(): number {
    return this.bytes;
  }

  /**
   * Takes one fragment. Returns whether to ACK it, and pushes messages now deliverable in order.
   * `now` (ms) times out incomplete messages; without it the last time given is used.
   */
  onData(f: Fragment, ready: Received[], now: number = this.now): boolean {
    this.tick(now);
    if (
      f.frags < 1 || f.frags > MAX_MESSAGE_FRAGS || f.frag >= f.frags || f.chunk.length > FRAG_SIZE
    ) {
      return this.drop("oversize");
    }
    if (f.floor > this.expected) {
      // The sender gave up on everything below `floor`: stop waiting for it.
      for (const s of this.partial.keys()) if (s < f.floor) this.forget(s);
      this.expected = f.floor;
      this.release(ready);
    }
    if (f.seq < this.expected) {
      this.duplicates++;
      return true; // already delivered; the ACK was lost, so ACK again
    }
    if (f.seq - this.expected >= RX_WINDOW) return this.drop("window");
    let p = this.partial.get(f.seq);
    if (p && (p.chunks.length !== f.frags || p.msgNo !== f.msgNo)) {
      return this.drop("inconsistent");
    }
    if (p?.chunks[f.frag]) {
      this.duplicates++;
      return true;
    }
    // The next expected message is always taken, so a full buffer cannot block delivery.
    if (f.seq !== this.expected && this.bytes + f.chunk.length > this.cfg.maxBufferedBytes) {
      return this.drop("buffer_full");
    }
    if (!p) {
      p = {
        msgNo: f.msgNo,
        direct: f.direct,
        chunks: new Array(f.frags),
        left: f.frags,
        bytes: 0,
        firstAt: this.now,
      };
      this.partial.set(f.seq, p);
    }
    p.chunks[f.frag] = f.chunk.slice(); // the socket buffer is reused: keep a copy
    p.left--;
    p.bytes += f.chunk.length;
    this.bytes += f.chunk.length;
    this.release(ready);
    return true;
  }

  /** Forgets incomplete messages that have timed out by `now`. */
  tick(now: number): void {
    this.now = Math.max(this.now, now);
    for (const [seq, p] of this.partial) {
      if (this.now - p.firstAt < this.cfg.partialTimeoutMs) break;
      this.forget(seq);
      this.drop("expired");
    }
  }

  /** When the oldest incomplete message times out (`tick` then has work), or null. */
  nextDeadline(): number | null {
    for (const p of this.partial.values()) return p.firstAt + this.cfg.partialTimeoutMs;
    return null;
  }

  private drop(reason: RxDropReason): false {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
    return false;
  }

  private forget(seq: number): void {
    const p = this.partial.get(seq);
    if (!p) return;
    this.bytes -= p.bytes;
    this.partial.delete(seq);
  }

  private release(ready: Received[]): void {
    for (;;) {
      const p = this.partial.get(this.expected);
      if (!p || p.left > 0) return;
      this.forget(this.expected);
      this.expected++;
      ready.push({
        msgNo: p.msgNo,
        direct: p.direct,
        bytes: concat(...(p.chunks as Uint8Array[])),
      });
    }
  }
}
