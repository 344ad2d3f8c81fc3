/**
 * Runs a PeerAgent on a real UDP socket: feeds it datagrams and clock ticks, carries out its
 * actions. Everything the user sees arrives through `onEvent`/`onLog`.
 */
import { type Addr, sameAddr } from "../wire/addr.ts";
import { type AgentAction, type AgentConfig, PeerAgent, type PeerInfo } from "../peer/agent.ts";
import type { PeerEvent } from "../peer/events.ts";
import { openUdp, type Udp } from "./udp.ts";
import { localAddrs } from "./interfaces.ts";

export interface PeerHostOptions {
  agent: Omit<AgentConfig, "locals">;
  bindHost: string;
  port: number;
  tickMs: number;
  /** Test hook: drop every datagram that is not to or from the server, forcing the relay. */
  dropDirect: boolean;
}

export interface Exit {
  code: number;
  message?: string;
}

export class PeerHost {
  private agent!: PeerAgent;
  private udp!: Udp;
  private timer: ReturnType<typeof setInterval> | undefined;
  private resolveDone!: (e: Exit) => void;
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
      this.run(this.agent.handle(bytes, from, performance.now()));
    });
    this.agent = new PeerAgent({ ...this.opts.agent, locals: localAddrs(this.udp.local.port) });
    this.run(this.agent.start(performance.now()));
    this.timer = setInterval(() => this.run(this.agent.tick(performance.now())), this.opts.tickMs);
  }

  private run(actions: AgentAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case "send":
          if (this.opts.dropDirect && !sameAddr(a.to, this.opts.agent.server)) break;
          this.udp.send(a.bytes, a.to);
          break;
        case "event":
          this.onEvent(a.event);
          break;
        case "log":
          this.onLog(a.level, a.message);
          break;
        case "fatal":
          this.stop({ code: a.code, message: a.message });
          break;
      }
    }
  }

  say(text: string): void {
    this.run(this.agent.say(text, performance.now()));
  }

  msg(name: string, text: string): void {
    this.run(this.agent.msg(name, text, performance.now()));
  }

  trust(name: string): void {
    this.run(this.agent.trustPeer(name, performance.now()));
  }

  stats(): Record<string, number> {
    return this.agent.stats();
  }

  peers(): PeerInfo[] {
    return this.agent.peers();
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

  /** Tells the server we leave, then closes the socket. */
  async leave(): Promise<void> {
    this.run(this.agent.leave());
    // Let the leave datagrams reach the wire before the socket closes.
    await new Promise((r) => setTimeout(r, 50));
    this.stop({ code: 0 });
  }

  private stop(e: Exit): void {
    clearInterval(this.timer);
    this.udp?.close();
    this.resolveDone(e);
  }
}
