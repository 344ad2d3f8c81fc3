/**
 * An in-memory network for agent and server tests: one ServerState, any number of PeerAgents,
 * a filter that may drop datagrams, and a fake clock that jumps straight to the next deadline
 * any machine reports (quinn's `Pair::step`), so no test waits for a timer.
 */
import {
  type AgentAction,
  type AgentConfig,
  DEFAULT_AGENT_CONFIG,
  PeerAgent,
} from "../../lib/peer/agent.ts";
import {
  DEFAULT_SERVER_CONFIG,
  type ServerAction,
  type ServerConfig,
  ServerState,
} from "../../lib/server/state.ts";
import { newIdentity, sign } from "../../lib/identity/identity.ts";
import type { PeerEvent } from "../../lib/peer/events.ts";
import { type Addr, addrKey } from "../../lib/wire/addr.ts";

export const SERVER: Addr = { host: "192.0.2.1", port: 8848 };

export interface Packet {
  from: Addr;
  to: Addr;
  bytes: Uint8Array;
  /** Sent over TCP connection "name/via" (TCP punching), not as a UDP datagram. */
  tcp?: string;
}

/**
 * A simulated NAT in front of one agent: `cone` maps each internal socket to one public port
 * whatever the destination (endpoint-independent) and keeps the port; `symmetric` takes a new
 * random port per destination. Both filter like port-restricted NATs: inbound only from an
 * address and port the mapping has sent to.
 */
export interface SimNat {
  kind: "cone" | "symmetric";
  publicHost: string;
  /** Randomness for symmetric port choice (seeded in tests for repeatable runs). */
  random: () => number;
}

interface Mapping {
  internal: Addr;
  publicPort: number;
  /** Remote endpoints it has sent to (the filter). */
  sent: Set<string>;
}

class NatBox {
  private byKey = new Map<string, Mapping>();
  private byPort = new Map<number, Mapping>();
  constructor(readonly cfg: SimNat) {}

  outbound(from: Addr, to: Addr): Addr {
    const key = this.cfg.kind === "cone" ? addrKey(from) : `${addrKey(from)}>${addrKey(to)}`;
    let m = this.byKey.get(key);
    if (!m) {
      let port = from.port;
      if (this.cfg.kind === "symmetric" || this.byPort.has(port)) {
        do port = 1024 + Math.floor(this.cfg.random() * (65536 - 1024)); while (
          this.byPort.has(port)
        );
      }
      m = { internal: from, publicPort: port, sent: new Set() };
      this.byKey.set(key, m);
      this.byPort.set(port, m);
    }
    m.sent.add(addrKey(to));
    return { host: this.cfg.publicHost, port: m.publicPort };
  }

  inbound(from: Addr, to: Addr): Addr | null {
    const m = this.byPort.get(to.port);
    if (!m || !m.sent.has(addrKey(from))) return null;
    return m.internal;
  }
}

/** Deadlines crossed in one `advance` at most: more means a machine that never settles. */
const MAX_STEPS = 1_000_000;

export class MemNet {
  now = 0;
  readonly server: ServerState;
  readonly agents = new Map<string, PeerAgent>();
  readonly hosts = new Map<string, Addr>();
  /** Each agent's identity (tests that act as a peer forge with it). */
  readonly identities = new Map<string, ReturnType<typeof newIdentity>>();
  readonly events = new Map<string, PeerEvent[]>();
  readonly wire: Packet[] = [];
  readonly fatals: string[] = [];
  /** Times each machine's `tick` ran because its deadline came (wake-ups of a real host). */
  readonly wakeups = new Map<string, number>();
  private queue: Packet[] = [];
  private nats = new Map<string, NatBox>();
  /** Extra sockets agents opened (birthday punching): "name/via" -> internal address. */
  private extra = new Map<string, Addr>();
  /** Datagrams a NAT dropped on the way in. */
  natDrops = 0;
  /**
   * TCP punching's connects ("name/via"): each waits until the other side connects to it, from
   * the port it aims at, towards the port it connects from (a simultaneous open that NATs which
   * keep TCP ports let through); then both are told "open" and messages flow between them.
   */
  private tcpPending = new Map<string, { name: string; via: number; from: Addr; to: Addr }>();
  private tcpLinks = new Map<string, { name: string; via: number; from: Addr }>();
  /** Connections up and not yet reported to their agents. */
  private tcpOpened: { name: string; via: number }[] = [];
  /** Return false to drop a datagram (e.g. to force the relay). */
  filter: (p: Packet) => boolean = () => true;

