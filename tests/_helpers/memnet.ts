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
}

/** Deadlines crossed in one `advance` at most: more means a machine that never settles. */
const MAX_STEPS = 1_000_000;

export class MemNet {
  now = 0;
  readonly server: ServerState;
  readonly agents = new Map<string, PeerAgent>();
  readonly hosts = new Map<string, Addr>();
  readonly events = new Map<string, PeerEvent[]>();
  readonly wire: Packet[] = [];
  readonly fatals: string[] = [];
  /** Times each machine's `tick` ran because its deadline came (wake-ups of a real host). */
  readonly wakeups = new Map<string, number>();
  private queue: Packet[] = [];
  /** Return false to drop a datagram (e.g. to force the relay). */
  filter: (p: Packet) => boolean = () => true;

  constructor(server: Partial<ServerConfig> = { keepaliveMs: 1000 }) {
    this.server = new ServerState({ ...DEFAULT_SERVER_CONFIG, ...server });
  }

  /** Adds a peer at `host` (default: 198.51.100.N:1000+N) and starts its registration. */
  add(name: string, cfg: Partial<AgentConfig> = {}, host?: Addr): PeerAgent {
    const n = this.agents.size + 1;
    const at = host ?? { host: `198.51.100.${n}`, port: 1000 + n };
    const id = newIdentity();
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
    for (const x of acts) {
      if (x.type === "send") {
        this.queue.push({ from: this.hosts.get(name)!, to: x.to, bytes: x.bytes });
      } else if (x.type === "event") this.events.get(name)!.push(x.event);
      else if (x.type === "fatal") this.fatals.push(`${name}: ${x.message}`);
    }
  }

  /** A datagram handed to an agent as if it arrived from `from`. */
  deliver(name: string, bytes: Uint8Array, from: Addr): void {
    this.call(name, (out) => this.agent(name).handle(bytes, from, this.now, out));
  }

  private serverOut(out: ServerAction[]): void {
    for (const x of out) if (x.type === "send") this.queue.push({ from: SERVER, ...x });
  }

  /** Delivers everything in flight (and what that causes) at the current time. */
  flush(): void {
    for (let i = 0; i < 10_000 && this.queue.length > 0; i++) {
      const p = this.queue.shift()!;
      if (!this.filter(p)) continue;
      this.wire.push(p);
      if (addrKey(p.to) === addrKey(SERVER)) {
        const out: ServerAction[] = [];
        this.server.handle(p.bytes, p.from, this.now, out);
        this.serverOut(out);
        continue;
      }
      for (const [name, at] of this.hosts) {
        if (addrKey(at) === addrKey(p.to)) this.deliver(name, p.bytes, p.from);
      }
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
