/**
 * Runs a PeerAgent on a real UDP socket: feeds it datagrams, user commands and its own
 * deadlines, carries out its actions. Nothing polls: after the calls into the agent of each task
 * the one timer is re-armed for the agent's next deadline, so an idle peer sleeps until its next
 * keepalive. Everything the user sees arrives through `onEvent`/`onLog`.
 */
import { DEFAULT_MTU, linkMtuLookup } from "./link_mtu.ts";
import { type Addr, formatAddr, sameAddr } from "../wire/addr.ts";
import { type AgentAction, type AgentConfig, PeerAgent, type PeerInfo } from "../peer/agent.ts";
import type { PeerEvent } from "../peer/events.ts";
import { openUdp, type Udp } from "./udp.ts";
import { localAddrs } from "./interfaces.ts";
import { Alarm } from "./alarm.ts";
import { discoverNat } from "./nat_runner.ts";
import type { NatReport } from "../nat/discovery.ts";
import { forPunching } from "../nat/verdict.ts";
import { type Mapping, PortMapper } from "../portmap/mod.ts";
import {
  DEFAULT_SERVER_LINK_CONFIG,
  type LinkAction,
  type ServerLinkConfig,
  ServerLinkMachine,
  type Transport,
} from "../peer/server_link.ts";
import { openWs, type WsLink } from "./ws_client.ts";
import { TcpSockets } from "./tcp.ts";
import { decodeStun, encodeStun, looksLikeStun, METHOD_BINDING } from "../stun/codec.ts";
import { toHex } from "../wire/bytes.ts";
import { T } from "../wire/codec.ts";

/** After the first punch window, how much longer discovery waits (the window's last probes). */
const DISCOVERY_SLACK_MS = 200;
/**
 * How much early the agent's timer may go off rather than be re-armed (lib/net/alarm.ts). Under
 * load the deadline moves with nearly every datagram; an early wake-up costs one timer callback
 * and sleeps again. Small enough that an idle peer (deadlines seconds apart) never sees one.
 */
const ALARM_SLACK_MS = 25;

export interface PeerHostOptions {
  agent: Omit<AgentConfig, "locals">;
  bindHost: string;
  port: number;
  /** Test hook: drop every datagram that is not to or from the server, forcing the relay. */
  dropDirect: boolean;
  /** Find out how our NAT behaves (RFC 5780 tests against the server), in the background. */
  discovery?: boolean;
  /** Ask the gateway to map our port (UPnP, NAT-PMP, PCP), in the background. */
  portmap?: boolean;
  /**
   * The server's WebSocket endpoint: `auto` falls back to it when UDP gets no answer, `ws`
   * uses nothing else. Absent: UDP only.
   */
  ws?: { url: string; mode: "auto" | "ws" };
  /** Timings of the UDP/WebSocket choice (tests shorten them). */
  link?: Partial<ServerLinkConfig>;
  /**
   * Batched system calls on the main socket where they can be used (lib/net/mmsg.ts: Linux,
   * with the FFI permission, as the compiled binary has); default true. False: the runtime's
   * own sockets (tests that replace them to inject faults).
   */
  batched?: boolean;
}

/** What the peer knows of its own NAT, for `/peers` and the `nat` event. */
export interface NatSummary {
  report: NatReport | null;
  mapping: Mapping | null;
}

export interface Exit {
  code: number;
  message?: string;
}

