/**
 * The only place that touches UDP sockets. One receive buffer, reused; an explicit loop with
 * a try/catch around each receive, so an ICMP error or a bad datagram never ends it. Sends are
 * fire-and-forget with a bound on how many may be unfinished at once.
 */
import type { Addr } from "../wire/addr.ts";

/**
 * Sends not yet completed by the socket, at most: when egress is slower than we produce, later
 * datagrams are dropped (and counted) rather than queued without bound. UDP may drop anyway,
 * and every sender above retransmits; 1024 datagrams of at most 1200 bytes is about 1.2 MB.
 */
export const MAX_IN_FLIGHT_SENDS = 1024;

export interface Udp {
  readonly local: Addr;
  /** Sends `bytes` (kept until sent: do not change them), or drops them if `inFlight` is full. */
  send(bytes: Uint8Array, to: Addr): void;
  close(): void;
  /** Send failures (e.g. no route), counted rather than thrown. */
  readonly sendErrors: number;
  /** Datagrams dropped because `maxInFlight` sends were already unfinished. */
  readonly sendDropped: number;
  /** Sends started and not yet finished (never more than `maxInFlight`). */
  readonly inFlight: number;
}

export interface UdpOptions {
  /** Unfinished sends allowed at once; default MAX_IN_FLIGHT_SENDS. */
  maxInFlight?: number;
}

/**
 * Binds `host:port` and calls `onPacket` for each datagram until closed. `onPacket` gets a view
 * into the shared buffer: copy what you keep.
 */
export function openUdp(
  host: string,
  port: number,
  onPacket: (bytes: Uint8Array, from: Addr) => void,
  opts: UdpOptions = {},
): Udp & { done: Promise<void> } {
  const maxInFlight = opts.maxInFlight ?? MAX_IN_FLIGHT_SENDS;
  const conn = Deno.listenDatagram({ hostname: host, port, transport: "udp" });
  const local = conn.addr as Deno.NetAddr;
  let closed = false;
  let sendErrors = 0;
  let sendDropped = 0;
  let inFlight = 0;
  const buf = new Uint8Array(65536);
  const loop = async () => {
    while (!closed) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await conn.receive(buf);
      } catch (e) {
        if (closed || e instanceof Deno.errors.BadResource) return;
        continue; // ICMP port unreachable and friends: keep going
      }
      const a = got[1] as Deno.NetAddr;
      try {
        onPacket(got[0], { host: a.hostname, port: a.port });
      } catch (e) {
        // A handler bug must not kill the socket loop; report it and go on.
        console.error(`internal error handling a datagram: ${e instanceof Error ? e.message : e}`);
      }
    }
  };
  return {
    local: { host: local.hostname, port: local.port },
    done: loop(),
    get sendErrors() {
      return sendErrors;
    },
    get sendDropped() {
      return sendDropped;
    },
    get inFlight() {
      return inFlight;
    },
    send(bytes, to) {
      if (closed) return;
      if (inFlight >= maxInFlight) {
        sendDropped++;
        return;
      }
      let sent: Promise<number>;
      try {
        sent = conn.send(bytes, { transport: "udp", hostname: to.host, port: to.port });
      } catch {
        sendErrors++;
        return;
      }
      inFlight++;
      sent.then(
        () => inFlight--,
        () => {
          inFlight--;
          sendErrors++;
        },
      );
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}
