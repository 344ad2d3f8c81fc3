/**
 * Which transport carries our traffic to the server: UDP, or the server's WebSocket endpoint
 * when UDP gets no answer (networks that drop UDP). A clock-driven machine: the host reports
 * what it sent and heard, and carries out what this asks for (open or close the WebSocket,
 * probe UDP, switch). It never touches a socket.
 *
 * - `auto`: UDP first; no answer from the server within `fallbackMs` → WebSocket. While on the
 *   WebSocket (open or not), UDP is probed every `udpRetryMs` (doubled, up to `udpRetryMaxMs`,
 *   each time UDP is lost again, so a flaky network does not flap); `backAnswers` probe answers
 *   in a row, or one authentic server message over UDP, move us back. Until the WebSocket is
 *   open, server traffic still goes over UDP (the host sends it there), so a slow or failing
 *   WebSocket never leaves us with no way at all.
 * - On UDP, once the server has answered: a keepalive or registration unanswered for
 *   `answerMs`, or our traffic unanswered for `silenceMs` (nothing heard over UDP at all while
 *   messages wait for acknowledgement), starts a probe; `probes` probes unanswered, each
 *   `probeGapMs` apart, mean UDP is lost → WebSocket. So do probes answered while
 *   `stuckRequests` requests in a row, the first `stuckMs` ago, are not: a network that lets
 *   STUN through and drops the rest (some firewalls do). Coming back is then tried after the
 *   probe pause, doubled as for any loss, so such a network costs a few seconds per pause.
 * - `ws`: the WebSocket only (the user gave a ws:// or wss:// URL).
 */

export type Transport = "udp" | "ws";

export interface ServerLinkConfig {
  mode: "auto" | "ws";
  /** No answer over UDP for this long after starting: move to the WebSocket. */
  fallbackMs: number;
  /** On the WebSocket, how often UDP is tried again. */
  udpRetryMs: number;
  /** How long a request that the server always answers may stay unanswered over UDP. */
  answerMs: number;
  /** Probes (each `probeGapMs` apart) that must all go unanswered before UDP counts as lost. */
  probes: number;
  probeGapMs: number;
  /** Messages in flight and nothing at all heard over UDP for this long: probe the server. */
  silenceMs: number;
  /** After moving back to UDP, how long the WebSocket stays open for what is still on its way. */
  closeGraceMs: number;
  /** First and largest pause before reopening a WebSocket that closed or failed to open. */
  reopenMinMs: number;
  reopenMaxMs: number;
  /** A WebSocket still not open after this long is given up (and reopened after the pause). */
  openTimeoutMs: number;
  /** Probe answers in a row that move us back from the WebSocket to UDP. */
  backAnswers: number;
  /** Largest pause between UDP probes while on the WebSocket (after repeated losses). */
  udpRetryMaxMs: number;
  /** This long on UDP with the server answering, and the probe pause is back to `udpRetryMs`. */
  stableMs: number;
  /**
   * Requests in a row unanswered over UDP, the first at least `stuckMs` ago, while the server
   * answered our STUN probes after the first: only STUN gets through.
   */
  stuckRequests: number;
  stuckMs: number;
}

export const DEFAULT_SERVER_LINK_CONFIG: ServerLinkConfig = {
  mode: "auto",
  fallbackMs: 1500,
  udpRetryMs: 10_000,
  answerMs: 1000,
  // Two probes 1 s apart both went unanswered on a link that loses 20% each way 13% of the time
  // (0.36^2), and a lossy but working UDP was given up again and again: in a simulation of 10 h
  // with messages always pending, 131 times at 5% loss each way. Six, 350 ms apart, take about
  // as long and all fail 0.2% of the time (0.36^6): no move at 5%, 23 at 20%.
  probes: 6,
  probeGapMs: 350,
  silenceMs: 2000,
  closeGraceMs: 3000,
  reopenMinMs: 1000,
  reopenMaxMs: 30_000,
  openTimeoutMs: 10_000,
  backAnswers: 2,
  udpRetryMaxMs: 300_000,
  stableMs: 120_000,
  // A registration is resent every 300 ms: 8 in a row lost by chance on a link that loses 20%
  // each way has odds of 0.36^8, about 1 in 3,500.
  stuckRequests: 8,
  stuckMs: 3000,
};

