/**
 * Server mode: runs lib/server's state machine on UDP sockets. Nothing polls: one timer sleeps
 * until the state machine's next deadline, re-armed after every datagram and every tick.
 *
 * The primary socket carries p2pchat and STUN; up to three more carry STUN alone, for NAT
 * behaviour discovery (RFC 5780; lib/server/stun.ts numbers them): host:altPort always when
 * that port is free, altHost:port and altHost:altPort with `altHost`.
 *
 * Beside them, a WebSocket endpoint (lib/net/ws_server.ts) for peers whose networks block UDP:
 * the same state machine hears its messages from Addrs with `tcp` set, and sends to such an
 * Addr go back on its connection, so the relay bridges UDP and WebSocket members as it is.
 * Behind a reverse proxy named by `trustProxy`, those Addrs carry the client's IP. A STUN answer
 * that the state machine would send from another socket (CHANGE-REQUEST, RFC 5780) is never
 * sent on a connection: it would claim to come from a socket it did not leave.
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
import { openWsServer, WS_PATH, type WsServer } from "./lib/net/ws_server.ts";
import { defaultWsLimits, type WsLimitConfig } from "./lib/net/ws_limits.ts";
import { type Addr, formatAddr } from "./lib/wire/addr.ts";
import { onStopSignal } from "./lib/cli/signals.ts";
import { type Cidr, formatCidr, isWideRange } from "./lib/server/forwarded.ts";

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
  /**
   * The WebSocket endpoint. Unset: default settings (`TcpOptions` unset). false: none.
   */
  tcp?: TcpOptions | false;
  /** Settings that differ from DEFAULT_SERVER_CONFIG (the rest keep their defaults). */
  config: Partial<ServerConfig>;
  log: Logger;
  /** Resolves to stop the server (tests, signals). */
  stop?: Promise<void>;
  /**
   * Called once bound: the primary port, where every STUN socket is, and the WebSocket
   * endpoint's TCP port (null: none).
   */
  onListening?: (port: number, stun: StunLayout, tcpPort: number | null) => void;
}

export interface TcpOptions {
  /**
   * The TCP port. Unset: the number the UDP port got, skipped with a warning if that TCP port
   * is taken (fatal with TLS); set (0: any free port): failing to bind it is fatal.
   */
  port?: number;
  /** PEM files of the certificate chain and its key: wss:// (both or neither). */
  certFile?: string;
  keyFile?: string;
  /** Settings that differ from defaultWsLimits(keepalive). */
  limits?: Partial<WsLimitConfig>;
  /** Unsent bytes per connection beyond which sends are dropped (default MAX_UNSENT). */
  maxUnsent?: number;
  /** Reverse proxies whose X-Forwarded-For names the client (lib/server/forwarded.ts). */
  trustProxy?: readonly Cidr[];
}

const why = (e: unknown) => e instanceof Error ? e.message : String(e);

/** The certificate and key's PEM text, or the one-line reason they cannot be read. */
async function readTls(t: TcpOptions): Promise<{ cert: string; key: string } | string | null> {
  if (t.certFile === undefined && t.keyFile === undefined) return null;
  if (t.certFile === undefined || t.keyFile === undefined) {
    return "Cannot serve TLS: give both --tls-cert and --tls-key";
  }
  const pem = {} as { cert: string; key: string };
  for (const [what, file] of [["cert", t.certFile], ["key", t.keyFile]] as const) {
    try {
      pem[what] = await Deno.readTextFile(file);
    } catch (e) {
      return `Cannot read --tls-${what} ${file}: ${why(e)}`;
    }
  }
  return pem;
}

