/**
 * Reliable, ordered message delivery to and from one peer over an unreliable path:
 * fragmentation, batched and delayed ACKs, retransmission on an RTT-derived timeout and on
 * fast retransmit, a congestion window, duplicate suppression, in-order release. Pure: it returns
 * the datagrams to send and the events to report; time comes in as `now`.
 */
import type { AckBatch, AckBlock, DataFields } from "../wire/codec.ts";
import { FRAG_SIZE, MAX_ACK_BLOCKS, MAX_FRAGS } from "../wire/sizes.ts";
import { concat } from "../wire/bytes.ts";
import { Fifo } from "../util/fifo.ts";

/**
 * Payload bytes per fragment. A full DATA sealed and wrapped in RELAY is 92 bytes plus the
 * chunk: 1116 bytes, under the 1200 we send at most. 1108 would be the ceiling, but 8% larger
 * fragments are not worth breaking peers that drop chunks over 1024 (the receive limit), and
 * 16 KiB stays exactly 16 fragments. Where a path carries more, one DATA carries several
 * consecutive fragments (`coalesce`), but the fragment stays the unit of everything here.
 */
export { FRAG_SIZE };
/** Largest message, in UTF-8 bytes. */
export const MAX_MESSAGE = 16 * 1024;
/** Fragments in the largest message: MAX_MESSAGE in FRAG_SIZE chunks (16). */
export const MAX_MESSAGE_FRAGS = Math.ceil(MAX_MESSAGE / FRAG_SIZE);

/** How far ahead of the next expected message a receiver buffers (messages); see Receiver. */
export const RX_WINDOW = 256;
/** Bytes of incomplete messages a receiver holds per sender by default; see ReceiverConfig. */
export const RX_BUFFER_BYTES = 1024 * 1024;

export interface DeliveryConfig {
  /** Retransmission timeout before the first RTT sample (RFC 6298 says 1 s; see below). */
  initialRtoMs: number;
  /** The least the RTT-derived timeout may be. */
  minRtoMs: number;
  /** The most a timeout may be, backoff included. */
  maxRtoMs: number;
  /** Give up on a message after this long without a full acknowledgement. */
  giveUpMs: number;
  /** Congestion window at the start and after an idle spell, in fragments. */
  initialWindow: number;
  /** The congestion window never grows past this many fragments in flight. */
  maxWindow: number;
  /**
   * Bytes of messages from the oldest unfinished one to the newest begun, at most: what the
   * receiver may have to buffer behind one lost fragment. Must not exceed its
   * `maxBufferedBytes`, or it drops what we send (unacked) and we resend it.
   */
  maxSpanBytes: number;
  /** Messages from the oldest unfinished one to the newest begun, at most (receiver's window). */
  maxSpanMessages: number;
}

export const DEFAULT_DELIVERY_CONFIG: DeliveryConfig = {
  // The fixed timeout this sender had before it measured RTTs; the first ACK replaces it.
  // Lower than RFC 6298's 1 s: chat paths are well under 400 ms, and a first message
  // waiting a whole second behind one lost fragment is worse than a spurious resend.
  initialRtoMs: 400,
  // Linux's TCP minimum is 200 ms, sized for delayed ACKs of up to 40 ms and more; ours wait
  // 5 ms at most (ReceiverConfig.ackDelayMs). 100 ms still lies far above loopback and LAN
  // RTTs plus that delay and the event-loop stalls of a busy peer (GC, a burst of JSON lines:
  // a few to tens of ms), so a timeout that fires means loss, and a lost last fragment costs
  // 100 ms.
  minRtoMs: 100,
  // RFC 6298 allows a 60 s ceiling; ours is 4 s so a message gets at least 7 tries within
  // its 30 s give-up, and a path that comes back (relay to direct, a NAT rebinding) is used
  // within 4 s.
  maxRtoMs: 4000,
  giveUpMs: 30_000,
  // One full message (16 fragments of 1 KiB), as RFC 6928's 10-segment window, rounded up.
  initialWindow: 16,
  // 512 KiB in flight: several times what loopback needs for tens of MB/s at its RTT under
  // load, half the receive buffer, and half the socket layer's 1024 unfinished sends.
  maxWindow: 512,
  maxSpanBytes: RX_BUFFER_BYTES,
  maxSpanMessages: RX_WINDOW,
};

/** Later transmissions acknowledged before a fragment counts as lost (TCP's 3 dupacks). */
export const REORDER_THRESHOLD = 3;
/**
 * Or: a later one was acknowledged and this one is older than 9/8 of the RTT (RFC 9002's
 * time threshold), which catches losses in windows too small for REORDER_THRESHOLD.
 */
const TIME_THRESHOLD = 9 / 8;
/** Clock granularity G in RFC 6298's RTO = SRTT + max(G, 4 RTTVAR), in ms. */
const CLOCK_GRANULARITY_MS = 1;
/**
 * The least the window is cut to, by a loss or a timeout, in fragments: 4 KiB, what RFC 3390
 * lets a sender put into a path it knows nothing about (4380 bytes). Not TCP's one segment
 * after a timeout: with one or two fragments in flight, often nothing acknowledged after a
 * loss can reveal it, and at high loss rates each loss becomes another backed-off timeout (a
 * 20%-loss-per-link path took 3-4 times longer with 2 than with 4, for the same traffic).
 */
export const MIN_WINDOW = 4;

export type Fragment = DataFields;

/** What a DATA_ACK acknowledges: one fragment, and with a batch many more (see AckBatch). */
export interface Ack {
  seq: number;
  frag: number;
  batch?: AckBatch;
}

