/**
 * One remote peer's path finder, as a clock-driven state machine. It walks
 * LAN-first handshake -> ACK timeout -> server-relayed handshake with hole punching ->
 * relay fallback, keeps the chosen path alive, and upgrades when a better one answers.
 * Packets in: `onHello`, `onAck`, `onConnectFwd`; packets out: the returned actions.
 */
import { type Addr, addrKey, ipv6Bytes, sameAddr } from "../wire/addr.ts";
import type { Id, Member } from "../wire/codec.ts";

export type PathKind = "connecting" | "lan" | "direct" | "relay";

export interface PathConfig {
  ackTimeoutMs: number;
  punchWindowMs: number;
  probeIntervalMs: number;
  keepaliveMs: number;
  /** While relayed, how often to try a direct path again. */
  retryDirectMs: number;
  /** How many ports above the peer's public port to probe too (for sequential symmetric NATs). */
  predictPorts: number;
}

export const DEFAULT_PATH_CONFIG: PathConfig = {
  ackTimeoutMs: 400,
  punchWindowMs: 5000,
  probeIntervalMs: 200,
  keepaliveMs: 15_000,
  retryDirectMs: 30_000,
  predictPorts: 4,
};

/**
 * `via` names the local socket a datagram leaves from: 0 is the peer's main socket, others are
 * the extra sockets of a birthday attempt (lib/peer/birthday.ts).
 */
export type PathAction =
  | { type: "hello"; to: Addr; nonce: string; via: number }
  | { type: "ack"; to: Addr; nonce: string; via: number }
  | { type: "connect"; nonce: string }
  | { type: "path"; kind: PathKind; addr: Addr | null; rttMs: number | null }
  /** A punch window ended without a path: the caller may try harder (birthday punching). */
  | { type: "punch_failed" };

type Phase = "lan" | "punch" | "idle" | "up";

type CandKind = "local" | "public" | "predicted" | "reflexive" | "mapped";

const RANK: Record<PathKind, number> = { connecting: 0, relay: 1, direct: 2, lan: 3 };
/** Outstanding probe nonces we remember; older ones are forgotten (their ACK is then ignored). */
const MAX_PENDING = 256;
/**
 * Peer-reflexive candidates kept; beyond this the oldest is forgotten, so hellos replayed from
 * many (spoofed) sources cannot make us probe without bound.
 */
export const MAX_REFLEXIVE = 8;
/** Gateway-mapped addresses kept per peer (one per protocol is plenty). */
export const MAX_MAPPED = 4;
/**
 * Global IPv6 locals given up on (a punch window unanswered) that stay given up while this
 * peer is known, however often it is announced again; beyond this the oldest is forgotten.
 */
export const MAX_DROPPED_V6 = 16;

/**
 * Global unicast IPv6 (2000::/3): a peer's own address on the internet. Announced among its
 * locals, but a path to it is `direct`, not `lan`; the server passes on only a few of them, and
 * one that goes a punch window unanswered is dropped (it may not be the peer's at all).
 */
function isGlobalV6(host: string): boolean {
  const b = host.includes(":") ? ipv6Bytes(host) : null;
  return b !== null && (b[0]! & 0xe0) === 0x20;
}

export class PathMachine {
  kind: PathKind = "connecting";
  addr: Addr | null = null;
  /** The local socket the path's datagrams leave from (see PathAction). */
  via = 0;
  rttMs: number | null = null;
  private phase: Phase = "idle";
  private phaseEnd = 0;
  private nextProbe = 0;
  private lastAck = 0;
  private nextKeepalive = 0;
  /**
   * Candidates; `cold` once one went a whole punch window unanswered: later windows probe it
   * once rather than every probe interval, so addresses a member announced (or a peer will
   * never answer from) cannot be made a target of a steady stream of probes.
   */
  private cands = new Map<
    string,
    { addr: Addr; kind: CandKind; answered: boolean; cold: boolean }
  >();
  private pending = new Map<string, { addr: Addr; sentAt: number; via: number }>();
  /** Gateway-mapped addresses the peer told us of (NAT_INFO): they survive setMember. */
  private mapped: Addr[] = [];
  /** Keys of global IPv6 locals dropped unanswered (see MAX_DROPPED_V6). */
  private droppedV6 = new Set<string>();
  private started = false;
  private lastPunch = -Infinity;
  /** While the path is a TCP connection: when UDP candidates are probed again. */
  private nextUdpTry = Infinity;
  /** A check of the path in progress (see `suspect`): when it started and when it ends. */
  private checkFrom = -1;
  private checkUntil = -1;