/** Serves until `stop` resolves or SIGINT/SIGTERM; returns the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const cfg = { ...DEFAULT_SERVER_CONFIG, ...o.config };
  const state = new ServerState(cfg);
  const out: ServerAction[] = [];
  const sockets: (Udp | null)[] = [null, null, null, null];
  let ws: WsServer | null = null;
  /** Set once stopping starts: datagrams and frames still arriving are not handled. */
  let stopped = false;
  /** STUN answers meant for another socket, asked for over the WebSocket: not sent. */
  let stunOtherSocket = 0;
  const run = () => {
    if (stopped) return void (out.length = 0);
    for (const a of out) {
      if (a.type !== "send") o.log[a.level](a.message);
      else if (!a.to.tcp) sockets[a.socket ?? 0]?.send(a.bytes, a.to);
      // A connection is one socket: an answer "from" another (CHANGE-REQUEST) would be a lie.
      else if ((a.socket ?? 0) !== 0) stunOtherSocket++;
      else ws?.send(a.bytes, a.to);
    }
    out.length = 0;
  };
  const closeAll = () => {
    sockets.forEach((u) => u?.close());
    return ws?.close();
  };
  const tcp = o.tcp === false ? null : o.tcp ?? {};
  // Read before any socket is bound: a user mistake costs nothing to report.
  const pem = tcp ? await readTls(tcp) : null;
  if (typeof pem === "string") {
    console.error(`p2pchat: ${pem}`);
    return 2;
  }
  // After every step the alarm is set for the state's next deadline; setting it for the time
  // it is already set for keeps the running timer.
  const rearm = (now: number) => alarm.set(state.nextDeadline(now), now);
  const alarm = new Alarm(() => {
    if (stopped) return;
    const now = performance.now();
    state.tick(now, out);
    run();
    rearm(now);
  });
  const onPacket = (via: StunSocket) => (bytes: Uint8Array, from: Addr) => {
    if (stopped) return;
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
  if (tcp) {
    const port = tcp.port ?? primary.port;
    try {
      ws = openWsServer({
        hostname: o.host,
        port,
        ...(pem ? { tls: pem } : {}),
        limits: { ...defaultWsLimits(cfg.keepaliveMs), ...tcp.limits },
        ...(tcp.maxUnsent !== undefined ? { maxUnsent: tcp.maxUnsent } : {}),
        ...(tcp.trustProxy ? { trustProxy: tcp.trustProxy } : {}),
        log: (level, message) => o.log[level](message),
      }, onPacket(0));
    } catch (e) {
      // Anything but the socket is the certificate or key: the user's mistake, as a bad file is.
      const socket = e instanceof Deno.errors.AddrInUse ||
        e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied;
      const msg = socket || !pem
        ? `Cannot listen on ${formatAddr({ host: o.host, port })} (TCP): ${why(e)}`
        : `Cannot serve TLS with --tls-cert ${tcp.certFile} and --tls-key ${tcp.keyFile}: ${
          why(e)
        }`;
      if (tcp.port !== undefined || pem) {
        await closeAll();
        console.error(`p2pchat: ${msg}`);
        return socket || !pem ? 1 : 2;
      }
      o.log.warn(`${msg}; no WebSocket endpoint (choose its port with --tcp-port)`);
    }
  }
  const batched = sockets[0]!.batched ? ", batched system calls" : "";
  o.log.info(`listening on ${formatAddr(primary)} (UDP; p2pchat and STUN${batched})`);
  if (ws) {
    o.log.info(
      `listening on ${formatAddr(ws.local)} (TCP; WebSocket ${WS_PATH}${ws.tls ? ", TLS" : ""})`,
    );
    if (tcp?.trustProxy?.length) {
      o.log.info(
        `WebSocket clients through ${tcp.trustProxy.map(formatCidr).join(", ")} are known by ` +
          "X-Forwarded-For",
      );
      const wide = tcp.trustProxy.filter(isWideRange);
      if (wide.length > 0) {
        o.log.warn(
          `--trust-proxy ${wide.map(formatCidr).join(", ")} is wider than a /24 (IPv4) or /64 ` +
            "(IPv6): any host inside it can name its own address in X-Forwarded-For; trust " +
            "ranges holding your proxies only, never clients",
        );
      }
    }
  }
  const more = layout.sockets.slice(1).filter((a): a is Addr => a !== null);
  if (more.length > 0) {
    const kind = isRfc5780(layout)
      ? "RFC 5780 NAT discovery"
      : "NAT discovery: change port only, no --alt-host";
    o.log.info(`STUN also on ${more.map(formatAddr).join(", ")} (${kind})`);
  }
  o.onListening?.(primary.port, layout, ws?.local.port ?? null);
  rearm(performance.now());
  let stop!: () => void;
  const stopping = new Promise<void>((r) => stop = r);
  const onSignal = () => stop();
  const offSignals = onStopSignal(onSignal);
  o.stop?.then(() => stop());
  await stopping;
  stopped = true;
  offSignals();
  alarm.clear();
  await closeAll();
  const s = state.stats;
  const drops = [...s.drops].map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  o.log.info(
    `stopped: ${s.received} datagrams, ${s.stun} STUN, ${s.registered} registrations, ` +
      `${s.relayedPackets} relayed (${s.relayedBytes} bytes), drops: ${drops}`,
  );
  if (ws) {
    const all = [...ws.counts];
    if (stunOtherSocket > 0) all.push(["stun_other_socket_refused", stunOtherSocket]);
    const w = all.map(([k, v]) => `${k}=${v}`).join(" ") || "none";
    o.log.info(`WebSocket: ${w}`);
  }
  return 0;
}
