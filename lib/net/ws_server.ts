/**
 * The server's WebSocket endpoint, for peers whose networks block UDP: `Deno.serve` with
 * `Deno.upgradeWebSocket` on path /p2pchat, optionally over TLS. Each binary frame carries
 * exactly one wire message, the same bytes as a UDP datagram; anything else closes the
 * connection. Who may connect and when a connection must go is decided by WsLimits
 * (ws_limits.ts); this file only carries it out, with one timer for the earliest deadline.
 * A connection counts as alive only when the server sends it something (the server answers
 * only what it accepted), so junk frames, however frequent, do not keep a slot.
 *
 * A connection is known to the caller by an Addr with `tcp: true` (the remote IP and TCP
 * port), so it never collides with a UDP endpoint of the same ip:port. Behind a reverse proxy
 * (`trustProxy`), the remote IP is the client's, as the proxy reports it in X-Forwarded-For
 * (lib/server/forwarded.ts), so per-IP caps count clients rather than the proxy; the port is
 * the reported one if any, else the proxy's end of the connection. Either way no two
 * connections share an Addr while one is open or closed within `addrHoldMs` (a registration
 * outlives its connection by up to the server's silence limit, and must not reach a newcomer
 * from the same ip:port): a taken one moves to the next free port number.
 *
 * If accepting fails (EMFILE: out of descriptors), Deno.serve ends its listener; the error is
 * logged, never thrown, and the listener is opened again on the same port after a back-off
 * (1 s, doubling to 30 s, back to 1 s once a request arrives). Open connections and the UDP
 * side go on meanwhile.
 *
 * What cannot be fixed on Deno.serve (measured, tests/e2e/ws_server_test.ts):
 * - no deadline for the request head: a slow-loris keeps a connection and its descriptor as
 *   long as it trickles (the head is capped at about 400 KB, beyond which it gets 400), and
 *   no hook before the head is complete, so the caps below count upgraded connections only;
 * - a message is read whole, up to 64 MiB, before it can be refused: per-connection memory is
 *   bounded by that alone, and the connection cap (defaultWsLimits) is what bounds the total;
 * - closing is only a close frame: a connection the server closes (1008, 1009, 1003, a ping
 *   unanswered) stays open for as long as the client neither answers the close nor hangs up
 *   (denoland/deno#27924). It keeps counting against the caps, so such clients cost slots and
 *   descriptors up to the caps, and MAX_UNSENT bounds what is queued for them.
 */
import { type Addr, addrKey, formatAddr, ipFromBytes } from "../wire/addr.ts";
import { MAGIC, T } from "../wire/codec.ts";
import { MAX_DATAGRAM } from "../wire/sizes.ts";
import { ipBytes } from "../server/ip.ts";
import { type Cidr, clientAddress } from "../server/forwarded.ts";
import { Alarm } from "./alarm.ts";
import { HeldAddrs, type WsLimitConfig, WsLimits } from "./ws_limits.ts";

/** The one path the endpoint answers on; anything else gets 404. */
export const WS_PATH = "/p2pchat";
/**
 * Largest binary frame accepted: the largest datagram a decoder accepts (MAX_DATAGRAM; nothing
 * sends more than MAX_SEND) with room to spare. Bigger ones close the connection with 1009.
 */
export const MAX_FRAME = MAX_DATAGRAM + 548;
/**
 * Unsent bytes a connection may hold (`bufferedAmount`): beyond it sends are dropped and
 * counted, as UDP's bounded in-flight sends are, so a client that never reads cannot grow the
 * server's memory. 256 KiB is two seconds of a full relay allowance (128 KiB/s).
 */
export const MAX_UNSENT = 256 * 1024;
/**
 * Deno's WebSocket ping interval (`idleTimeout`, s): a connection that answers no ping within
 * it gets a close frame. That ends it only if the client answers the close or hangs up: a
 * client that never reads does neither and stays open (observed after 70 s), so the ping does
 * not remove it; MAX_UNSENT bounds what it holds, and the idle deadline (nothing is sent to it
 * once its unsent bytes are full) sends it another close frame.
 */
