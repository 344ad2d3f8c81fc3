/**
 * Packetization-layer path MTU search (after RFC 8899): how many fragments one DATA may carry
 * on a path. A path starts at one fragment (1024 bytes, which fits any path). Where our own
 * link allows more (the host's `linkMtu`: loopback, a jumbo-frame LAN), sealed MTU_PROBEs
 * padded to the size of a bigger DATA go out, and only one the peer answered (MTU_ACK) raises
 * the size: the peer saw it whole, and is a version that takes such DATA. A failed size is
 * probed again later; lost DATA (retransmission timeouts with no acknowledgement between them)
 * drops the size back to one fragment at once, so a path that shrank black-holes nothing for
 * long. Pure: time comes in as `now`, probes go out through `poll`.
 * @module
 */
import {
  DATA_OVERHEAD,
  FRAG_SIZE,
  HEADER_LEN,
  ID_LEN,
  MAX_LARGE_DATAGRAM,
  MTU_PROBE_MIN,
  SEALED_MIN,
  TOKEN_LEN,
} from "../wire/sizes.ts";
import { MAX_MESSAGE_FRAGS } from "./delivery.ts";

/** Bytes the sealing adds to an encoded inner message: SEALED's header, index, counter, tag. */
export const SEAL_OVERHEAD = HEADER_LEN + SEALED_MIN;
/** What the relay's wrapping adds: RELAY on the way in (from, token, to), RELAYED on the way out. */
export const RELAY_WRAP = HEADER_LEN + 2 * ID_LEN + TOKEN_LEN;
export const RELAYED_WRAP = HEADER_LEN + ID_LEN + TOKEN_LEN;

/** IP and UDP headers under a datagram: IPv6's 40 or IPv4's 20 bytes, and UDP's 8. */
export function ipUdpOverhead(host: string): number {
  return host.includes(":") && !host.startsWith("::ffff:") ? 48 : 28;
}

/** The most fragments an encoded DATA of at most `encodedMax` bytes holds (1 at the least). */
export function fragsWithin(encodedMax: number): number {
  const n = Math.floor((encodedMax - DATA_OVERHEAD) / FRAG_SIZE);
  return Math.max(1, Math.min(MAX_MESSAGE_FRAGS, n));
}

/**
 * The largest encoded inner message a link of `mtu` bytes carries to `host` in one datagram,
 * sealed and wrapped in `wrap` bytes (0 direct, RELAY_WRAP or RELAYED_WRAP through the relay),
 * and within what decoders take.
 */
export function encodedWithin(mtu: number, host: string, wrap: number): number {
  return Math.min(mtu - ipUdpOverhead(host), MAX_LARGE_DATAGRAM) - SEAL_OVERHEAD - wrap;
}

/** The encoded size of a DATA of `frags` full fragments: what a probe for it is padded to. */
export function dataSize(frags: number): number {
  return DATA_OVERHEAD + frags * FRAG_SIZE;
}

/** The MTU_PROBE padding that makes it exactly `dataSize(frags)` bytes. */
export function probePad(frags: number): number {
  return dataSize(frags) - MTU_PROBE_MIN;
}

export interface MtuConfig {
  /** A probe unanswered this long is lost. */
  probeTimeoutMs: number;
  /** Probes of one size before that size counts as failed. */
  probeTries: number;
  /** After a search ends below our ceiling, how long until it starts over (RFC 8899: 600 s). */
  raiseMs: number;
  /** Retransmission timeouts in a row, with no DATA_ACK between them, that mean a black hole. */
  blackHoleTimeouts: number;
}

export const DEFAULT_MTU_CONFIG: MtuConfig = {
  // Far above any LAN or loopback RTT, where sizes above one fragment are ever probed.
  probeTimeoutMs: 1000,
  probeTries: 2,
  raiseMs: 600_000,
  // One timeout is ordinary loss; two in a row without an ACK is a path that stopped
  // carrying what we send (or a dead path, where one fragment per DATA costs nothing).
  blackHoleTimeouts: 2,
};

/** What an MtuSearch has done, for /stats and tests. */
export interface MtuStats {
  probes: number;
  acks: number;
  blackHoles: number;
}

/**
 * The search on one path. `frags` is what DATA may carry now. Between the confirmed size and
 * the bound (our ceiling, the peer's limit, the smallest size that failed) it tries the bound
 * first, which on loopback or a LAN is right at once, then halves the gap.
 */