export type TxEvent = { type: "delivered"; msgNo: number } | {
  type: "undelivered";
  msgNo: number;
};

/** What a Sender has done so far, for /stats and tests. */
export interface SenderStats {
  /** DATA fragments sent, first sends and retransmissions. */
  sent: number;
  /** Of those, retransmissions. */
  retransmitted: number;
  /** Fragments declared lost because later ones were acknowledged (fast retransmit). */
  fastRetransmits: number;
  /** Retransmission timeouts that fired. */
  timeouts: number;
  /** Times the window was cut because of a loss (one per window of data at most). */
  windowCuts: number;
}

type FragState = "unsent" | "flight" | "lost" | "acked";

interface OutFrag {
  msg: Outgoing;
  index: number;
  state: FragState;
  /** Transmissions so far; an ACK gives an RTT sample only when this is 1 (Karn). */
  sends: number;
  /** Number of the latest transmission (counts every DATA this sender sent). */
  tx: number;
  /** Number of the first transmission. */
  firstTx: number;
  /** When the latest transmission went out. */
  sentAt: number;
}

interface Outgoing {
  seq: number;
  msgNo: number;
  direct: boolean;
  chunks: Uint8Array[];
  frags: OutFrag[];
  bytes: number;
  left: number;
  /** When its first fragment went out; -1 until then. */
  firstSent: number;
  /** Fully acknowledged or given up: no longer sent, but kept until it reaches the head. */
  done: boolean;
}

/** One transmission, in the order they went out. */
interface Sent {
  frag: OutFrag;
  tx: number;
}

/**
 * Merges runs of consecutive fragments of one message into DATAs of up to `maxFrags` fragments
 * each (a chunk of n·FRAG_SIZE bytes, the last one possibly shorter), for a path probed to
 * carry them. Order is kept; the merged chunk is a view where the chunks are adjacent in
 * memory (as `split` makes them), else a copy. The receiver undoes it with `unmerge`.
 */
export function coalesce(frags: Fragment[], maxFrags: number): Fragment[] {
  if (maxFrags <= 1 || frags.length < 2) return frags;
  const out: Fragment[] = [];
  for (let i = 0; i < frags.length;) {
    const first = frags[i]!;
    let j = i + 1;
    while (
      j < frags.length && j - i < maxFrags && frags[j - 1]!.chunk.length === FRAG_SIZE &&
      frags[j]!.chunk.length > 0 && follows(frags[j - 1]!, frags[j]!)
    ) j++;
    if (j === i + 1) out.push(first);
    else out.push({ ...first, chunk: joined(frags, i, j) });
    i = j;
  }
  return out;
}

function follows(a: Fragment, b: Fragment): boolean {
  return b.seq === a.seq && b.frag === a.frag + 1 && b.msgNo === a.msgNo && b.floor === a.floor;
}

function joined(frags: Fragment[], from: number, to: number): Uint8Array {
  const a = frags[from]!.chunk;
  let len = 0, adjacent = true;
  for (let k = from; k < to; k++) {
    const c = frags[k]!.chunk;
    if (c.buffer !== a.buffer || c.byteOffset !== a.byteOffset + len) adjacent = false;
    len += c.length;
  }
  if (adjacent) return new Uint8Array(a.buffer, a.byteOffset, len);
  const out = new Uint8Array(len);
  let at = 0;
  for (let k = from; k < to; k++) {
    out.set(frags[k]!.chunk, at);
    at += frags[k]!.chunk.length;
  }
  return out;
}

/**
 * The fragments one DATA carries: itself when its chunk is at most FRAG_SIZE, else one per
 * FRAG_SIZE of it (views, not copies). Null when they would run past the message's last
 * fragment, or the DATA carries more than MAX_MESSAGE: the receiver drops it as oversize.
 */
export function unmerge(f: Fragment): Fragment[] | null {
  if (f.chunk.length <= FRAG_SIZE) return [f];
  const n = Math.ceil(f.chunk.length / FRAG_SIZE);
  if (n > MAX_MESSAGE_FRAGS || f.frag + n > f.frags) return null;
  const out: Fragment[] = [];
  for (let k = 0; k < n; k++) {
    out.push({
      ...f,
      frag: f.frag + k,
      chunk: f.chunk.subarray(k * FRAG_SIZE, Math.min(f.chunk.length, (k + 1) * FRAG_SIZE)),
    });
  }
  return out;
}

/** Splits UTF-8 bytes into fragments of at most FRAG_SIZE; an empty message is one empty chunk. */
export function split(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += FRAG_SIZE) out.push(bytes.subarray(i, i + FRAG_SIZE));
  if (out.length === 0) out.push(new Uint8Array(0));
  return out;
}