export class PeerHost {
  private agent!: PeerAgent;
  private udp!: Udp;
  /** Extra sockets the agent asked for (birthday punching), by name. */
  private extra = new Map<number, Udp>();
  /** TCP connections the agent asked for (TCP hole punching), by name. */
  private tcp!: TcpSockets;
  private readonly alarm = new Alarm(
    () => this.call((out, now) => this.agent.tick(now, out)),
    { slackMs: ALARM_SLACK_MS },
  );
  /** A re-arm of the timers is queued (see `call`). */
  private rearmQueued = false;
  private stopped = false;
  private drained: (() => void) | null = null;
  private mapper: PortMapper | null = null;
  private natReport: NatReport | null = null;
  private mapped: Mapping | null = null;
  private natDone = false;
  private resolveDone!: (e: Exit) => void;
  /** UDP or WebSocket towards the server (null: UDP only). */
  private link: ServerLinkMachine | null = null;
  private ws: WsLink | null = null;
  /** STUN transaction ids of our UDP probes to the server. */
  private probeIds = new Set<string>();
  private readonly linkAlarm = new Alarm(
    () => this.linkStep((out, now) => this.linkTick(now, out)),
    // Its silence deadline moves later with every datagram heard.
    { slackMs: ALARM_SLACK_MS },
  );
  /** Settles when the peer stops: after `leave()` or a fatal error. */
  readonly done: Promise<Exit> = new Promise((r) => this.resolveDone = r);

  constructor(
    private opts: PeerHostOptions,
    private onEvent: (e: PeerEvent) => void,
    private onLog: (level: "debug" | "info" | "warn", message: string) => void,
  ) {}

  /** Binds the socket and starts registering. Throws if the port cannot be bound. */
  start(): void {
    const server = this.opts.agent.server;
    this.udp = openUdp(this.opts.bindHost, this.opts.port, (bytes, from) => {
      if (this.opts.dropDirect && !sameAddr(from, server)) return;
      if (this.link) {
        const now = performance.now();
        if (sameAddr(from, server)) {
          if (looksLikeStun(bytes)) {
            // The answer to one of our probes (anything else STUN from there is not ours).
            if (this.answersProbe(bytes)) {
              this.linkStep((out) => this.link!.onUdpFromServer(now, false, out));
            }
            return;
          }
          // Counted only once the agent found it authentic (token or nonce): a forged
          // datagram from the server's address must not keep us on a dead UDP.
          const before = this.agent.serverHeardAt;
          this.call((out, now) => this.agent.handle(bytes, from, now, out, 0));
          if (this.agent.serverHeardAt !== before) {
            this.linkStep((out) => this.link!.onUdpFromServer(now, true, out));
          }
          return;
        }
        this.link.onUdpAny(now);
      }
      this.call((out, now) => this.agent.handle(bytes, from, now, out, 0));
    }, { batched: this.opts.batched ?? true });
    this.tcp = new TcpSockets({
      bindHost: this.opts.bindHost,
      onPacket: (bytes, from, via) => {
        // A peer heard over TCP: our traffic is answered, not a sign that UDP broke.
        this.link?.onUdpAny(performance.now());
        this.call((out, now) => this.agent.handle(bytes, from, now, out, via));
      },
      onState: (via, state) => this.call((out, now) => this.agent.onTcp(via, state, now, out)),
    });
    const mtuOf = linkMtuLookup();
    this.agent = new PeerAgent({
      ...this.opts.agent,
      locals: localAddrs(this.udp.local.port),
      // A WebSocket or TCP connection carries frames of MAX_DATAGRAM at most (ws_server.ts,
      // tcp.ts): one fragment per DATA there, whatever the link.
      linkMtu: (to) =>
        to.tcp || (sameAddr(to, server) && this.transport !== "udp") ? DEFAULT_MTU : mtuOf(to.host),
    });
    if (this.opts.ws) {
      const cfg = { ...DEFAULT_SERVER_LINK_CONFIG, ...this.opts.link, mode: this.opts.ws.mode };
      this.linkStep((out, now) => this.link = new ServerLinkMachine(cfg, now, out));
    }
    this.call((out, now) => this.agent.start(now, out));
    // Never delays connecting: the agent starts now and learns about the NAT when we do.
    void this.learnNat();
  }

  /** How we reach the server now. */
  get transport(): Transport {
    return this.link?.transport ?? "udp";
  }