  constructor(
    private remote: Member,
    private cfg: PathConfig,
    private nonce: () => string,
  ) {
    this.setMember(remote);
  }

  /** Refreshes the peer's announced addresses (e.g. after it moved). */
  setMember(m: Member): void {
    this.remote = m;
    for (const [k, c] of this.cands) if (c.kind !== "reflexive") this.cands.delete(k);
    for (const a of this.mapped) this.addCand(a, "mapped");
    for (const a of m.locals) this.addCand(a, "local");
    this.addCand(m.public, "public");
    for (let i = 1; i <= this.cfg.predictPorts; i++) {
      const port = m.public.port + i;
      if (port <= 65535) this.addCand({ host: m.public.host, port }, "predicted");
    }
  }

  private addCand(addr: Addr, kind: CandKind): void {
    const k = addrKey(addr);
    if (this.cands.has(k) || (kind === "local" && this.droppedV6.has(k))) return;
    if (kind === "reflexive") {
      const refl = [...this.cands].filter(([, c]) => c.kind === "reflexive");
      if (refl.length >= MAX_REFLEXIVE) this.cands.delete(refl[0]![0]);
    }
    this.cands.set(k, { addr, kind, answered: false, cold: false });
  }

  /**
   * Addresses the peer's gateway mapped for it (UPnP, NAT-PMP, PCP): probed like its public
   * address, now if a window is running.
   */
  setMapped(addrs: Addr[], now: number): PathAction[] {
    this.mapped = addrs.slice(0, MAX_MAPPED);
    const out: PathAction[] = [];
    for (const a of this.mapped) {
      const isNew = !this.cands.has(addrKey(a));
      this.addCand(a, "mapped");
      if (isNew && this.phase !== "up" && this.started) this.probe(a, now, out);
    }
    return out;
  }

  /**
   * Messages now go through the relay while no direct path is up: report `relay` at once
   * rather than when the punch window is over (the window goes on).
   */
  relayed(): PathAction[] {
    const out: PathAction[] = [];
    if (this.kind === "connecting") this.set("relay", null, null, out);
    return out;
  }

  /** LAN-first: say hello to the peer's local and public addresses, wait for an ACK. */
  start(now: number): PathAction[] {
    this.started = true;
    this.phase = "lan";
    this.phaseEnd = now + this.cfg.ackTimeoutMs;
    const out: PathAction[] = [];
    for (const c of this.cands.values()) {
      if (c.kind === "local" || c.kind === "public" || c.kind === "mapped") {
        this.probe(c.addr, now, out);
      }
    }
    return out;
  }

  tick(now: number): PathAction[] {
    const out: PathAction[] = [];
    if (!this.started) return out;
    switch (this.phase) {
      case "lan":
        if (now >= this.phaseEnd) this.beginPunch(now, true, out);
        break;
      case "punch":
        if (now >= this.phaseEnd) {
          this.phase = "idle";
          this.phaseEnd = now + this.cfg.retryDirectMs;
          for (const [k, c] of this.cands) {
            if (c.answered) continue;
            if (c.kind === "local" && isGlobalV6(c.addr.host)) this.dropV6(k);
            else c.cold = true;
          }
          if (this.kind === "connecting") this.set("relay", null, null, out);
          if (this.kind === "relay") out.push({ type: "punch_failed" });
        } else if (now >= this.nextProbe) {
          this.nextProbe = now + this.cfg.probeIntervalMs;
          for (const c of this.cands.values()) if (!c.cold) this.probe(c.addr, now, out);
        }
        break;
      case "idle":
        if (now >= this.phaseEnd) this.beginPunch(now, true, out);
        break;
      case "up":
        if (this.checkUntil >= 0 && now >= this.checkUntil) {
          const answered = this.lastAck >= this.checkFrom;
          this.checkFrom = this.checkUntil = -1;
          if (!answered) {
            this.fallBack(now, out);
            break;
          }
        }
        if (now - this.lastAck > 3 * this.cfg.keepaliveMs) {
          // Three keepalives unanswered: the path is dead; fall back to relay and start over.
          this.fallBack(now, out);
        } else if (now >= this.nextKeepalive && this.addr) {
          this.nextKeepalive = now + this.cfg.keepaliveMs;
          this.probe(this.addr, now, out, this.via);
        }
        if (this.addr?.tcp && now >= this.nextUdpTry) {
          // On TCP (UDP was blocked): see now and then whether UDP gets through again.
          this.nextUdpTry = now + this.cfg.retryDirectMs;
          for (const c of this.cands.values()) if (!c.addr.tcp) this.probe(c.addr, now, out);
        }
        break;
    }
    return out;
  }