/**
 * The sending half towards one peer. Messages are numbered (`seq`) and cut into fragments;
 * the receiver acknowledges them a few at a time (DATA_ACK: whole messages below a number,
 * and a mask of fragments per message; see Receiver.pollAck), and each acknowledged fragment
 * counts as if acknowledged alone. What it decides:
 *
 * - **Timeout** (RFC 6298): SRTT and RTTVAR from ACKs, one sample per ACK, from the newest
 *   fragment it acknowledges, if that one was sent once (Karn's rule: an ACK of a resent
 *   fragment may answer either copy, so it gives no sample);
 *   RTO = max(minRtoMs, SRTT + max(1 ms, 4·RTTVAR)), initialRtoMs before the first sample.
 *   One timer, as RFC 6298 section 5 runs it: started when a fragment goes out with none in
 *   flight, restarted by every ACK of new data, so it fires only after a whole RTO without
 *   progress (a deep queue that still drains does not trip it). Then every fragment still in
 *   flight counts as lost and is resent, and the RTO doubles (up to maxRtoMs) until an ACK of
 *   new data arrives.
 * - **Fast retransmit**: a fragment is lost once REORDER_THRESHOLD fragments sent after it
 *   are acknowledged, or one sent after it is and 9/8 of an RTT has passed (RFC 9002's packet
 *   and time thresholds). It is resent at once, ahead of new data, without waiting for the
 *   timer, while later fragments and later messages keep flowing (the receiver buffers them,
 *   up to maxSpanBytes / maxSpanMessages past the oldest unfinished message).
 * - **Congestion window** (NewReno-like AIMD, in fragments): slow start from initialWindow
 *   (+1 per fragment acknowledged) up to ssthresh, then +1/window per fragment acknowledged
 *   (one fragment per round trip), so batched ACKs grow it as single ones did. A loss
 *   halves it (ssthresh = window/2, at least MIN_WINDOW) once per window of data: losses
 *   among fragments sent before the cut do not cut it again. A timeout resets it: ssthresh
 *   becomes half the fragments in flight and the window MIN_WINDOW (4), then slow start. It
 *   grows only while it limits us (RFC 7661), so an idle chat does not earn a huge window,
 *   and after an idle spell longer than the RTO it restarts at initialWindow at most
 *   (RFC 5681).
 *
 * - **Bursts**: new fragments go once the window has room for a quarter of it (at most one
 *   message's 16), resends as soon as there is room for one.
 *
 * Pure: time comes in as `now` (ms); `tick` returns the DATA to send.
 */
/** FLOOR notices per floor change, and how far apart. */
const FLOOR_TRIES = 5;
const FLOOR_RETRY_MS = 1000;

export class Sender {
  private nextSeq = 0;
  /** Messages by seq, oldest first; done ones leave when they reach the head. */
  private readonly queue = new Fifo<Outgoing>();
  /** Messages not yet done. */
  private unfinished = 0;
  /** Index in `queue` of the message holding the next never-sent fragment, and that fragment. */
  private nextMsg = 0;
  private nextFrag = 0;
  /** Bytes of the messages before `nextMsg` (begun, or done): what the receiver may hold. */
  private spanBytes = 0;
  /** Transmissions in the order sent; entries for fragments acked or resent since are stale. */
  private readonly flight = new Fifo<Sent>();
  private inFlight = 0;
  /** Fragments declared lost, to resend before any new fragment (stale once acked). */
  private readonly lost = new Fifo<OutFrag>();
  private txCount = 0;
  private largestAckedTx = 0;
  /** Transmissions up to this one were sent before the last window cut. */
  private recoveryTx = 0;
  /** Transmissions up to this one went on an earlier path: no RTT sample from them. */
  private pathTx = 0;
  private cwnd: number;
  private ssthresh = Infinity;
  private srtt = -1;
  private rttvar = 0;
  private latestRtt = 0;
  /** Timeouts in a row without an ACK of new data: the RTO is doubled this many times. */
  private backoff = 0;
  private lastSendAt = -1;
  /** When the retransmission timer was last (re)started; it runs while fragments are in flight. */
  private timerStart = 0;
  /**
   * The timer's deadline as told to the host: never after the real one (timerStart + rto),
   * but not moved later by every ACK either, so the host's timer is not re-armed per datagram.
   * When it comes and the real deadline has moved on, `tick` just moves it there.
   */
  private armed = Infinity;
  /** The latest `now` seen. */
  private now = -Infinity;
  readonly stats: SenderStats = {
    sent: 0,
    retransmitted: 0,
    fastRetransmits: 0,
    timeouts: 0,
    windowCuts: 0,
  };

  constructor(private cfg: DeliveryConfig = DEFAULT_DELIVERY_CONFIG) {
    this.cwnd = cfg.initialWindow;
  }

  /** Messages not yet acknowledged or given up on. */
  get pending(): number {
    return this.unfinished;
  }

  /** The congestion window now, in fragments. */
  get window(): number {
    return Math.floor(this.cwnd);
  }

  /** Fragments sent and neither acknowledged nor declared lost. */
  get fragmentsInFlight(): number {
    return this.inFlight;
  }

  /** The retransmission timeout now, backoff included (ms). */
  get rto(): number {
    const base = this.srtt < 0
      ? this.cfg.initialRtoMs
      : Math.max(this.cfg.minRtoMs, this.srtt + Math.max(CLOCK_GRANULARITY_MS, 4 * this.rttvar));
    return Math.min(this.cfg.maxRtoMs, base * 2 ** this.backoff);
  }

  /** The smoothed round-trip time (ms), or null before the first sample. */
  get srttMs(): number | null {
    return this.srtt < 0 ? null : this.srtt;
  }

  /** Queues a message; its fragments go out on the next `tick`s, as the window allows. */
  send(msgNo: number, bytes: Uint8Array, direct: boolean, now: number): void {
    const chunks = split(bytes);
    if (chunks.length > MAX_MESSAGE_FRAGS) throw new RangeError("message too large");
    this.now = Math.max(this.now, now);
    const o: Outgoing = {
      seq: this.nextSeq++,
      msgNo,
      direct,
      chunks,
      frags: [],
      bytes: bytes.length,
      left: chunks.length,
      firstSent: -1,
      done: false,
    };
    o.frags = chunks.map((_, index) => ({
      msg: o,
      index,
      state: "unsent",
      sends: 0,
      tx: 0,
      firstTx: 0,
      sentAt: 0,
    }));
    this.queue.push(o);
    this.unfinished++;
    this.floorTold = 0;
  }