export const PING_S = 30;

/** The first wait before opening a failed listener again (ms); it doubles on each failure. */
export const RELISTEN_FIRST_MS = 1_000;
/** The longest wait between attempts to open the listener again (ms). */
export const RELISTEN_MAX_MS = 30_000;

/** Close codes (RFC 6455 §7.4.1). */
export const CLOSE = {
  /** Server shutting down. */
  goingAway: 1001,
  /** A text frame: the endpoint carries binary frames only. */
  unsupportedData: 1003,
  /** Nothing sent to it in time (no first answer, or none for too long). A close frame only. */
  policy: 1008,
  /** A frame larger than MAX_FRAME. */
  tooBig: 1009,
} as const;

export interface WsServerOptions {
  hostname: string;
  port: number;
  /** PEM text of the certificate chain and its key: serve wss:// instead of ws://. */
  tls?: { cert: string; key: string };
  limits: WsLimitConfig;
  /** Unsent bytes per connection beyond which sends are dropped; default MAX_UNSENT. */
  maxUnsent?: number;
  /**
   * Reverse proxies whose X-Forwarded-For is believed: a connection from inside one of these
   * ranges is known by the client address the header names. Default none (headers ignored).
   */
  trustProxy?: readonly Cidr[];
  /** Where the listener's failures and re-openings are told; default stderr. */
  log?: (level: "warn" | "info", message: string) => void;
}

export interface WsServer {
  /** Where it listens (no `tcp` flag: this is a listening socket, not a peer). */
  readonly local: Addr;
  readonly tls: boolean;
  /** Open connections. */
  readonly open: number;
  /**
   * What happened, by reason: refusals (`not_found`, `upgrade_required`, `per_ip`, `total`,
   * `bad_upgrade`, `no_free_addr`), closes (`text_frame`, `oversized_frame`,
   * `first_message_timeout`, `idle_timeout`), sends (`send_dropped`, `send_no_connection`,
   * `send_error`), the listener (`listener_failed`, `listener_reopened`), and with
   * `trustProxy`, upgrades from a trusted proxy: `forwarded` (client address from
   * X-Forwarded-For), `forwarded_missing` (no header), `forwarded_malformed` (unreadable:
   * the proxy's address is used), and `port_moved` (the Addr was taken, by an open
   * connection or one closed within `addrHoldMs`).
   */
  readonly counts: Map<string, number>;
  /**
   * Sends `bytes` on the connection `to` names (`to.tcp` set), or drops and counts them. A
   * message sent (other than an ERROR) keeps the connection alive (WsLimits.touch).
   */
  send(bytes: Uint8Array, to: Addr): void;
  /** Closes every connection (1001) and stops listening. */
  close(): Promise<void>;
}

/** A remote address as text: v4-mapped IPv6 (`::ffff:a.b.c.d`) becomes plain IPv4. */
export function plainHost(host: string): string {
  const b = ipBytes(host);
  return b && b.length === 4 && host.includes(":") ? ipFromBytes(b) : host;
}

interface Conn {
  id: number;
  socket: WebSocket;
  addr: Addr;
  key: string;
}

/** An ERROR: the server refusing what the client said, which does not make it alive. */
const isRefusal = (b: Uint8Array) => b.length >= 3 && b[0] === MAGIC && b[2] === T.ERROR;

const why = (e: unknown) => e instanceof Error ? e.message : String(e);

/**
 * Listens for WebSocket connections; calls `onMessage` with each binary frame's bytes (its
 * own copy) and the connection's Addr (`tcp: true`). Throws if the port cannot be bound or
 * the TLS certificate or key is unusable; a listener that fails later is opened again (see
 * the module comment). `onMessage` throwing is reported, never fatal.
 *
 * @example
 * const ws = openWsServer(
 *   { hostname: "0.0.0.0", port: 8848, limits: defaultWsLimits(15_000) },
 *   (bytes, from) => ws.send(bytes, from), // an echo server
 * );
 */