  constructor(server: Partial<ServerConfig> = { keepaliveMs: 1000 }) {
    this.server = new ServerState({ ...DEFAULT_SERVER_CONFIG, ...server });
  }

  /** Adds a peer at `host` (default: 198.51.100.N:1000+N) and starts its registration. */
  add(name: string, cfg: Partial<AgentConfig> = {}, host?: Addr, nat?: SimNat): PeerAgent {
    if (nat) this.nats.set(name, new NatBox(nat));
    const n = this.agents.size + 1;
    const at = host ?? { host: `198.51.100.${n}`, port: 1000 + n };
    const id = newIdentity();
    this.identities.set(name, id);
    const a = new PeerAgent({
      ...DEFAULT_AGENT_CONFIG,
      name,
      room: "lobby",
      server: SERVER,
      locals: [],
      identity: {
        key: id.edPublic,
        sign: (m) => sign(id, m),
        staticKey: { publicKey: id.xPublic, privateKey: id.xSecret },
      },
      keepaliveMs: 1000,
      ...cfg,
    });
    this.agents.set(name, a);
    this.hosts.set(name, at);
    this.events.set(name, []);
    this.call(name, (out) => a.start(this.now, out));
    return a;
  }

  /** Extra sockets an agent holds open now. */
  openSockets(name: string): number {
    return [...this.extra.keys()].filter((k) => k.startsWith(`${name}/`)).length;
  }

  agent(name: string): PeerAgent {
    const a = this.agents.get(name);
    if (!a) throw new Error(`no agent ${name}`);
    return a;
  }

  /** Runs one call into an agent and carries out what it asks for. */
  call(name: string, fn: (out: AgentAction[]) => void): void {
    const out: AgentAction[] = [];
    fn(out);
    this.run(name, out);
  }

  run(name: string, acts: AgentAction[]): void {
    const host = this.hosts.get(name)!;
    for (const x of acts) {
      if (x.type === "send" && x.via && this.tcpLinks.has(`${name}/${x.via}`)) {
        const me = this.tcpPending.get(`${name}/${x.via}`)!;
        this.queue.push({ from: me.from, to: x.to, bytes: x.bytes, tcp: `${name}/${x.via}` });
      } else if (x.type === "tcp_open") {
        this.tcpOpen(name, x.via, x.localPort, x.to);
      } else if (x.type === "tcp_close") {
        this.tcpClose(`${name}/${x.via}`);
      } else if (x.type === "send") {
        const src = x.via ? this.extra.get(`${name}/${x.via}`) : host;
        if (!src) continue; // a closed socket
        const nat = this.nats.get(name);
        this.queue.push({ from: nat ? nat.outbound(src, x.to) : src, to: x.to, bytes: x.bytes });
      } else if (x.type === "open_socket") {
        this.extra.set(`${name}/${x.via}`, { host: host.host, port: 30_000 + x.via });
      } else if (x.type === "close_socket") {
        this.extra.delete(`${name}/${x.via}`);
      } else if (x.type === "event") this.events.get(name)!.push(x.event);
      else if (x.type === "fatal") this.fatals.push(`${name}: ${x.message}`);
    }
  }

  /** The public address a connect from `port` leaves with (NATs keep TCP ports here). */
  private tcpFrom(name: string, port: number): Addr {
    const nat = this.nats.get(name);
    return { host: nat ? nat.cfg.publicHost : this.hosts.get(name)!.host, port, tcp: true };
  }

  private tcpOpen(name: string, via: number, localPort: number, to: Addr): void {
    const key = `${name}/${via}`;
    const me = {
      name,
      via,
      from: this.tcpFrom(name, localPort),
      to: { ...to, tcp: true as const },
    };
    this.tcpPending.set(key, me);
    for (const [k, o] of this.tcpPending) {
      if (o.name === name || this.tcpLinks.has(k)) continue;
      if (addrKey(o.to) !== addrKey(me.from) || addrKey(me.to) !== addrKey(o.from)) continue;
      this.tcpLinks.set(key, { name: o.name, via: o.via, from: o.from });
      this.tcpLinks.set(k, { name, via, from: me.from });
      this.tcpOpened.push({ name, via }, { name: o.name, via: o.via });
      return;
    }
  }

  private tcpClose(key: string): void {
    const other = this.tcpLinks.get(key);
    this.tcpPending.delete(key);
    this.tcpLinks.delete(key);
    if (!other) return;
    const k = `${other.name}/${other.via}`;
    this.tcpLinks.delete(k);
    this.tcpPending.delete(k);
    this.call(
      other.name,
      (out) => this.agent(other.name).onTcp(other.via, "closed", this.now, out),
    );
  }