  /** Lowest sequence number still unacknowledged: receivers may skip anything below it. */
  private floor(): number {
    return this.queue.peek()?.seq ?? this.nextSeq;
  }

  /** The highest floor a DATA (or FLOOR) carried to the receiver. */
  private toldFloor = 0;
  private floorTold = 0;
  private nextFloorAt = 0;

  /**
   * A floor to send on its own (FLOOR), or null. When the sender gives up on (or abandons) a
   * message and has nothing left to send, no DATA will carry the new floor, and the receiver
   * would hold later messages it already acknowledged until the next one: so it is told,
   * up to FLOOR_TRIES times, FLOOR_RETRY_MS apart (a lost FLOOR is covered by the next).
   */
  floorNotice(now: number): number | null {
    const f = this.floor();
    if (f <= this.toldFloor || this.queue.length > 0) return null;
    if (this.floorTold >= FLOOR_TRIES || now < this.nextFloorAt) return null;
    this.floorTold++;
    this.nextFloorAt = now + FLOOR_RETRY_MS;
    if (this.floorTold >= FLOOR_TRIES) this.toldFloor = f;
    return f;
  }

  /** When `floorNotice` next has something, or null. */
  floorDeadline(): number | null {
    const f = this.floor();
    if (f <= this.toldFloor || this.queue.length > 0 || this.floorTold >= FLOOR_TRIES) return null;
    return this.nextFloorAt;
  }

  /**
   * An acknowledgement of fragment `frag` of message `seq` alone. `now` (ms) gives the RTT
   * sample; without it the last time given is used.
   */
  onAck(seq: number, frag: number, events: TxEvent[], now: number = this.now): void {
    this.onAcks({ seq, frag }, events, now);
  }

  /**
   * A DATA_ACK: its fragment `frag` of `seq`, and with a batch every message below
   * `batch.below` and the fragments each block's mask names. Fragments never sent, of
   * messages done, or acknowledged before, are ignored. The one sent last among those it
   * newly acknowledges gives the RTT sample, if it was sent once (Karn): the ACK answered it,
   * while the others may have waited at the receiver for it.
   */
  onAcks(a: Ack, events: TxEvent[], now: number = this.now): void {
    this.now = Math.max(this.now, now);
    const newest = { frag: null as OutFrag | null };
    if (a.batch) {
      // Whole messages: only those after the last such ACK's `below` need a look.
      let seq = this.ackedBelow;
      while (seq < a.batch.below) {
        const head = this.queue.peek();
        if (!head) break;
        if (seq < head.seq) { // done and gone (finishing one may drop several)
          seq = head.seq;
          continue;
        }
        const o = this.find(seq);
        if (!o || o.firstSent < 0) break; // never begun: nothing of it can have arrived
        for (const f of o.frags) this.ackFrag(f, newest, events);
        seq++;
      }
      this.ackedBelow = Math.max(this.ackedBelow, Math.min(seq, a.batch.below));
    }
    this.ackFrag(this.find(a.seq)?.frags[a.frag], newest, events);
    for (const b of a.batch?.blocks ?? []) {
      const o = this.find(b.seq);
      if (!o) continue;
      for (let i = 0; i < o.frags.length; i++) {
        if (b.mask & (1 << i)) this.ackFrag(o.frags[i], newest, events);
      }
    }
    const f = newest.frag;
    if (!f) return;
    if (f.sends === 1 && f.tx > this.pathTx) this.sample(this.now - f.sentAt);
    this.backoff = 0; // new data acknowledged: the path works, drop the timeout backoff
    this.timerStart = this.now; // RFC 6298 (5.3): new data acknowledged, restart the timer
    this.armed = Math.min(this.armed, this.timerStart + this.rto); // (the RTO may have shrunk)
    this.detectLosses(this.now);
  }

  /**
   * DATA now takes another path (direct or relayed, another address): the old one's RTT says
   * nothing of this one, so the RTT estimate and the timeout's backoff start over (RFC 9000,
   * 9.4, for QUIC), and what was sent before gives no RTT sample. The window is kept: a reset
   * slow start overshot the relay's rate limit (and fragments still in flight on the old path
   * held a fresh window shut), while a loss on the new path cuts it as any loss does.
   * In-flight fragments stay in flight: their ACKs may still come.
   */
  newPath(): void {
    this.srtt = -1;
    this.rttvar = 0;
    this.latestRtt = 0;
    this.backoff = 0;
    this.pathTx = this.txCount;
    // The timer runs on: with the initial timeout now, not a backed-off one.
    this.armed = Math.min(this.armed, this.timerStart + this.rto);
  }

  /** Messages below this were all looked at by a batched ACK's `below`. */
  private ackedBelow = 0;

  /** The queued message numbered `seq`, done or not, if it is still queued. */
  private find(seq: number): Outgoing | undefined {
    const head = this.queue.peek();
    const o = head && this.queue.at(seq - head.seq);
    return o?.seq === seq ? o : undefined;
  }

