/** Server mode: runs lib/server's state machine on a UDP socket. */
import type { Logger } from "@logtape/logtape";
import { type ServerAction, type ServerConfig, ServerState } from "./lib/server/state.ts";
import { openUdp } from "./lib/net/udp.ts";
import { formatAddr } from "./lib/wire/addr.ts";
import { onStopSignal } from "./lib/cli/signals.ts";

export interface ServeOptions {
  host: string;
  port: number;
  config: ServerConfig;
  log: Logger;
  /** Resolves to stop the server (tests, signals). */
  stop?: Promise<void>;
  onListening?: (port: number) => void;
}

/** Serves until `stop` resolves or SIGINT/SIGTERM; returns the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const state = new ServerState(o.config);
  const out: ServerAction[] = [];
  let udp: ReturnType<typeof openUdp>;
  const run = () => {
    for (const a of out) {
      if (a.type === "send") udp.send(a.bytes, a.to);
      else o.log[a.level](a.message);
    }
    out.length = 0;
  };
  try {
    udp = openUdp(o.host, o.port, (bytes, from) => {
      state.handle(bytes, from, performance.now(), out);
      run();
    });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    console.error(`p2pchat: Cannot listen on ${o.host}:${o.port}: ${why}`);
    return 1;
  }
  o.log.info(`listening on ${formatAddr(udp.local)} (UDP; p2pchat and STUN)`);
  o.onListening?.(udp.local.port);
  const timer = setInterval(() => {
    state.tick(performance.now(), out);
    run();
  }, 1000);
  let stop!: () => void;
  const stopped = new Promise<void>((r) => stop = r);
  const onSignal = () => stop();
  const offSignals = onStopSignal(onSignal);
  o.stop?.then(() => stop());
  await stopped;
  offSignals();
  clearInterval(timer);
  udp.close();
  const s = state.stats;
  const drops = [...s.drops].map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  o.log.info(
    `stopped: ${s.received} datagrams, ${s.stun} STUN, ${s.registered} registrations, ` +
      `${s.relayedPackets} relayed (${s.relayedBytes} bytes), drops: ${drops}`,
  );
  return 0;
}