export type LinkAction =
  | { type: "open_ws" }
  | { type: "close_ws" }
  /** Send one STUN Binding request to the server over UDP: it always answers one. */
  | { type: "udp_probe" }
  /**
   * Server traffic now goes over `to`. `lost`: UDP stopped answering while in use (direct UDP
   * paths to peers are likely gone too). The server must learn our new address: register again.
   */
  | { type: "switched"; to: Transport; lost: boolean; why: string };

type WsState = "closed" | "opening" | "open";

export class ServerLinkMachine {
  private current: Transport;
  private ws: WsState = "closed";
  private started = 0;
  /** Whether the server ever answered over UDP. */
  private heardUdp = false;
  private lastUdpHeard = -Infinity;
  private lastUdpAny = -Infinity;
  /** The oldest unanswered request to the server over UDP (-1: none), and how many since. */
  private awaitingSince = -1;
  private awaiting = 0;
  /** When a STUN probe was last answered over UDP. */
  private lastProbeAnswer = -Infinity;
  /** The first request sent after that answer while older ones wait (-1: none). */
  private firstAfterProbe = -1;
  /** The probe run in progress: probes sent, when the next is due (-1: no run). */
  private probesSent = 0;
  private nextProbe = -1;
  private nextUdpRetry = Infinity;
  private closeAt = Infinity;
  private reopenAt = Infinity;
  private reopenPause: number;
  /** When an opening WebSocket is given up. */
  private openDeadline = Infinity;
  /** The pause between UDP probes while on the WebSocket (grows with each loss). */
  private retryMs: number;
  /** Probe answers so far in the current round on the WebSocket. */
  private answers = 0;
  /** Since when we are on UDP (for `stableMs`). */
  private udpSince = 0;
  /** Why we are moving to the WebSocket, told once it opens. */
  private pendingWhy: { lost: boolean; why: string } = { lost: false, why: "--server is a URL" };

  constructor(private cfg: ServerLinkConfig, now: number, out: LinkAction[]) {
    this.started = now;
    this.udpSince = now;
    this.reopenPause = cfg.reopenMinMs;
    this.retryMs = cfg.udpRetryMs;
    this.current = cfg.mode === "ws" ? "ws" : "udp";
    this.lastUdpAny = now;
    if (cfg.mode === "ws") this.openWs(now, out);
  }

  /** Where server-bound datagrams go now. */
  get transport(): Transport {
    return this.current;
  }

  /** Whether the WebSocket is open (until it is, `auto` sends server traffic over UDP). */
  get wsOpen(): boolean {
    return this.ws === "open";
  }

  /** Where server-bound datagrams should leave now: over UDP until the WebSocket is open. */
  get sendOver(): Transport {
    return this.current === "ws" && (this.ws === "open" || this.cfg.mode === "ws") ? "ws" : "udp";
  }

  /** We sent the server, over UDP, a request it always answers (REGISTER, KEEPALIVE). */
  onUdpRequest(now: number): void {
    // Requests sent while we are on the WebSocket (before it opens) say nothing of UDP later.
    if (this.current !== "udp") return;
    if (this.awaitingSince < 0) this.awaitingSince = now;
    this.awaiting++;
    if (this.probedSinceAwaiting() && this.firstAfterProbe < 0) this.firstAfterProbe = now;
  }

  /** Any datagram arrived from a peer (over UDP or a TCP connection), or from the server. */
  onUdpAny(now: number): void {
    this.lastUdpAny = now;
  }

