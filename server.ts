/**
 * Server mode: runs lib/server's state machine on a UDP socket. Nothing polls: one timer sleeps
 * until the state machine's next deadline, re-armed after every datagram and every tick.
 */
import type { Logger } from "@logtape/logtape";
import {
  DEFAULT_SERVER_CONFIG,
  type ServerAction,
  type ServerConfig,
  ServerState,
} from "./lib/server/state.ts";
import { Alarm } from "./lib/net/alarm.ts";
import { openUdp } from "./lib/net/udp.ts";
import { formatAddr } from "./lib/wire/addr.ts";
import { onStopSignal } from "./lib/cli/signals.ts";

export interface ServeOptions {
  host: string;
  port: number;
  /** Settings that differ from DEFAULT_SERVER_CONFIG (the rest keep their defaults). */
  config: Partial<ServerConfig>;
  log: Logger;
  /** Resolves to stop the server (tests, signals). */
  stop?: Promise<void>;
  onListening?: (port: number) => void;
}

/** Serves until `stop` resolves or SIGINT/SIGTERM; returns the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const state = new ServerState({ ...DEFAULT_SERVER_CONFIG, ...o.config });
  const out: ServerAction[] = [];
  let udp: ReturnType<typeof openUdp>;
  const run = () => {
    for (const a of out) {
      if (a.type === "send") udp.send(a.bytes, a.to);
      else o.log[a.level](a.message);
    }
    out.length = 0;
  };
  // After every step the alarm is set for the state's next deadline; setting it for the time
  // it is already set for keeps the running timer.
  const rearm = (now: number) => alarm.set(state.nextDeadline(now), now);
  const alarm = new Alarm(() => {
    const now = performance.now();
    state.tick(now, out);
    run();
    rearm(now);
  });
  try {
    udp = openUdp(o.host, o.port, (bytes, from) => {
      const now = performance.now();
      state.handle(bytes, from, now, out);
      run();
      rearm(now);
    });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    console.error(`p2pchat: Cannot listen on ${o.host}:${o.port}: ${why}`);
    return 1;
  }
  o.log.info(`listening on ${formatAddr(udp.local)} (UDP; p2pchat and STUN)`);
  o.onListening?.(udp.local.port);
  rearm(performance.now());
  let stop!: () => void;
  const stopped = new Promise<void>((r) => stop = r);
  const onSignal = () => stop();
  const offSignals = onStopSignal(onSignal);
  o.stop?.then(() => stop());
  await stopped;
  offSignals();
  alarm.clear();
  udp.close();
  const s = state.stats;
  const drops = [...s.drops].map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  o.log.info(
    `stopped: ${s.received} datagrams, ${s.stun} STUN, ${s.registered} registrations, ` +
      `${s.relayedPackets} relayed (${s.relayedBytes} bytes), drops: ${drops}`,
  );
  return 0;
}
