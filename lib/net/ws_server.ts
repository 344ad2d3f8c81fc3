/**
 * The server's WebSocket endpoint, for peers whose networks block UDP: `Deno.serve` with
 * `Deno.upgradeWebSocket` on path /p2pchat, optionally over TLS. Each binary frame carries
 * exactly one wire message, the same bytes as a UDP datagram; anything else closes the
 * connection. Who may connect and when a connection must go is decided by WsLimits
 * (ws_limits.ts); this file only carries it out, with one timer for the earliest deadline.
 *
 * A connection is known to the caller by an Addr with `tcp: true` (the remote IP and TCP
 * port), so it never collides with a UDP endpoint of the same ip:port. Behind a reverse proxy
 * (`trustProxy`), the remote IP is the client's, as the proxy reports it in X-Forwarded-For
 * (lib/server/forwarded.ts), so per-IP caps count clients rather than the proxy; the port is
 * the reported one if any, else the proxy's end of the connection. Either way no two open
 * connections share an Addr: a taken one moves to the next free port number.
 *
 * Known limits of Deno's server (measured, tests/e2e/ws_server_test.ts): no deadline for the
 * request head (a slow-loris keeps a connection and its descriptor as long as it trickles;
 * the head is capped at about 400 KB, beyond which it gets 400), no hook before the head is
 * complete (so the caps below count upgraded connections only), and a message is read whole,
 * up to 64 MiB, before it can be refused. A connection the server closes stays open for as
 * long as the client neither answers the close nor hangs up (denoland/deno#27924): it keeps
 * counting against the caps, so such clients cost a bounded number of slots, never memory
 * without bound.
 */
import { type Addr, addrKey, ipFromBytes } from "../wire/addr.ts";
import { MAX_DATAGRAM } from "../wire/sizes.ts";
import { ipBytes } from "../server/ip.ts";
import { type Cidr, clientAddress } from "../server/forwarded.ts";
import { Alarm } from "./alarm.ts";
import { type WsLimitConfig, WsLimits } from "./ws_limits.ts";

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
 * Deno's WebSocket ping interval (`idleTimeout`, s): a connection that does not answer a ping
 * within it is closed. A client that stopped reading stops answering, so it goes within two.
 */
export const PING_S = 30;

/** Close codes (RFC 6455 §7.4.1). */
export const CLOSE = {
  /** Server shutting down. */
  goingAway: 1001,
  /** A text frame: the endpoint carries binary frames only. */
  unsupportedData: 1003,
  /** No first message in time, or silent for too long. */
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
}

export interface WsServer {
  /** Where it listens (no `tcp` flag: this is a listening socket, not a peer). */
  readonly local: Addr;
  readonly tls: boolean;
  /** Open connections. */
  readonly open: number;
  /**
   * What happened, by reason: refusals (`not_found`, `upgrade_required`, `per_ip`, `total`,
   * `bad_upgrade`), closes (`text_frame`, `oversized_frame`, `first_message_timeout`,
   * `idle_timeout`), sends (`send_dropped`, `send_no_connection`, `send_error`), and with
   * `trustProxy`, upgrades from a trusted proxy: `forwarded` (client address from
   * X-Forwarded-For), `forwarded_missing` (no header), `forwarded_malformed` (unreadable:
   * the proxy's address is used), and `port_moved` (the Addr was taken).
   */
  readonly counts: Map<string, number>;
  /** Sends `bytes` on the connection `to` names (`to.tcp` set), or drops and counts them. */
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

/**
 * Listens for WebSocket connections; calls `onMessage` with each binary frame's bytes (its
 * own copy) and the connection's Addr (`tcp: true`). Throws if the port cannot be bound or
 * the TLS certificate or key is unusable. `onMessage` throwing is reported, never fatal.
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
  const maxUnsent = o.maxUnsent ?? MAX_UNSENT;
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
  });

  const trusted = o.trustProxy ?? [];
  /**
   * The connection's Addr: the TCP peer, or the client a trusted proxy names. Forwarded
   * clients can share a host:port with another connection (two proxies' ports, a port the
   * proxy reported): the next port number no open connection uses is taken instead. Open
   * connections are at most maxConnections, so the search ends.
   */
  const uniqueAddr = (remote: Deno.NetAddr, headers: Headers): Addr => {
    const peer = { host: plainHost(remote.hostname), port: remote.port };
    const client = clientAddress(peer, headers.get("x-forwarded-for"), trusted);
    if (client.source !== "peer") {
      count(client.source === "forwarded" ? "forwarded" : `forwarded_${client.source}`);
    }
    const addr: Addr = { host: client.host, port: client.port, tcp: true };
    if (byKey.has(addrKey(addr))) count("port_moved");
    while (byKey.has(addrKey(addr))) addr.port = addr.port % 65535 + 1;
    return addr;
  };

  const accept = (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response => {
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
    const addr = uniqueAddr(info.remoteAddr, req.headers);
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
      const now = performance.now();
      try {
        if (!(e.data instanceof ArrayBuffer)) {
          count("text_frame");
          return shut(c, CLOSE.unsupportedData, "binary frames only");
        }
        if (e.data.byteLength > MAX_FRAME) {
          count("oversized_frame");
          return shut(c, CLOSE.tooBig, `frames of at most ${MAX_FRAME} bytes`);
        }
        limits.message(c.id, now);
        onMessage(new Uint8Array(e.data), c.addr);
      } catch (err) {
        // A handler bug must not kill the endpoint; report it and go on.
        console.error(
          `internal error handling a WebSocket message: ${
            err instanceof Error ? err.message : err
          }`,
        );
      } finally {
        rearm(now);
      }
    };
    c.socket.onerror = () => {}; // a close event follows
    c.socket.onclose = () => {
      limits.closed(c.id);
      byId.delete(c.id);
      if (byKey.get(c.key) === c) byKey.delete(c.key);
      rearm(performance.now());
    };
    return up.response;
  };

  const server = Deno.serve({
    hostname: o.hostname,
    port: o.port,
    ...(o.tls ? { cert: o.tls.cert, key: o.tls.key } : {}),
    onListen: () => {},
    onError: () => new Response("internal error\n", { status: 500 }),
  }, accept);
  const local = server.addr;

  return {
    local: { host: local.hostname, port: local.port },
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
        count("send_error");
      }
    },
    async close() {
      closing = true;
      alarm.clear();
      for (const c of byId.values()) shut(c, CLOSE.goingAway, "server stopping");
      // Upgraded connections can hold shutdown up; do not wait for a peer that never answers.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        server.shutdown(),
        new Promise<void>((r) => timer = setTimeout(r, 2000)),
      ]);
      clearTimeout(timer);
    },
  };
}