  /**
   * The server answered over UDP: `authentic` for a message checked against our token or
   * nonce, false for the answer to one of our STUN probes.
   */
  onUdpFromServer(now: number, authentic: boolean, out: LinkAction[]): void {
    if (this.current === "ws" && this.cfg.mode !== "auto") return;
    this.heardUdp = true;
    this.lastUdpHeard = now;
    this.lastUdpAny = now;
    // A probe answer shows the way to the server is open for STUN, not that it carries the
    // requests still waiting: only an authentic message answers those.
    if (authentic) this.clearAwaiting();
    else {
      this.lastProbeAnswer = now;
      this.firstAfterProbe = -1;
    }
    this.endProbes();
    if (this.current === "udp") {
      if (authentic && now - this.udpSince >= this.cfg.stableMs) this.retryMs = this.cfg.udpRetryMs;
      return;
    }
    // One probe answer could be luck on a lossy path: ask again at once, move on the second.
    if (!authentic && ++this.answers < this.cfg.backAnswers) {
      out.push({ type: "udp_probe" });
      return;
    }
    this.current = "udp";
    this.udpSince = now;
    this.answers = 0;
    // Start afresh: the answers that brought us back answer no request sent from here.
    this.clearAwaiting();
    this.lastProbeAnswer = -Infinity;
    this.nextUdpRetry = Infinity;
    this.openDeadline = Infinity;
    this.closeAt = this.ws === "closed" ? Infinity : now + this.cfg.closeGraceMs;
    this.reopenAt = Infinity;
    out.push({ type: "switched", to: "udp", lost: false, why: "UDP answers again" });
  }

  /** An authentic server message arrived over the WebSocket: it works, not just opens. */
  onWsHeard(): void {
    this.reopenPause = this.cfg.reopenMinMs;
  }

  onWsOpen(now: number, out: LinkAction[]): void {
    this.ws = "open";
    this.openDeadline = Infinity;
    if (this.current === "ws") {
      const w = this.pendingWhy;
      out.push({ type: "switched", to: "ws", lost: w.lost, why: w.why });
      this.pendingWhy = { lost: false, why: "the WebSocket opened again" };
    } else if (this.closeAt === Infinity) {
      // Opened while UDP came back meanwhile: not needed.
      this.closeAt = now;
    }
  }

  /** The WebSocket closed or failed to open. */
  onWsClosed(now: number): void {
    this.ws = "closed";
    this.closeAt = Infinity;
    this.openDeadline = Infinity;
    if (this.current === "ws") {
      this.reopenAt = now + this.reopenPause;
      this.reopenPause = Math.min(this.reopenPause * 2, this.cfg.reopenMaxMs);
    }
  }

  /** `pending`: messages wait for acknowledgement (our traffic expects answers). */
  tick(now: number, pending: boolean, out: LinkAction[]): void {
    if (this.current === "udp") this.tickUdp(now, pending, out);
    else if (this.cfg.mode === "auto" && now >= this.nextUdpRetry) {
      this.nextUdpRetry = now + this.retryMs;
      this.answers = 0;
      out.push({ type: "udp_probe" });
    }
    if (now >= this.openDeadline) {
      // Connecting for too long (a proxy that never upgrades, say): give it up, try later.
      out.push({ type: "close_ws" });
      this.onWsClosed(now);
    }
    if (now >= this.closeAt) {
      this.closeAt = Infinity;
      if (this.current === "udp" && this.ws !== "closed") {
        this.ws = "closed";
        out.push({ type: "close_ws" });
      }
    }
    if (now >= this.reopenAt) {
      this.reopenAt = Infinity;
      if (this.current === "ws" && this.ws === "closed") this.openWs(now, out);
    }
  }