  /** TCP connections now open. */
  get tcpConnections(): number {
    return this.tcpLinks.size / 2;
  }

  /** A datagram handed to an agent as if it arrived from `from`. */
  deliver(name: string, bytes: Uint8Array, from: Addr, via = 0): void {
    this.call(name, (out) => this.agent(name).handle(bytes, from, this.now, out, via));
  }

  /** Which agent and socket a datagram to `to` reaches, through its NAT if it has one. */
  private route(p: Packet): { name: string; via: number } | null {
    for (const [name, at] of this.hosts) {
      const nat = this.nats.get(name);
      let inside: Addr | null = p.to;
      if (nat) {
        if (p.to.host !== nat.cfg.publicHost) continue;
        inside = nat.inbound(p.from, p.to);
        if (!inside) {
          this.natDrops++;
          return null;
        }
      }
      if (addrKey(at) === addrKey(inside)) return { name, via: 0 };
      for (const [k, a] of this.extra) {
        if (k.startsWith(`${name}/`) && addrKey(a) === addrKey(inside)) {
          return { name, via: Number(k.slice(name.length + 1)) };
        }
      }
    }
    return null;
  }

  private serverOut(out: ServerAction[]): void {
    for (const x of out) if (x.type === "send") this.queue.push({ from: SERVER, ...x });
  }

  /** Delivers everything in flight (and what that causes) at the current time. */
  flush(): void {
    for (const o of this.tcpOpened.splice(0)) {
      this.call(o.name, (out) => this.agent(o.name).onTcp(o.via, "open", this.now, out));
    }
    for (let i = 0; i < 10_000 && this.queue.length > 0; i++) {
      const p = this.queue.shift()!;
      if (!this.filter(p)) continue;
      this.wire.push(p);
      if (p.tcp) {
        const dst = this.tcpLinks.get(p.tcp);
        if (dst) this.deliver(dst.name, p.bytes, p.from, dst.via);
        continue;
      }
      if (addrKey(p.to) === addrKey(SERVER)) {
        const out: ServerAction[] = [];
        this.server.handle(p.bytes, p.from, this.now, out);
        this.serverOut(out);
        continue;
      }
      const dst = this.route(p);
      if (dst) this.deliver(dst.name, p.bytes, p.from, dst.via);
    }
  }

  /** The earliest deadline of any machine, or null. */
  nextDeadline(): number | null {
    let at = this.server.nextDeadline(this.now);
    for (const a of this.agents.values()) {
      const d = a.nextDeadline(this.now);
      if (d !== null && (at === null || d < at)) at = d;
    }
    return at;
  }

  /**
   * Advances the clock by `ms`, jumping from one deadline to the next and delivering what each
   * causes. Throws if a machine reports a deadline it does not move past when ticked (a host
   * would spin on it).
   */
  advance(ms: number): void {
    const end = this.now + ms;
    for (let step = 0; step < MAX_STEPS; step++) {
      const d = this.nextDeadline();
      if (d === null || d > end) break;
      this.now = Math.max(this.now, d);
      const out: ServerAction[] = [];
      if (this.due(this.server.nextDeadline(this.now))) {
        this.server.tick(this.now, out);
        this.count("server");
        this.serverOut(out);
        this.settled("server", this.server.nextDeadline(this.now));
      }
      for (const [name, a] of this.agents) {
        if (!this.due(a.nextDeadline(this.now))) continue;
        this.call(name, (o) => a.tick(this.now, o));
        this.count(name);
        this.settled(name, a.nextDeadline(this.now));
      }
      this.flush();
    }
    this.now = Math.max(this.now, end);
    this.flush();
  }

  private due(d: number | null): boolean {
    return d !== null && d <= this.now;
  }

  private count(name: string): void {
    this.wakeups.set(name, (this.wakeups.get(name) ?? 0) + 1);
  }

  private settled(name: string, next: number | null): void {
    if (next !== null && next <= this.now) {
      throw new Error(`${name} still reports deadline ${next} after ticking at ${this.now}`);
    }
  }

  say(name: string, text: string): void {
    this.call(name, (out) => this.agent(name).say(text, this.now, out));
    this.flush();
  }

  msg(name: string, to: string, text: string): void {
    this.call(name, (out) => this.agent(name).msg(to, text, this.now, out));
    this.flush();
  }

  texts(name: string): string[] {
    return this.events.get(name)!.flatMap((e) => e.type === "message" ? [e.text] : []);
  }
}