  /** One step of the UDP/WebSocket choice: carry out what it asks, re-arm its timer. */
  private linkStep(fn: (out: LinkAction[], now: number) => void): void {
    if (this.stopped) return;
    const now = performance.now();
    const out: LinkAction[] = [];
    fn(out, now);
    for (const a of out) this.linkAction(a);
    this.rearmLink(now);
  }

  private rearmLink(now: number): void {
    if (this.link && !this.stopped) {
      this.linkAlarm.set(this.link.nextDeadline(this.agent.pending > 0), now);
    }
  }

  private linkTick(now: number, out: LinkAction[]): void {
    this.link?.tick(now, this.agent.pending > 0, out);
  }

  private linkAction(a: LinkAction): void {
    const ws = this.opts.ws!;
    switch (a.type) {
      case "open_ws": {
        const link = openWs(ws.url, {
          onOpen: () => {
            if (this.ws === link) this.linkStep((out, now) => this.link!.onWsOpen(now, out));
          },
          onPacket: (bytes) => {
            if (this.ws !== link) return;
            const before = this.agent.serverHeardAt;
            this.call((out, now) => this.agent.handle(bytes, this.opts.agent.server, now, out, 0));
            if (this.agent.serverHeardAt !== before) this.link!.onWsHeard();
          },
          onClose: (why) => {
            if (this.ws !== link) return;
            this.ws = null;
            this.onLog("debug", `WebSocket ${ws.url}: ${why}`);
            this.linkStep((_, now) => this.link!.onWsClosed(now));
          },
        });
        this.ws = link;
        break;
      }
      case "close_ws":
        this.ws?.close();
        this.ws = null;
        break;
      case "udp_probe": {
        const id = crypto.getRandomValues(new Uint8Array(12));
        // The few latest probes only; the oldest is forgotten first (Sets keep insertion order).
        if (this.probeIds.size >= 8) this.probeIds.delete(this.probeIds.values().next().value!);
        this.probeIds.add(toHex(id));
        const req = encodeStun({
          method: METHOD_BINDING,
          class: "request",
          transactionId: id,
          attributes: [],
        });
        this.udp.send(req, this.opts.agent.server);
        break;
      }
      case "switched": {
        const server = a.to === "ws" ? ws.url : formatAddr(this.opts.agent.server);
        this.onLog(
          "info",
          `server traffic now over ${a.to === "ws" ? "WebSocket" : "UDP"}: ${a.why}`,
        );
        this.onEvent({ type: "transport", transport: a.to, server, why: a.why });
        this.call((out, now) => this.agent.transportChanged(a.lost, now, out));
        break;
      }
    }
  }

  private answersProbe(bytes: Uint8Array): boolean {
    const m = decodeStun(bytes);
    if (!m.ok || m.value.class !== "success") return false;
    return this.probeIds.delete(toHex(m.value.transactionId));
  }

  /** Adds what carries it to events that concern the server's transport. */
  private decorate(e: PeerEvent): PeerEvent {
    if (!this.link) return e;
    if (e.type === "ready") return { ...e, transport: this.transport };
    if (e.type === "path") {
      return { ...e, transport: e.path === "relay" ? this.transport : e.transport ?? "udp" };
    }
    return e;
  }

  /** Discovery and port mapping in parallel; each is bounded and a failure costs nothing. */
  private async learnNat(): Promise<void> {
    const o = this.opts;
    if (o.portmap !== false) {
      this.mapper = new PortMapper({
        internalPort: this.udp.local.port,
        log: (m) => this.onLog("debug", m),
        onChange: (m) => {
          this.mapped = m;
          this.tellNat();
        },
      });
    }
    // A gateway mapping helps the first punch, so it is asked for at once. Discovery waits for
    // the first punch window to end: its test mappings would take the very ports a NAT that
    // counts up hands out next, which port prediction aims at (birthday punching, which needs
    // discovery, only starts after that window anyway).
    const path = o.agent.path;
    const discoverAfter = path.ackTimeoutMs + path.punchWindowMs + DISCOVERY_SLACK_MS;
    const [report, mapping] = await Promise.all([
      o.discovery === false
        ? null
        : this.later(discoverAfter).then((go) =>
          go ? discoverNat({ server: o.agent.server }).catch(() => null) : null
        ),
      this.mapper?.start().then((m) => {
        this.mapped = m;
        if (m) this.tellAgent();
        return m;
      }) ?? null,
    ]);
    if (this.stopped) return;
    this.natReport = report;
    this.mapped = mapping;
    this.natDone = true;
    this.tellNat();
  }