export class MtuSearch {
  /** Fragments one DATA may carry on this path now: confirmed by a probe, or 1. */
  frags = 1;
  readonly stats: MtuStats = { probes: 0, acks: 0, blackHoles: 0 };
  private ceiling: number;
  private peerLimit = MAX_MESSAGE_FRAGS;
  private failedAt = Infinity;
  /** The last search ended (nothing left to try); the next starts after raiseMs. */
  private ended = false;
  private probe: { id: number; frags: number; sentAt: number; tries: number } | null = null;
  /** Sizes of the probes sent this search, by id: an answer names one of them. */
  private sent = new Map<number, number>();
  private ids: { next: number };
  /** When the next probe may go: now while searching, later once the search has ended. */
  private resumeAt: number;
  /** Retransmission timeouts counted by the sender when it last had an ACK. */
  private timeoutsAtAck = 0;
  private cfg: MtuConfig;

  /** `ceiling`: the most fragments our own link carries on this path (lib/net/link_mtu.ts). */
  constructor(
    ceiling: number,
    now: number,
    cfg: Partial<MtuConfig> = {},
    ids: { next: number } = { next: 1 },
  ) {
    this.cfg = { ...DEFAULT_MTU_CONFIG, ...cfg };
    this.ids = ids;
    this.ceiling = clamp(ceiling);
    this.resumeAt = now;
  }

  /** Our link's bound changed (a route or interface change): never send above it. */
  setCeiling(ceiling: number, now: number): void {
    const c = clamp(ceiling);
    if (c === this.ceiling) return;
    if (c > this.ceiling) this.resumeAt = Math.min(this.resumeAt, now);
    this.ceiling = c;
    this.frags = Math.min(this.frags, c);
    // A probe waiting for its retry must not go again above the new bound (a WebSocket to the
    // server refuses frames that large).
    if (this.probe && this.probe.frags > c) this.probe = null;
  }

  private bound(): number {
    return Math.min(this.ceiling, this.peerLimit, this.failedAt - 1);
  }

  /** The probe to send now, if one is due: its id, and the fragments of the DATA it stands for. */
  poll(now: number): { id: number; frags: number } | null {
    if (this.probe) {
      if (now < this.probe.sentAt + this.cfg.probeTimeoutMs) return null;
      if (this.probe.tries >= this.cfg.probeTries) {
        this.failedAt = this.probe.frags;
        this.probe = null;
      } else if (this.probe.frags > this.bound()) this.probe = null;
    }
    if (!this.probe) {
      if (now < this.resumeAt) return null;
      // A new search after one that ended: the peer's bound may have grown since (its link,
      // its transport), so it is asked again.
      if (this.ended) {
        this.ended = false;
        this.peerLimit = MAX_MESSAGE_FRAGS;
      }
      const hi = this.bound();
      if (hi <= this.frags) return this.end(now), null;
      // The bound first; after a failure, halfway between what works and what failed.
      const size = this.failedAt === Infinity ? hi : Math.ceil((this.frags + hi) / 2);
      this.probe = { id: 0, frags: size, sentAt: now, tries: 0 };
    }
    const p = this.probe;
    p.id = this.ids.next++;
    p.sentAt = now;
    p.tries++;
    this.sent.set(p.id, p.frags);
    if (this.sent.size > 64) this.sent.delete(this.sent.keys().next().value!);
    this.stats.probes++;
    return { id: p.id, frags: p.frags };
  }

  /** The search has nothing left to try: start over (from the top) after raiseMs. */
  private end(now: number): void {
    this.ended = true;
    this.resumeAt = now + this.cfg.raiseMs;
    this.failedAt = Infinity;
    this.sent.clear();
  }

  /**
   * An MTU_ACK: probe `id` arrived as `size` encoded bytes, and the peer takes DATA of at most
   * `limit` encoded bytes on this path. False if it answers no probe of ours (or misstates it).
   */
  onAck(id: number, size: number, limit: number, now: number): boolean {
    const frags = this.sent.get(id);
    if (frags === undefined || size !== dataSize(frags)) return false;
    this.sent.delete(id);
    this.stats.acks++;
    this.peerLimit = fragsWithin(limit);
    // A lower limit than before (the peer's link or transport changed) lowers us at once.
    this.frags = Math.max(
      Math.min(frags, this.peerLimit, this.ceiling),
      Math.min(this.frags, this.peerLimit),
    );
    if (this.probe?.id === id || (this.probe && this.probe.frags <= this.frags)) this.probe = null;
    if (this.bound() <= this.frags) this.end(now);
    else this.resumeAt = Math.min(this.resumeAt, now);
    return true;
  }