export function openWsServer(
  o: WsServerOptions,
  onMessage: (bytes: Uint8Array, from: Addr) => void,
): WsServer {
  const limits = new WsLimits(o.limits);
  const held = new HeldAddrs(o.limits.addrHoldMs);
  const maxUnsent = o.maxUnsent ?? MAX_UNSENT;
  const log = o.log ?? ((level, m) => console.error(`${level}: ${m}`));
  const counts = new Map<string, number>();
  const count = (why: string) => counts.set(why, (counts.get(why) ?? 0) + 1);
  /** By id (for deadlines) and by addrKey (for sends and unique Addrs), from upgrade to close. */
  const byId = new Map<number, Conn>();
  const byKey = new Map<string, Conn>();
  let closing = false;

  const shut = (c: Conn, code: number, reason: string) => {
    try {
      c.socket.close(code, reason);
    } catch { /* already closing */ }
  };
  // Deadlines move later with every send: an alarm armed earlier is kept (it wakes, finds the
  // deadline moved and sleeps again) rather than re-armed per send. An earlier one re-arms.
  const rearm = (now: number) => alarm.set(limits.nextDeadline(), now);
  const alarm = new Alarm(() => {
    const now = performance.now();
    for (const { id, why } of limits.due(now)) {
      const c = byId.get(id);
      if (!c) continue;
      count(why);
      shut(c, CLOSE.policy, why === "idle_timeout" ? "idle" : "no message");
    }
    rearm(now);
  }, { slackMs: Number.POSITIVE_INFINITY });

  const trusted = o.trustProxy ?? [];
  const taken = (key: string, now: number) => byKey.has(key) || held.has(key, now);
  /**
   * The connection's Addr: the TCP peer, or the client a trusted proxy names. It can be taken,
   * by an open connection (two proxies' ports, a port the proxy reported) or by one closed
   * within addrHoldMs (whose registration may still be live): the next port number that is
   * neither is used instead. Null if every port of that host is taken.
   */
  const uniqueAddr = (remote: Deno.NetAddr, headers: Headers, now: number): Addr | null => {
    const peer = { host: plainHost(remote.hostname), port: remote.port };
    const client = clientAddress(peer, headers.get("x-forwarded-for"), trusted);
    if (client.source !== "peer") {
      count(client.source === "forwarded" ? "forwarded" : `forwarded_${client.source}`);
    }
    const addr: Addr = { host: client.host, port: client.port, tcp: true };
    if (!taken(addrKey(addr), now)) return addr;
    count("port_moved");
    for (let tries = 1; tries < 65535; tries++) {
      addr.port = addr.port % 65535 + 1;
      if (!taken(addrKey(addr), now)) return addr;
    }
    return null;
  };

  const accept = (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response => {
    backoff = RELISTEN_FIRST_MS; // a request got through: the listener works
    if (new URL(req.url).pathname !== WS_PATH) {
      count("not_found");
      return new Response("not found\n", { status: 404 });
    }
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      count("upgrade_required");
      return new Response(`p2pchat: WebSocket only, on ${WS_PATH}\n`, {
        status: 426,
        headers: { upgrade: "websocket", connection: "Upgrade" },
      });
    }
    const now = performance.now();
    const addr = uniqueAddr(info.remoteAddr, req.headers, now);
    if (!addr) {
      count("no_free_addr");
      return new Response("too many connections\n", { status: 503 });
    }
    const admitted = closing ? { ok: false as const, reason: "total" as const } : limits.admit(
      addr.host,
      now,
    );
    if (!admitted.ok) {
      count(admitted.reason);
      return new Response("too many connections\n", { status: 503 });
    }
    let up: { socket: WebSocket; response: Response };
    try {
      up = Deno.upgradeWebSocket(req, { idleTimeout: PING_S });
    } catch {
      limits.closed(admitted.id);
      count("bad_upgrade");
      return new Response("bad WebSocket upgrade\n", { status: 400 });
    }
    const c: Conn = { id: admitted.id, socket: up.socket, addr, key: addrKey(addr) };
    byId.set(c.id, c);
    byKey.set(c.key, c);
    rearm(now);
    c.socket.binaryType = "arraybuffer";
    c.socket.onmessage = (e: MessageEvent) => {
      // Stopping: sockets are closing and the caller is done; nothing more reaches it.
      if (closing) return;
      try {
        if (!(e.data instanceof ArrayBuffer)) {
          count("text_frame");
          return shut(c, CLOSE.unsupportedData, "binary frames only");
        }
        if (e.data.byteLength > MAX_FRAME) {
          count("oversized_frame");
          return shut(c, CLOSE.tooBig, `frames of at most ${MAX_FRAME} bytes`);
        }
        // This does not make it alive: only an answer (send) moves its deadlines.
        onMessage(new Uint8Array(e.data), c.addr);
      } catch (err) {
        // A handler bug must not kill the endpoint; report it and go on.
        console.error(`internal error handling a WebSocket message: ${why(err)}`);
      }
    };
    c.socket.onerror = () => {}; // a close event follows
    c.socket.onclose = () => {
      const now = performance.now();
      limits.closed(c.id);
      byId.delete(c.id);
      if (byKey.get(c.key) === c) {
        byKey.delete(c.key);
        held.hold(c.key, now);
      }
      rearm(now);
    };
    return up.response;
  };

  /** Listeners not yet finished: the current one, and failed ones whose connections live on. */
  const servers = new Set<Deno.HttpServer<Deno.NetAddr>>();
  let current: Deno.HttpServer<Deno.NetAddr> | null = null;
  let backoff = RELISTEN_FIRST_MS;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const listen = (port: number): Deno.HttpServer<Deno.NetAddr> => {
    const s = Deno.serve({
      hostname: o.hostname,
      port,
      ...(o.tls ? { cert: o.tls.cert, key: o.tls.key } : {}),
      onListen: () => {},
      onError: () => new Response("internal error\n", { status: 500 }),
    }, accept);
    servers.add(s);
    // Never let `finished` reject unhandled: it ends the process, UDP side and all.
    s.finished.then(() => servers.delete(s), (err) => {
      servers.delete(s);
      if (closing || s !== current) return;
      current = null;
      count("listener_failed");
      log(
        "warn",
        `WebSocket listener on ${formatAddr(local)} failed: ${why(err)}; opening it again ` +
          `in ${backoff / 1000} s (open connections and UDP go on)`,
      );
      relisten();
    });
    return s;
  };
  const relisten = () => {
    const wait = backoff;
    backoff = Math.min(2 * backoff, RELISTEN_MAX_MS);
    retry = setTimeout(() => {
      retry = undefined;
      if (closing) return;
      try {
        current = listen(local.port);
        count("listener_reopened");
        log("info", `WebSocket listener on ${formatAddr(local)} open again`);
      } catch (err) {
        count("listener_failed");
        log(
          "warn",
          `Cannot open the WebSocket listener on ${formatAddr(local)} again: ${why(err)}; ` +
            `next try in ${backoff / 1000} s`,
        );
        relisten();
      }
    }, wait);
  };
  current = listen(o.port);
  const local: Addr = { host: current.addr.hostname, port: current.addr.port };

  return {
    local,
    tls: o.tls !== undefined,
    get open() {
      return limits.open;
    },
    counts,
    send(bytes, to) {
      const c = byKey.get(addrKey(to));
      if (!c || c.socket.readyState !== WebSocket.OPEN) return void count("send_no_connection");
      if (c.socket.bufferedAmount + bytes.length > maxUnsent) return void count("send_dropped");
      try {
        c.socket.send(bytes);
      } catch {
        return void count("send_error");
      }
      if (isRefusal(bytes)) return;
      const now = performance.now();
      limits.touch(c.id, now);
      rearm(now);
    },
    async close() {
      closing = true;
      alarm.clear();
      clearTimeout(retry);
      for (const c of byId.values()) shut(c, CLOSE.goingAway, "server stopping");
      // Upgraded connections can hold shutdown up; do not wait for a peer that never answers.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...servers].map((s) => s.shutdown())),
        new Promise<void>((r) => timer = setTimeout(r, 2000)),
      ]);
      clearTimeout(timer);
    },
  };
}