  /** One fragment acknowledged: window, loss bookkeeping, delivery; keeps the newest in `newest`. */
  private ackFrag(
    f: OutFrag | undefined,
    newest: { frag: OutFrag | null },
    events: TxEvent[],
  ): void {
    if (!f || f.msg.done || f.state === "acked" || f.sends === 0) return;
    const o = f.msg;
    const wasInFlight = this.inFlight;
    if (f.state === "flight") this.inFlight--;
    f.state = "acked";
    if (!newest.frag || f.tx > newest.frag.tx) newest.frag = f;
    // Grow the window for data sent since the last cut, while the window is what limits us.
    if (f.tx > this.recoveryTx && 2 * wasInFlight >= this.cwnd) {
      this.cwnd = Math.min(
        this.cfg.maxWindow,
        this.cwnd < this.ssthresh ? this.cwnd + 1 : this.cwnd + 1 / this.cwnd,
      );
    }
    // An ACK of a resent fragment may answer its first copy: count only that one as acked
    // here, or a late ACK of a first copy would make everything sent before the resend look
    // lost (a spurious timeout would snowball into resending the whole window).
    const acked = f.sends === 1 ? f.tx : f.firstTx;
    if (acked > this.largestAckedTx) this.largestAckedTx = acked;
    if (--o.left === 0) this.finish(o, { type: "delivered", msgNo: o.msgNo }, events);
  }

