/**
 * Server mode: runs lib/server's state machine on UDP sockets. Nothing polls: one timer sleeps
 * until the state machine's next deadline, re-armed after every datagram and every tick.
 *
 * The primary socket carries p2pchat and STUN; up to three more carry STUN alone, for NAT
 * behaviour discovery (RFC 5780; lib/server/stun.ts numbers them): host:altPort always when
 * that port is free, altHost:port and altHost:altPort with `altHost`.
 */
import type { Logger } from "@logtape/logtape";
import {
  DEFAULT_SERVER_CONFIG,
  type ServerAction,
  type ServerConfig,
  ServerState,
} from "./lib/server/state.ts";
import { isRfc5780, type StunLayout, type StunSocket } from "./lib/server/stun.ts";
import { Alarm } from "./lib/net/alarm.ts";
import { openUdp, type Udp } from "./lib/net/udp.ts";
import { type Addr, formatAddr } from "./lib/wire/addr.ts";
import { onStopSignal } from "./lib/cli/signals.ts";

export interface ServeOptions {
  host: string;
  port: number;
  /**
   * The server's second address, for RFC 5780 NAT discovery: STUN sockets altHost:port and
   * altHost:altPort. Needs a concrete `host` (answers must leave from known addresses).
   */
  altHost?: string;
  /**
   * The second STUN port (host:altPort, and altHost:altPort). Unset: port + 1, skipped with a
   * warning if it is taken (unless `altHost` is set); 0: no second port.
   */
  altPort?: number;
  /** Settings that differ from DEFAULT_SERVER_CONFIG (the rest keep their defaults). */
  config: Partial<ServerConfig>;
  log: Logger;
  /** Resolves to stop the server (tests, signals). */
  stop?: Promise<void>;
  /** Called once bound: the primary port, and where every STUN socket is. */
  onListening?: (port: number, stun: StunLayout) => void;
}

/** Serves until `stop` resolves or SIGINT/SIGTERM; returns the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const state = new ServerState({ ...DEFAULT_SERVER_CONFIG, ...o.config });
  const out: ServerAction[] = [];
  const sockets: (Udp | null)[] = [null, null, null, null];
  const run = () => {
    for (const a of out) {
      if (a.type === "send") sockets[a.socket ?? 0]?.send(a.bytes, a.to);
      else o.log[a.level](a.message);
    }
    out.length = 0;
  };
  const closeAll = () => sockets.forEach((u) => u?.close());
  // After every step the alarm is set for the state's next deadline; setting it for the time
  // it is already set for keeps the running timer.
  const rearm = (now: number) => alarm.set(state.nextDeadline(now), now);
  const alarm = new Alarm(() => {
    const now = performance.now();
    state.tick(now, out);
    run();
    rearm(now);
  });
  const onPacket = (via: StunSocket) => (bytes: Uint8Array, from: Addr) => {
    const now = performance.now();
    if (via === 0) state.handle(bytes, from, now, out);
    else state.handleStunOnly(bytes, from, via, now, out);
    run();
    rearm(now);
  };
  const listen = (via: StunSocket, host: string, port: number): string | null => {
    try {
      sockets[via] = openUdp(host, port, onPacket(via), { batched: true });
      return null;
    } catch (e) {
      return `Cannot listen on ${formatAddr({ host, port })}: ${
        e instanceof Error ? e.message : String(e)
      }`;
    }
  };
  const failed = listen(0, o.host, o.port);
  if (failed) {
    console.error(`p2pchat: ${failed}`);
    return 1;
  }
  const primary = sockets[0]!.local;
  // Only an explicit request for RFC 5780 sockets makes a missing one fatal.
  const required = o.altHost !== undefined || (o.altPort ?? 0) > 0;
  const altPort = o.altPort ?? (primary.port < 65535 ? primary.port + 1 : 0);
  if (o.altHost !== undefined && altPort === 0) {
    closeAll();
    console.error("p2pchat: Cannot serve RFC 5780 with --alt-host: it needs a second port too");
    return 1;
  }
  const extra: [StunSocket, string, number][] = [];
  if (altPort > 0) extra.push([1, o.host, altPort]);
  if (o.altHost !== undefined) {
    extra.push([2, o.altHost, primary.port], [3, o.altHost, altPort]);
  }
  for (const [via, host, port] of extra) {
    const why = listen(via, host, port);
    if (why && required) {
      closeAll();
      console.error(`p2pchat: ${why}`);
      return 1;
    }
    if (why) o.log.warn(`${why}; NAT discovery gets no second port`);
  }
  const layout: StunLayout = {
    sockets: [
      primary,
      sockets[1]?.local ?? null,
      sockets[2]?.local ?? null,
      sockets[3]?.local ?? null,
    ],
  };
  state.stunLayout = layout;
  o.log.info(`listening on ${formatAddr(primary)} (UDP; p2pchat and STUN)`);
  const more = layout.sockets.slice(1).filter((a): a is Addr => a !== null);
  if (more.length > 0) {
    const kind = isRfc5780(layout)
      ? "RFC 5780 NAT discovery"
      : "NAT discovery: change port only, no --alt-host";
    o.log.info(`STUN also on ${more.map(formatAddr).join(", ")} (${kind})`);
  }
  o.onListening?.(primary.port, layout);
  rearm(performance.now());
  let stop!: () => void;
  const stopped = new Promise<void>((r) => stop = r);
  const onSignal = () => stop();
  const offSignals = onStopSignal(onSignal);
  o.stop?.then(() => stop());
  await stopped;
  offSignals();
  alarm.clear();
  closeAll();
  const s = state.stats;
  const drops = [...s.drops].map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  o.log.info(
    `stopped: ${s.received} datagrams, ${s.stun} STUN, ${s.registered} registrations, ` +
      `${s.relayedPackets} relayed (${s.relayedBytes} bytes), drops: ${drops}`,
  );
  return 0;
}