  /** The sender had a DATA_ACK; `timeouts` is its count of retransmission timeouts so far. */
  onProgress(timeouts: number): void {
    this.timeoutsAtAck = timeouts;
  }

  /**
   * After the sender's tick: timeouts in a row without an ACK while DATA carried several
   * fragments mean the path no longer carries them. One fragment from now on; the size is
   * searched for again after a while (the fragments waiting go out one per DATA meanwhile).
   * True when it dropped.
   */
  onTimeouts(timeouts: number, now: number): boolean {
    if (this.frags <= 1 || timeouts - this.timeoutsAtAck < this.cfg.blackHoleTimeouts) {
      return false;
    }
    this.stats.blackHoles++;
    this.frags = 1;
    this.probe = null;
    this.sent.clear();
    this.failedAt = Infinity;
    this.resumeAt = now + this.cfg.probeTimeoutMs * 60;
    this.timeoutsAtAck = timeouts;
    return true;
  }

  /** When `poll` next has work: a probe's timeout, or the search's restart. */
  nextDeadline(): number | null {
    if (this.probe) return this.probe.sentAt + this.cfg.probeTimeoutMs;
    // Nothing above us can ever be confirmed on this path: no wake-ups for it. (The peer's
    // limit is asked again by the next search, so it does not count here.)
    if (this.ceiling <= this.frags) return null;
    return this.resumeAt;
  }
}

function clamp(frags: number): number {
  return Math.max(1, Math.min(MAX_MESSAGE_FRAGS, Math.floor(frags)));
}

/**
 * One peer's searches: the direct path's (a new one whenever the path's address changes) and
 * the relay's. Probe ids are shared, so an MTU_ACK names one probe of either.
 */
export class PeerMtu {
  private direct: { key: string; s: MtuSearch } | null = null;
  private relay: MtuSearch | null = null;
  /** The search of the route DATA took last: the one probed, and the one with deadlines. */
  current: MtuSearch | null = null;
  private ids = { next: 1 };

  constructor(private cfg: Partial<MtuConfig> = {}) {}

  /**
   * The search for the route DATA takes now: the direct path at `key` (null: the relay),
   * where our link carries `ceiling` fragments per DATA. Made on first use; `timeouts` is the
   * sender's count of retransmission timeouts so far.
   */
  route(key: string | null, ceiling: number, timeouts: number, now: number): MtuSearch {
    const fresh = () => {
      const s = new MtuSearch(ceiling, now, this.cfg, this.ids);
      s.onProgress(timeouts); // only timeouts from now on count towards a black hole
      return s;
    };
    let s: MtuSearch;
    if (key === null) s = this.relay ??= fresh();
    else {
      if (this.direct?.key !== key) this.direct = { key, s: fresh() };
      s = this.direct.s;
    }
    s.setCeiling(ceiling, now);
    return this.current = s;
  }

  /** An MTU_ACK, for whichever search sent the probe. */
  onAck(id: number, size: number, limit: number, now: number): boolean {
    return this.direct?.s.onAck(id, size, limit, now) || this.relay?.onAck(id, size, limit, now) ||
      false;
  }

  /** The sender had a DATA_ACK (see MtuSearch.onProgress). */
  onProgress(timeouts: number): void {
    this.direct?.s.onProgress(timeouts);
    this.relay?.onProgress(timeouts);
  }

  /** Both searches' counters added up (a replaced direct search's are gone with it). */
  stats(): MtuStats {
    const all = [this.direct?.s, this.relay].filter((s) => s !== undefined && s !== null);
    return {
      probes: all.reduce((n, s) => n + s!.stats.probes, 0),
      acks: all.reduce((n, s) => n + s!.stats.acks, 0),
      blackHoles: all.reduce((n, s) => n + s!.stats.blackHoles, 0),
    };
  }

  /** Fragments per DATA on the direct path and the relay, for /peers (null: not used yet). */
  get sizes(): { direct: number | null; relay: number | null } {
    return { direct: this.direct?.s.frags ?? null, relay: this.relay?.frags ?? null };
  }
}