  /** RFC 6298 section 2: the first sample sets SRTT and RTTVAR, later ones smooth them. */
  private sample(r: number): void {
    this.latestRtt = r;
    if (this.srtt < 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
  }

  /** How long before a fragment sent ahead of an acknowledged one counts as lost. */
  private lossDelay(): number {
    const rtt = this.srtt < 0 ? this.rto : Math.max(this.srtt, this.latestRtt);
    return Math.max(CLOCK_GRANULARITY_MS, TIME_THRESHOLD * rtt);
  }

  /**
   * Declares lost the fragments in flight sent before the newest one acknowledged, once
   * REORDER_THRESHOLD later ones were acknowledged or lossDelay has passed.
   */
  private detectLosses(now: number): void {
    const delay = this.lossDelay();
    for (;;) {
      const s = this.oldestInFlight();
      if (!s || s.tx >= this.largestAckedTx) return;
      const reordered = s.tx + REORDER_THRESHOLD <= this.largestAckedTx;
      if (!reordered && s.frag.sentAt + delay > now) return; // later ones are younger still
      this.flight.shift();
      this.markLost(s.frag);
      this.stats.fastRetransmits++;
      if (s.tx > this.recoveryTx) {
        // One cut per window: losses among fragments sent before this cut are the same event.
        this.ssthresh = Math.max(MIN_WINDOW, Math.floor(this.cwnd / 2));
        this.cwnd = this.ssthresh;
        this.recoveryTx = this.txCount;
        this.stats.windowCuts++;
      }
    }
  }

  /** Whether a transmission record is the live one of a fragment still in flight. */
  private current(s: Sent): boolean {
    return s.frag.state === "flight" && s.frag.tx === s.tx && !s.frag.msg.done;
  }

  private markLost(f: OutFrag): void {
    f.state = "lost";
    this.inFlight--;
    this.lost.push(f);
  }

  /** Marks `o` done, reports it, and drops finished messages from the head of the queue. */
  private finish(o: Outgoing, e: TxEvent, events: TxEvent[]): void {
    o.done = true;
    this.unfinished--;
    events.push(e);
    while (this.queue.peek()?.done) {
      const gone = this.queue.shift()!;
      if (this.nextMsg > 0) {
        this.nextMsg--;
        this.spanBytes -= gone.bytes;
      } else {
        this.nextFrag = 0; // it was the message being sent: the next one starts afresh
      }
    }
  }

  /** The oldest live transmission in flight, dropping stale records on the way. */
  private oldestInFlight(): Sent | undefined {
    for (;;) {
      const s = this.flight.peek();
      if (!s || this.current(s)) return s;
      this.flight.shift();
    }
  }

  /** The next fragment to resend, dropping ones acknowledged or given up since. */
  private nextLost(): OutFrag | undefined {
    for (;;) {
      const f = this.lost.peek();
      if (!f || (f.state === "lost" && !f.msg.done)) return f;
      this.lost.shift();
    }
  }

  /** The next never-sent fragment, if the span limits let its message begin. */
  private nextNew(): OutFrag | undefined {
    for (;;) {
      const o = this.queue.at(this.nextMsg);
      if (!o) return undefined;
      if (o.done || this.nextFrag >= o.frags.length) {
        this.spanBytes += o.bytes;
        this.nextMsg++;
        this.nextFrag = 0;
        continue;
      }
      if (this.nextFrag === 0 && !this.mayBegin(o)) return undefined;
      return o.frags[this.nextFrag];
    }
  }

  /** The receiver can buffer `o` as well as everything from the oldest unfinished message. */
  private mayBegin(o: Outgoing): boolean {
    const head = this.queue.peek()!;
    if (o === head) return true; // the receiver always takes the next message it expects
    if (o.seq - head.seq >= this.cfg.maxSpanMessages) return false;
    return this.spanBytes + o.bytes <= this.cfg.maxSpanBytes;
  }

  /**
   * Fragments due now (resends first, then new ones, as the window allows) and give-ups.
   * `group`: the most fragments one DATA carries (`coalesce` with the same number merges what
   * this returns); the fragments of one DATA share a transmission number, so the loss
   * detection's reordering threshold counts datagrams, not fragments.
   */
  tick(now: number, events: TxEvent[], group = 1): Fragment[] {
    this.now = Math.max(this.now, now);
    now = this.now;
    this.giveUp(now, events);
    this.detectLosses(now);
    if (this.inFlight > 0 && now >= this.armed) {
      if (now >= this.timerStart + this.rto) this.timeout();
      else this.armed = this.timerStart + this.rto;
    }
    if (this.inFlight === 0 && this.lastSendAt >= 0 && now - this.lastSendAt > this.rto) {
      this.cwnd = Math.min(this.cwnd, this.cfg.initialWindow); // idle: no full-window burst
    }
    const out: Fragment[] = [];
    let floor = -1;
    let bursting = false;
    let prev: OutFrag | null = null;
    let run = 0;
    while (this.inFlight < this.window) {
      let f = this.nextLost();
      if (f) this.lost.shift();
      else {
        if (!bursting && this.window - this.inFlight < this.burst()) break;
        f = this.nextNew();
        if (!f) break;
        bursting = true;
        this.nextFrag++;
        if (f.index === 0) f.msg.firstSent = now;
      }
      if (f.sends > 0) this.stats.retransmitted++;
      this.stats.sent++;
      f.sends++;
      // coalesce's rule: the next fragment of the same message, after a full one.
      const joins = prev !== null && run < group && f.msg === prev.msg &&
        f.index === prev.index + 1 && prev.msg.chunks[prev.index]!.length === FRAG_SIZE;
      if (joins) run++;
      else {
        this.txCount++;
        run = 1;
      }
      prev = f;
      f.tx = this.txCount;
      if (f.sends === 1) f.firstTx = f.tx;
      f.sentAt = now;
      f.state = "flight";
      if (this.inFlight++ === 0) {
        this.timerStart = now; // RFC 6298 (5.1): start the timer
        this.armed = now + this.rto;
      }
      this.flight.push({ frag: f, tx: f.tx });
      if (floor < 0) floor = this.floor();
      if (floor > this.toldFloor) this.toldFloor = floor;
      const o = f.msg;
      out.push({
        seq: o.seq,
        floor,
        msgNo: o.msgNo,
        frag: f.index,
        frags: o.chunks.length,
        direct: o.direct,
        chunk: o.chunks[f.index]!,
      });
    }
    if (out.length > 0) this.lastSendAt = now;
    return out;
  }

  /**
   * New fragments wait until the window has room for this many, then fill it: a quarter of
   * the window, at most one full message. Sent one per ACK, every fragment and every ACK is a
   * wake-up of its own at each end; in bursts the datagrams queue up and are taken together
   * (chat_bench: about 10% less CPU per MB at the sender on loopback). Resends never wait.
   */
  private burst(): number {
    return Math.max(1, Math.min(MAX_MESSAGE_FRAGS, Math.floor(this.window / 4)));
  }

  /** The retransmission timer fired: everything in flight is presumed lost. */
  private timeout(): void {
    this.stats.timeouts++;
    this.stats.windowCuts++;
    this.ssthresh = Math.max(MIN_WINDOW, Math.floor(this.inFlight / 2));
    this.cwnd = MIN_WINDOW;
    this.backoff++;
    this.recoveryTx = this.txCount;
    for (let s = this.flight.shift(); s; s = this.flight.shift()) {
      if (this.current(s)) this.markLost(s.frag);
    }
  }

  /** Gives up on messages begun more than giveUpMs ago (the oldest come first). */
  private giveUp(now: number, events: TxEvent[]): void {
    for (let i = 0;; i++) {
      const o = this.queue.at(i);
      if (!o || o.firstSent < 0 || now - o.firstSent <= this.cfg.giveUpMs) break;
      if (o.done) continue;
      for (const f of o.frags) if (f.state === "flight") this.inFlight--;
      // Its never-sent fragments, if any, are skipped by nextNew (done).
      this.finish(o, { type: "undelivered", msgNo: o.msgNo }, events);
      if (this.queue.at(i) !== o) i = -1; // the head moved: start over
    }
  }

  /**
   * When `tick` next has work: now (the last time given) if the window has room for a
   * fragment that may go, else the retransmission timeout of the oldest fragment in flight or
   * the next give-up. Null when nothing is queued, or when only ACKs can let anything go.
   */
  nextDeadline(): number | null {
    const room = this.window - this.inFlight;
    if (room > 0 && (this.nextLost() || (room >= this.burst() && this.nextNew()))) return this.now;
    let at = Infinity;
    if (this.inFlight > 0) at = this.armed;
    const oldest = this.oldestInFlight();
    // Sent before an acknowledged fragment: lost by the time threshold, if nothing comes.
    if (oldest && oldest.tx < this.largestAckedTx) {
      at = Math.min(at, oldest.frag.sentAt + this.lossDelay());
    }
    for (const o of this.queue) {
      if (o.firstSent < 0) break;
      if (o.done) continue;
      at = Math.min(at, o.firstSent + this.cfg.giveUpMs + 1);
      break;
    }
    return at === Infinity ? null : at;
  }

  /** The peer is gone: everything still queued is undeliverable. */
  abandon(events: TxEvent[]): void {
    for (const o of this.queue) {
      if (!o.done) events.push({ type: "undelivered", msgNo: o.msgNo });
    }
    this.queue.clear();
    this.flight.clear();
    this.lost.clear();
    this.unfinished = 0;
    this.inFlight = 0;
    this.nextMsg = 0;
    this.nextFrag = 0;
    this.spanBytes = 0;
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
   * Bytes kept for the peer of messages not yet released: incomplete ones, and complete ones
   * waiting behind an earlier one. Beyond it fragments are dropped unacked (the sender
   * retransmits them later). The next expected message is always taken, so the most held is
   * this plus MAX_MESSAGE. The sender keeps within it (DeliveryConfig.maxSpanBytes).
   */
  maxBufferedBytes: number;
  /** An incomplete message is forgotten this long after its first fragment arrived. */
  partialTimeoutMs: number;
  /** Fragments taken in order before they are acknowledged together, at once. */
  ackEvery: number;
  /** How long a fragment taken in order waits for others to share its DATA_ACK, at most (ms). */
  ackDelayMs: number;
}

export const DEFAULT_RECEIVER_CONFIG: ReceiverConfig = {
  // Not the sender's window: fragments it has had acknowledged still wait here while one
  // earlier fragment is lost, so a healthy sender under loss buffers several windows' worth
  // (a 20%-loss lab run stalled at one window). The sender's span limit keeps it from ever
  // reaching this, so it need not grow with the congestion window (at most 512 fragments,
  // half of it). 1 MiB per peer still bounds what a room of hostile members can pin (63 MiB
  // at 64 members).
  maxBufferedBytes: RX_BUFFER_BYTES,
  // Past the sender's give-up (30 s) plus slack: only messages the sender abandoned time out.
  partialTimeoutMs: 40_000,
  // TCP and QUIC acknowledge every 2nd packet. Each DATA_ACK costs both peers a seal or an
  // open and a datagram, as much as a DATA does; every 4th makes ACKs a fifth of the
  // datagrams instead of a third, and the sender's window (16 at the start, 4 at the least)
  // is never smaller than that, so it does not wait for the delay.
  ackEvery: 4,
  // Well under the sender's least RTO (100 ms), so a delayed ACK never looks like a loss,
  // and short enough that the last fragments of a burst are not held up for long. The RTT
  // samples it delays are a few in ackEvery.
  ackDelayMs: 5,
};

/**
 * Why a fragment was dropped unacked:
 * - `oversize`: a chunk over FRAG_SIZE, more than MAX_MESSAGE_FRAGS fragments, or frag >= frags
 * - `inconsistent`: its frags or msg_no differ from earlier fragments of the same seq
 * - `window`: too far ahead of the next expected message
 * - `buffer_full`: the peer already has `maxBufferedBytes` of unreleased messages with us
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

export class Receiver {
  private expected = 0;
  /** Messages with fragments taken since the last DATA_ACK, and those the last one named. */
  private ackSeqs = new Set<number>();
  private ackPrev: number[] = [];
  /** The fragment taken last, while a DATA_ACK is owed: the next one names it first. */
  private ackLast: { seq: number; frag: number } | null = null;
  private ackCount = 0;
  /** A DATA_ACK is due now (a gap, a duplicate, ackEvery fragments), else at `ackAt`. */
  private ackNow = false;
  private ackAt = Infinity;
  /** The highest fragment taken, as seq · MAX_FRAGS + frag, and its message's fragments. */
  private top = -1;
  private topFrags = 0;
  /** DATA_ACKs built, for tests and benches. */
  acksSent = 0;
  /** Incomplete messages by seq, in order of creation: the oldest (first to time out) first. */
  private partial = new Map<number, Incomplete>();
  /**
   * Complete messages waiting behind an earlier one, by seq. They never time out: they were
   * acknowledged, so the sender reported them delivered; they go out in order once the gap
   * fills or the sender's floor passes it (it gave up on what is missing).
   */
  private held = new Map<number, Incomplete>();
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

  /** Bytes of messages held now: incomplete ones and complete ones waiting behind a gap. */
  get buffered(): number {
    return this.bytes;
  }

  /**
   * Takes one fragment. Returns whether it is to be acknowledged (`pollAck` then has it), and
   * pushes messages now deliverable in order. `now` (ms) times out incomplete messages and
   * starts the ACK delay; without it the last time given is used.
   */
  onData(f: Fragment, ready: Received[], now: number = this.now): boolean {
    this.tick(now);
    const took = this.accept(f, ready);
    if (took) this.owe(f, took === "duplicate");
    return took !== false;
  }

  /**
   * Records that `f` is owed an acknowledgement and decides when (QUIC's rules, RFC 9000
   * 13.2.1, with TCP's count): at once for a duplicate, or for a fragment that is not the one
   * after the highest taken so far (a gap opened or was filled: the sender's loss detection
   * wants to know), or once ackEvery are owed; else within ackDelayMs.
   */
  private owe(f: Fragment, duplicate: boolean): void {
    const key = f.seq * MAX_FRAGS + f.frag;
    const next = this.top < 0
      ? key
      : this.top % MAX_FRAGS + 1 < this.topFrags
      ? this.top + 1
      : (Math.floor(this.top / MAX_FRAGS) + 1) * MAX_FRAGS;
    if (duplicate || key !== next || ++this.ackCount >= this.cfg.ackEvery) this.ackNow = true;
    if (key > this.top) {
      this.top = key;
      this.topFrags = f.frags;
    }
    this.ackSeqs.add(f.seq);
    this.ackLast = { seq: f.seq, frag: f.frag };
    if (this.ackAt === Infinity) this.ackAt = this.now + this.cfg.ackDelayMs;
  }

  /**
   * The DATA_ACK to send now, or null if none is due. It names the fragment taken last, every
   * message below the next one to release (`below`), and the fragments held of each message
   * with fragments taken since the last DATA_ACK, plus those the last one named: while its
   * message is incomplete a fragment is named again by the next DATA_ACK (and by `below` once
   * it is released), so one lost ACK does not make the sender resend what arrived. Call it
   * until it returns null (more than MAX_ACK_BLOCKS messages owed take several).
   */
  pollAck(now: number = this.now): Ack | null {
    this.now = Math.max(this.now, now);
    const last = this.ackLast;
    if (!last || (!this.ackNow && this.now < this.ackAt)) return null;
    const owed = [...this.ackSeqs].filter((s) => s >= this.expected).sort((a, b) => a - b);
    const named = owed.slice(0, MAX_ACK_BLOCKS);
    for (const s of this.ackPrev) {
      if (named.length >= MAX_ACK_BLOCKS) break;
      if (s >= this.expected && !this.ackSeqs.has(s)) named.push(s);
    }
    named.sort((a, b) => a - b);
    const blocks: AckBlock[] = [];
    for (const seq of named) {
      const mask = this.maskOf(seq);
      if (mask !== 0) blocks.push({ seq, mask });
    }
    this.acksSent++;
    this.ackPrev = blocks.map((b) => b.seq);
    if (owed.length > MAX_ACK_BLOCKS) {
      this.ackSeqs = new Set(owed.slice(MAX_ACK_BLOCKS)); // still owed, and still due now
    } else {
      this.ackSeqs.clear();
      this.ackLast = null;
      this.ackCount = 0;
      this.ackNow = false;
      this.ackAt = Infinity;
    }
    return { seq: last.seq, frag: last.frag, batch: { below: this.expected, blocks } };
  }

  /** The fragments held of message `seq` as a mask (bit i: fragment i); 0 if none. */
  private maskOf(seq: number): number {
    const done = this.held.get(seq);
    if (done) return done.chunks.length >= 32 ? 0xffffffff : (1 << done.chunks.length) - 1;
    const p = this.partial.get(seq);
    let mask = 0;
    if (p) { for (let i = 0; i < p.chunks.length; i++) if (p.chunks[i]) mask |= 1 << i; }
    return mask >>> 0;
  }

  /** Takes one fragment: "new", "duplicate" (to acknowledge again) or false (dropped). */
  private accept(f: Fragment, ready: Received[]): "new" | "duplicate" | false {
    if (
      f.frags < 1 || f.frags > MAX_MESSAGE_FRAGS || f.frag >= f.frags || f.chunk.length > FRAG_SIZE
    ) {
      return this.drop("oversize");
    }
    // A sender's floor is its oldest unfinished message: never past the fragment it sends, and
    // never further ahead than the window (or one bad DATA would make us drop all that follows).
    if (f.floor > f.seq) return this.drop("inconsistent");
    if (f.floor - this.expected > RX_WINDOW) return this.drop("window");
    if (f.floor > this.expected) this.skipTo(f.floor, ready);
    if (f.seq < this.expected) {
      this.duplicates++;
      return "duplicate"; // already delivered; the ACK was lost, so ACK again
    }
    if (f.seq - this.expected >= RX_WINDOW) return this.drop("window");
    const done = this.held.get(f.seq);
    if (done) {
      if (done.chunks.length !== f.frags || done.msgNo !== f.msgNo) {
        return this.drop("inconsistent");
      }
      this.duplicates++;
      return "duplicate";
    }
    let p = this.partial.get(f.seq);
    if (p && (p.chunks.length !== f.frags || p.msgNo !== f.msgNo)) {
      return this.drop("inconsistent");
    }
    if (p?.chunks[f.frag]) {
      this.duplicates++;
      return "duplicate";
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
    if (p.left === 0) {
      this.partial.delete(f.seq);
      this.held.set(f.seq, p);
      this.release(ready);
    }
    return "new";
  }

  /** Forgets incomplete messages that have timed out by `now` (complete ones stay). */
  tick(now: number): void {
    this.now = Math.max(this.now, now);
    for (const [seq, p] of this.partial) {
      if (this.now - p.firstAt < this.cfg.partialTimeoutMs) break;
      this.forget(seq);
      this.drop("expired");
    }
  }

  /**
   * When `tick` or `pollAck` next has work: a DATA_ACK owed (now, if it is due at once), or
   * the oldest incomplete message's time-out; null for neither.
   */
  nextDeadline(): number | null {
    let at = this.ackLast ? (this.ackNow ? this.now : this.ackAt) : Infinity;
    for (const p of this.partial.values()) {
      at = Math.min(at, p.firstAt + this.cfg.partialTimeoutMs);
      break;
    }
    return at === Infinity ? null : at;
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

  /** Takes a complete message out of `held`. */
  private take(seq: number): Incomplete | undefined {
    const p = this.held.get(seq);
    if (!p) return undefined;
    this.bytes -= p.bytes;
    this.held.delete(seq);
    return p;
  }

  /**
   * A FLOOR: the sender is done with everything below `floor`. It gave up on the messages we
   * still miss, and the complete ones it had acknowledged go out now, in order.
   */
  onFloor(floor: number, ready: Received[]): void {
    if (floor > this.expected && floor - this.expected <= RX_WINDOW) this.skipTo(floor, ready);
  }

  private skipTo(floor: number, ready: Received[]): void {
    for (const s of this.partial.keys()) if (s < floor) this.forget(s);
    const below = [...this.held.keys()].filter((s) => s < floor).sort((a, b) => a - b);
    for (const s of below) ready.push(this.whole(this.take(s)!));
    this.expected = floor;
    this.release(ready);
  }

  private whole(p: Incomplete): Received {
    return { msgNo: p.msgNo, direct: p.direct, bytes: concat(...(p.chunks as Uint8Array[])) };
  }

  private release(ready: Received[]): void {
    for (let p = this.take(this.expected); p; p = this.take(this.expected)) {
      this.expected++;
      ready.push(this.whole(p));
    }
  }
}