  nextDeadline(pending: boolean): number | null {
    let at = Math.min(this.closeAt, this.reopenAt, this.openDeadline);
    if (this.current === "udp") {
      if (!this.heardUdp) at = Math.min(at, this.started + this.cfg.fallbackMs);
      else if (this.nextProbe >= 0) at = Math.min(at, this.nextProbe);
      else {
        if (!this.probedSinceAwaiting()) {
          if (this.awaitingSince >= 0) at = Math.min(at, this.awaitingSince + this.cfg.answerMs);
        } else {
          if (this.firstAfterProbe >= 0) {
            at = Math.min(at, this.firstAfterProbe + this.cfg.answerMs);
          }
          // STUN answers, requests do not: decided once they have waited stuckMs.
          if (this.awaiting >= this.cfg.stuckRequests) {
            at = Math.min(at, this.awaitingSince + this.cfg.stuckMs);
          }
        }
        if (pending) at = Math.min(at, this.silentSince() + this.cfg.silenceMs);
      }
    } else if (this.cfg.mode === "auto") at = Math.min(at, this.nextUdpRetry);
    return at === Infinity ? null : at;
  }

  private tickUdp(now: number, pending: boolean, out: LinkAction[]): void {
    if (!this.heardUdp) {
      if (now - this.started >= this.cfg.fallbackMs) {
        this.toWs(now, false, "no answer from the server over UDP", out);
      }
      return;
    }
    if (this.nextProbe >= 0) {
      if (now < this.nextProbe) return;
      if (this.probesSent >= this.cfg.probes) {
        this.endProbes();
        this.toWs(now, true, "the server stopped answering over UDP", out);
        return;
      }
      this.probesSent++;
      this.nextProbe = now + this.cfg.probeGapMs;
      out.push({ type: "udp_probe" });
      return;
    }
    const probed = this.probedSinceAwaiting();
    if (
      probed && this.awaiting >= this.cfg.stuckRequests &&
      now - this.awaitingSince >= this.cfg.stuckMs
    ) {
      // STUN answered after the requests went out, and they still are not.
      this.toWs(now, true, "the server answers STUN over UDP but nothing else gets through", out);
      return;
    }
    // Once a probe was answered, the next request unanswered for answerMs probes again (so a
    // UDP that dies after that answer is still found out by unanswered probes).
    const unanswered = probed
      ? this.firstAfterProbe >= 0 && now - this.firstAfterProbe >= this.cfg.answerMs
      : this.awaitingSince >= 0 && now - this.awaitingSince >= this.cfg.answerMs;
    const silent = pending && now - this.silentSince() >= this.cfg.silenceMs;
    if (unanswered || silent) {
      this.probesSent = 1;
      this.nextProbe = now + this.cfg.probeGapMs;
      out.push({ type: "udp_probe" });
    }
  }

  /** A request waits, and a STUN probe was answered after it went out. */
  private probedSinceAwaiting(): boolean {
    return this.awaitingSince >= 0 && this.lastProbeAnswer >= this.awaitingSince;
  }

  /** Since when nothing was heard over UDP (never earlier than the last server answer). */
  private silentSince(): number {
    return Math.max(this.lastUdpAny, this.lastUdpHeard);
  }

  private endProbes(): void {
    this.probesSent = 0;
    this.nextProbe = -1;
  }

  private clearAwaiting(): void {
    this.awaitingSince = -1;
    this.awaiting = 0;
    this.firstAfterProbe = -1;
  }

  private toWs(now: number, lost: boolean, why: string, out: LinkAction[]): void {
    this.current = "ws";
    this.clearAwaiting();
    this.closeAt = Infinity;
    this.answers = 0;
    // Lost again: wait longer before believing UDP once more.
    if (lost) this.retryMs = Math.min(this.retryMs * 2, this.cfg.udpRetryMaxMs);
    this.nextUdpRetry = now + this.retryMs;
    if (this.ws === "open") {
      out.push({ type: "switched", to: "ws", lost, why });
    } else {
      this.pendingWhy = { lost, why };
      if (this.ws === "closed") this.openWs(now, out);
    }
  }

  private openWs(now: number, out: LinkAction[]): void {
    this.ws = "opening";
    this.openDeadline = now + this.cfg.openTimeoutMs;
    out.push({ type: "open_ws" });
  }
}