  /**
   * The host found that UDP no longer gets through (the network started dropping it): a direct
   * path is gone without waiting for three keepalives. Relay now, and probe again.
   */
  lost(now: number): PathAction[] {
    const out: PathAction[] = [];
    if (this.phase === "up") this.fallBack(now, out);
    return out;
  }

  /** A connectivity check to `addr` from socket `via` (a TCP connection that came up). */
  check(addr: Addr, via: number, now: number): PathAction[] {
    const out: PathAction[] = [];
    this.probe(addr, now, out, via);
    return out;
  }

  /**
   * The peer's data reached us through the relay although we hold a direct path to it: its side
   * of the path may be gone (its network dropped UDP, say). Probe now; no answer within a
   * second or four round trips, and the path is given up rather than after three keepalives.
   */
  suspect(now: number): PathAction[] {
    const out: PathAction[] = [];
    if (this.phase !== "up" || !this.addr || this.checkUntil >= 0) return out;
    this.checkFrom = now;
    this.checkUntil = now + Math.max(1000, 4 * (this.rttMs ?? 0));
    this.probe(this.addr, now, out, this.via);
    return out;
  }

  private fallBack(now: number, out: PathAction[]): void {
    this.checkFrom = this.checkUntil = -1;
    this.addr = null;
    this.via = 0;
    this.rttMs = null;
    this.set("relay", null, null, out);
    out.push(...this.start(now));
  }

  /** When `tick` next has work: a phase ending, a probe or keepalive due, a path timing out. */
  nextDeadline(): number | null {
    if (!this.started) return null;
    switch (this.phase) {
      case "lan":
      case "idle":
        return this.phaseEnd;
      case "punch":
        return Math.min(this.phaseEnd, this.nextProbe);
      case "up": {
        // `tick` declares the path dead once strictly more than three keepalives have passed.
        let dead = this.lastAck + 3 * this.cfg.keepaliveMs + 1;
        if (this.checkUntil >= 0) dead = Math.min(dead, this.checkUntil);
        if (this.addr?.tcp) dead = Math.min(dead, this.nextUdpTry);
        return this.addr ? Math.min(dead, this.nextKeepalive) : dead;
      }
    }
  }

  /** An unanswered global IPv6 local is probed no more (see isGlobalV6). */
  private dropV6(k: string): void {
    this.cands.delete(k);
    if (this.droppedV6.size >= MAX_DROPPED_V6) {
      this.droppedV6.delete(this.droppedV6.values().next().value!);
    }
    this.droppedV6.add(k);
  }

  private beginPunch(now: number, ask: boolean, out: PathAction[]): void {
    this.lastPunch = now;
    this.phase = "punch";
    this.phaseEnd = now + this.cfg.punchWindowMs;
    this.nextProbe = now + this.cfg.probeIntervalMs;
    if (ask) out.push({ type: "connect", nonce: this.nonce() });
    for (const c of this.cands.values()) this.probe(c.addr, now, out);
  }

  private probe(addr: Addr, now: number, out: PathAction[], via = 0): void {
    const nonce = this.nonce();
    if (this.pending.size >= MAX_PENDING) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
    this.pending.set(nonce, { addr, sentAt: now, via });
    out.push({ type: "hello", to: addr, nonce, via });
  }

