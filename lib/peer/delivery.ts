/**
 * Reliable, ordered message delivery to and from one peer over an unreliable path:
 * fragmentation, per-fragment ACKs, retransmission with backoff, duplicate suppression,
 * in-order release. Pure: it returns the datagrams to send and the events to report.
 */
import { type DataFields, MAX_FRAGS } from "../wire/codec.ts";
import { concat } from "../wire/bytes.ts";

/** Payload bytes per fragment: keeps DATA (+ relay wrapping) well under 1200 bytes. */
export const FRAG_SIZE = 1024;
/** Largest message, in UTF-8 bytes. */
export const MAX_MESSAGE = 16 * 1024;

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
    if (chunks.length > MAX_FRAGS) throw new RangeError("message too large");
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

interface Partial {
  msgNo: number;
  direct: boolean;
  chunks: (Uint8Array | undefined)[];
  left: number;
}

/** How far ahead of the next expected message we buffer; beyond it, data is dropped unacked. */
const RX_WINDOW = 256;

export class Receiver {
  private expected = 0;
  private partial = new Map<number, Partial>();
  duplicates = 0;

  /**
   * Takes one fragment. Returns whether to ACK it, and pushes messages now deliverable in order.
   */
  onData(f: Fragment, ready: Received[]): boolean {
    if (f.floor > this.expected) {
      // The sender gave up on everything below `floor`: stop waiting for it.
      for (const s of this.partial.keys()) if (s < f.floor) this.partial.delete(s);
      this.expected = f.floor;
      this.release(ready);
    }
    if (f.seq < this.expected) {
      this.duplicates++;
      return true; // already delivered; the ACK was lost, so ACK again
    }
    if (f.seq - this.expected >= RX_WINDOW) return false;
    let p = this.partial.get(f.seq);
    if (!p) {
      p = { msgNo: f.msgNo, direct: f.direct, chunks: new Array(f.frags), left: f.frags };
      this.partial.set(f.seq, p);
    }
    if (p.chunks.length !== f.frags || p.msgNo !== f.msgNo) return false; // inconsistent: ignore
    if (p.chunks[f.frag]) {
      this.duplicates++;
      return true;
    }
    p.chunks[f.frag] = f.chunk.slice(); // the socket buffer is reused: keep a copy
    p.left--;
    this.release(ready);
    return true;
  }

  private release(ready: Received[]): void {
    for (;;) {
      const p = this.partial.get(this.expected);
      if (!p || p.left > 0) return;
      this.partial.delete(this.expected);
      this.expected++;
      ready.push({
        msgNo: p.msgNo,
        direct: p.direct,
        bytes: concat(...(p.chunks as Uint8Array[])),
      });
    }
  }
}