  /** Resolves true after `ms`, or false at once if the peer stopped meanwhile. */
  private later(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(!this.stopped), ms);
      this.done.then(() => {
        clearTimeout(t);
        resolve(false);
      });
    });
  }

  private tellAgent(): void {
    if (this.stopped) return;
    const m = this.mapped;
    const mapped = m ? [{ host: m.external.host, port: m.external.port }] : [];
    const mapping = forPunching(this.natReport);
    this.call((out, now) => this.agent.setNat({ mapping, mapped }, now, out));
  }

  private tellNat(): void {
    if (this.stopped || !this.natDone) return;
    this.tellAgent();
    const r = this.natReport;
    const m = this.mapped;
    this.onEvent({
      type: "nat",
      natted: r?.natted ?? "unknown",
      mapping: r?.mapping ?? "unknown",
      filtering: r?.filtering ?? "unknown",
      allocation: r?.allocation ?? "unknown",
      public: r?.public ? formatAddr(r.public) : null,
      mapped: m ? formatAddr({ host: m.external.host, port: m.external.port }) : null,
      portmap: m?.protocol ?? null,
    });
  }

  /** Our NAT as far as we know it yet. */
  natSummary(): NatSummary {
    return { report: this.natReport, mapping: this.mapped };
  }

  say(text: string): void {
    this.call((out, now) => this.agent.say(text, now, out));
  }

  msg(name: string, text: string): void {
    this.call((out, now) => this.agent.msg(name, text, now, out));
  }

  trust(name: string): void {
    this.call((out, now) => this.agent.trustPeer(name, now, out));
  }

  stats(): Record<string, number> {
    return this.agent.stats();
  }

  counters(): Record<string, number> {
    return this.agent.counters();
  }

  peers(): PeerInfo[] {
    const server = this.transport;
    return this.agent.peers().map((p) => ({
      ...p,
      transport: p.path === "relay" || p.path === "connecting" ? server : p.transport ?? "udp",
    }));
  }

  get pending(): number {
    return this.agent.pending;
  }

  get localPort(): number {
    return this.udp.local.port;
  }

  get publicAddr(): Addr | null {
    return this.agent.public;
  }

  get registered(): boolean {
    return this.agent.registered;
  }

  /** Times the deadline timer woke the agent. */
  get wakeups(): number {
    return this.alarm.fired;
  }

  /**
   * Resolves once registered with nothing left to acknowledge, or after `limitMs`, or when the
   * peer stops. Checked after each call into the agent, not on a timer.
   */
  drain(limitMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(finish, limitMs);
      function finish() {
        clearTimeout(timer);
        resolve();
      }
      this.drained = finish;
      this.checkDrained();
      this.done.then(finish);
    });
  }

  /** Tells the server we leave, deletes our gateway mapping (bounded), closes the socket. */
  async leave(): Promise<void> {
    this.call((out) => this.agent.leave(out));
    // Let the leave datagrams reach the wire before the socket closes.
    await Promise.all([new Promise((r) => setTimeout(r, 50)), this.mapper?.stop()]);
    this.stop({ code: 0 });
  }

  /**
   * One call into the agent: carry out its actions, then sleep until its next deadline. The
   * timers are re-armed once after the current task's calls (a microtask): the receives that
   * complete together each call in, and the agent's next deadline is asked for once after them
   * all. No timer can fire in between, so none is late.
   */
  private call(fn: (out: AgentAction[], now: number) => void): void {
    if (this.stopped) return;
    const now = performance.now();
    // A fresh array per call: an event handler may call back in (queued lines sent on `ready`).
    const out: AgentAction[] = [];
    fn(out, now);
    this.run(out);
    if (!this.rearmQueued) {
      this.rearmQueued = true;
      queueMicrotask(this.rearm);
    }
    this.checkDrained();
  }

  private readonly rearm = (): void => {
    this.rearmQueued = false;
    if (this.stopped) return;
    const now = performance.now();
    this.alarm.set(this.agent.nextDeadline(now), now);
    this.rearmLink(now);
  };

  private checkDrained(): void {
    if (this.drained && this.agent.registered && this.agent.pending === 0) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }

  private run(out: AgentAction[]): void {
    for (const a of out) {
      switch (a.type) {
        case "send":
          if (!a.via && this.link && sameAddr(a.to, this.opts.agent.server)) {
            this.toServer(a.bytes);
            break;
          }
          if (this.opts.dropDirect && !sameAddr(a.to, this.opts.agent.server)) break;
          if (a.via && this.tcp.has(a.via)) this.tcp.send(a.via, a.bytes);
          else (a.via ? this.extra.get(a.via) : this.udp)?.send(a.bytes, a.to);
          break;
        case "tcp_open":
          if (!this.opts.dropDirect) this.tcp.open(a.via, a.localPort, a.to);
          break;
        case "tcp_close":
          this.tcp.close(a.via);
          break;
        case "open_socket":
          this.openExtra(a.via);
          break;
        case "close_socket":
          this.extra.get(a.via)?.close();
          this.extra.delete(a.via);
          break;
        case "event":
          this.onEvent(this.decorate(a.event));
          break;
        case "log":
          this.onLog(a.level, a.message);
          break;
        case "fatal":
          this.stop({ code: a.code, message: this.explain(a.message) });
          break;
      }
    }
  }

  /** A registration that got no answer says which ways to the server were tried. */
  private explain(message: string): string {
    const ws = this.opts.ws;
    if (!ws || !message.startsWith("Cannot reach server")) return message;
    return ws.mode === "ws"
      ? `${message} (over its WebSocket ${ws.url})`
      : `${message} (over UDP, nor over its WebSocket ${ws.url})`;
  }

  /** A datagram for the server, over the transport the link chose. */
  private toServer(bytes: Uint8Array): void {
    const link = this.link!;
    if (link.sendOver === "ws") return void this.ws?.send(bytes);
    // REGISTER and KEEPALIVE are always answered: their silence is how a lost UDP shows.
    const t = bytes[2];
    if (t === T.REGISTER || t === T.KEEPALIVE) link.onUdpRequest(performance.now());
    this.udp.send(bytes, this.opts.agent.server);
  }

  /** An extra socket on a port of the kernel's choice; failing to bind one only costs a mapping. */
  private openExtra(via: number): void {
    if (this.extra.has(via)) return;
    try {
      const server = this.opts.agent.server;
      const u = openUdp(this.opts.bindHost, 0, (bytes, from) => {
        if (this.opts.dropDirect && !sameAddr(from, server)) return;
        this.call((out, now) => this.agent.handle(bytes, from, now, out, via));
      });
      this.extra.set(via, u);
    } catch (e) {
      this.onLog("debug", `cannot open an extra socket: ${e instanceof Error ? e.message : e}`);
    }
  }

  private stop(e: Exit): void {
    this.stopped = true;
    void this.mapper?.stop();
    this.alarm.clear();
    this.linkAlarm.clear();
    this.tcp?.closeAll();
    this.ws?.close();
    this.ws = null;
    for (const u of this.extra.values()) u.close();
    this.extra.clear();
    this.udp?.close();
    this.resolveDone(e);
  }
}