  /** The server forwarded the peer's handshake: it is punching towards us now, so punch back. */
  onConnectFwd(m: Member, now: number): PathAction[] {
    this.setMember(m);
    this.started = true;
    const out: PathAction[] = [];
    // A punch already running goes on as it is; and however often the peer (or someone with
    // its token) asks, we start at most one punch window per two.
    const cooling = now - this.lastPunch < 2 * this.cfg.punchWindowMs;
    if (this.phase !== "up" && this.phase !== "punch" && !cooling) {
      this.beginPunch(now, false, out);
    }
    return out;
  }

  /**
   * A hello from the peer (ids already checked by the caller), arrived on socket `via`: answer
   * where it came from, from the socket it came to.
   */
  onHello(from: Addr, nonce: string, now: number, via = 0): PathAction[] {
    const out: PathAction[] = [{ type: "ack", to: from, nonce, via }];
    // Peer-reflexive candidate: the address its packets really arrive from.
    if (via === 0) this.addCand(from, "reflexive");
    const better = this.beats(this.classify(from), from);
    if (this.phase !== "up" || (better && !this.isPath(from, via))) {
      // Triggered check: confirm the reverse direction right away.
      this.started = true;
      this.probe(from, now, out, via);
    }
    return out;
  }

  private isPath(a: Addr, via: number): boolean {
    return this.addr !== null && sameAddr(this.addr, a) && this.via === via;
  }

  /** An ACK whose nonce we sent establishes (or refreshes) a path at that address. */
  onAck(from: Addr, nonce: string, now: number, via = 0): PathAction[] {
    const p = this.pending.get(nonce);
    if (!p || !sameAddr(p.addr, from) || p.via !== via) return [];
    this.pending.delete(nonce);
    return this.confirm(from, via, now - p.sentAt, now);
  }

  /**
   * A path proven by other means: an authenticated answer to a birthday probe, which carries the
   * attempt's one nonce rather than one we remembered for that address.
   */
  adopt(from: Addr, via: number, rttMs: number, now: number): PathAction[] {
    return this.confirm(from, via, rttMs, now);
  }

  private confirm(from: Addr, via: number, rtt: number, now: number): PathAction[] {
    const out: PathAction[] = [];
    const c = this.cands.get(addrKey(from));
    if (c) {
      c.answered = true;
      c.cold = false;
    }
    const kind = this.classify(from);
    if (this.isPath(from, via)) {
      this.lastAck = now;
      this.rttMs = rtt;
      if (this.phase !== "up") this.goUp(now);
      return out;
    }
    if (this.phase === "up" && !this.beats(kind, from)) return out;
    this.addr = from;
    this.via = via;
    this.lastAck = now;
    this.rttMs = rtt;
    this.goUp(now);
    this.set(kind, from, rtt, out);
    return out;
  }

  private goUp(now: number): void {
    this.phase = "up";
    this.nextKeepalive = now + this.cfg.keepaliveMs;
    this.nextUdpTry = now + this.cfg.retryDirectMs;
  }

  /**
   * Whether a path of `kind` at `a` is better than the current one: a higher rank, or the same
   * rank over UDP where the current path is a TCP connection (no head-of-line blocking).
   */
  private beats(kind: PathKind, a: Addr): boolean {
    if (RANK[kind] !== RANK[this.kind]) return RANK[kind] > RANK[this.kind];
    return this.addr?.tcp === true && !a.tcp;
  }

  /**
   * The kind of path an answer from `a` gives: `lan` for the peer's announced local addresses,
   * except global IPv6 ones (`direct`: they are on the internet, see isGlobalV6).
   */
  classify(a: Addr): PathKind {
    const isLocal = this.remote.locals.some((l) => sameAddr(l, a));
    return isLocal && !sameAddr(this.remote.public, a) && !isGlobalV6(a.host) ? "lan" : "direct";
  }

  private set(kind: PathKind, addr: Addr | null, rtt: number | null, out: PathAction[]): void {
    this.kind = kind;
    out.push({ type: "path", kind, addr, rttMs: rtt });
  }

  /** Where to send application data: a direct address, or null for "through the relay". */
  get sendAddr(): Addr | null {
    return this.phase === "up" ? this.addr : null;
  }

  get remoteId(): Id {
    return this.remote.id;
  }
}
