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
import { openUdp } from "./lib/net/udp.ts";
import { formatAddr } from "./lib/wire/addr.ts";
import { onStopSignal } from "./lib/cli/signals.ts";

/** setTimeout's largest delay (2^31 - 1 ms); a later deadline is slept towards in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One timer for a state machine's deadlines: `arm()` after every step sleeps until
 * `deadline(now)`, then calls `fire(now)` and arms again. Arming for the time already armed
 * keeps the running timer, so a datagram that does not move the deadline costs no timer work.
 */
export function deadlineTimer(
  deadline: (now: number) => number | null,
  fire: (now: number) => void,
  clock: () => number = () => performance.now(),
): { arm(): void; stop(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let armedFor: number | null = null;
  let stopped = false;
  const clear = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    armedFor = null;
  };
  const arm = () => {
    if (stopped) return;
    const at = deadline(clock());
    if (at !== null && at === armedFor) return;
    clear();
    if (at === null) return;
    armedFor = at;
    // Rounded up: waking a fraction of a millisecond early would only find nothing due.
    const ms = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(at - clock())));
    timer = setTimeout(() => {
      timer = undefined;
      armedFor = null;
      fire(clock());
      arm();
    }, ms);
  };
  return {
    arm,
    stop() {
      stopped = true;
      clear();
    },
  };
}

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
  const timer = deadlineTimer((now) => state.nextDeadline(now), (now) => {
    state.tick(now, out);
    run();
  });
  try {
    udp = openUdp(o.host, o.port, (bytes, from) => {
      state.handle(bytes, from, performance.now(), out);
      run();
      timer.arm();
    });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    console.error(`p2pchat: Cannot listen on ${o.host}:${o.port}: ${why}`);
    return 1;
  }
  o.log.info(`listening on ${formatAddr(udp.local)} (UDP; p2pchat and STUN)`);
  o.onListening?.(udp.local.port);
  timer.arm();
  let stop!: () => void;
  const stopped = new Promise<void>((r) => stop = r);
  const onSignal = () => stop();
  const offSignals = onStopSignal(onSignal);
  o.stop?.then(() => stop());
  await stopped;
  offSignals();
  timer.stop();
  udp.close();
  const s = state.stats;
  const drops = [...s.drops].map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  o.log.info(
    `stopped: ${s.received} datagrams, ${s.stun} STUN, ${s.registered} registrations, ` +
      `${s.relayedPackets} relayed (${s.relayedBytes} bytes), drops: ${drops}`,
  );
  return 0;
}
