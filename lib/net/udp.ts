/**
 * The only place that touches UDP sockets. A few receives are kept outstanding at once, each
 * with its own buffer, reused; an explicit loop per receive with a try/catch around it, so an
 * ICMP error or a bad datagram never ends it. Sends are fire-and-forget with a bound on how
 * many may be unfinished at once.
 *
 * Dual stack: a socket on "::" takes both families where the OS allows it (Linux's default,
 * IPV6_V6ONLY off), and falls back to "0.0.0.0" where IPv6 sockets cannot be made. IPv4
 * arriving on it is reported as plain IPv4 (not `::ffff:a.b.c.d`), and IPv4 destinations are
 * sent to as v4-mapped, so everything above sees IPv4 as IPv4 whatever the socket's family.
 */
import type { Addr } from "../wire/addr.ts";
import { mmsgUsable, openMmsgUdp } from "./mmsg.ts";

/**
 * Sends not yet completed by the socket, at most: when egress is slower than we produce, later
 * datagrams are dropped (and counted) rather than queued without bound. UDP may drop anyway,
 * and every sender above retransmits; 1024 datagrams of at most 1200 bytes is about 1.2 MB.
 */
export const MAX_IN_FLIGHT_SENDS = 1024;

/**
 * Receives outstanding on each socket (Deno.DatagramConn; `receive()` may be called again before
 * an earlier call is done). With one, a datagram that arrives while the event loop is between
 * ops waits for the next receive to be asked for. Measured (bench/README.md): under a flood that
 * keeps the socket full it makes no difference (1, 2, 4, 8: 62k, 56k, 56k, 55k answers/s, within
 * the noise of a shared machine); batched system calls (mmsg.ts) are what raise the rate.
 */
export const UDP_RECEIVES = 4;

/** One receive buffer's size: the largest UDP payload, so nothing is ever cut short. */
const RECEIVE_BUFFER = 65536;

/** The host that binds both families (see the module comment); "0.0.0.0" where IPv6 is absent. */
export const DUAL_STACK_HOST = "::";

const MAPPED_PREFIX = "::ffff:";

/**
 * A received host as the layers above want it: a v4-mapped IPv6 address (`::ffff:1.2.3.4`, as a
 * dual-stack socket reports IPv4 senders) becomes the IPv4 address, anything else is kept.
 * Deno prints IPv6 as RFC 5952 text, which is what lib/wire/addr.ts's ipFromBytes writes too,
 * so other IPv6 hosts compare equal to decoded ones as they are.
 *
 * @example
 * unmapHost("::ffff:198.51.100.2"); // "198.51.100.2"
 */
export function unmapHost(host: string): string {
  // Deno writes a mapped address in lower case with a dotted tail; one check, no parse.
  return host.startsWith(MAPPED_PREFIX) && host.includes(".", MAPPED_PREFIX.length)
    ? host.slice(MAPPED_PREFIX.length)
    : host;
}

/** Whether `e` says the address family is unsupported (an IPv6 socket where IPv6 is off). */
function familyUnsupported(e: unknown): boolean {
  // EAFNOSUPPORT (97 on Linux), EADDRNOTAVAIL for "::" without any IPv6, EPROTONOSUPPORT.
  return e instanceof Error && /os error (97|99|93)\b|family not supported/i.test(e.message);
}

/**
 * Binds `host`; for DUAL_STACK_HOST, falls back to "0.0.0.0" when the OS has no IPv6 sockets
 * (a kernel without IPv6). A port already in use is reported as it is, not retried elsewhere.
 */
function listen(host: string, port: number): Deno.DatagramConn {
  try {
    return Deno.listenDatagram({ hostname: host, port, transport: "udp" });
  } catch (e) {
    if (host !== DUAL_STACK_HOST || !familyUnsupported(e)) throw e;
    return Deno.listenDatagram({ hostname: "0.0.0.0", port, transport: "udp" });
  }
}

export interface Udp {
  readonly local: Addr;
  /** Whether it batches system calls (lib/net/mmsg.ts) rather than one runtime call a datagram. */
  readonly batched?: boolean;
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
  /** Receives outstanding at once (1-64), each with its own buffer; default UDP_RECEIVES. */
  receives?: number;
  /**
   * Batched system calls (lib/net/mmsg.ts) where they are usable: Linux, the FFI permission,
   * an IP literal `host`; Deno.DatagramConn otherwise. A batch's sends leave at the end of the task.
   */
  batched?: boolean;
}

/**
 * Binds `host:port` and calls `onPacket` for each datagram until closed. `onPacket` gets a view
 * into one of the receive buffers, valid until it returns (the buffer then takes the next
 * datagram): copy what you keep. Datagrams may reach `onPacket` slightly out of arrival order
 * when several receives complete together; UDP promises no order anyway. `host` "::" is dual
 * stack (see DUAL_STACK_HOST); `from` is never v4-mapped.
 *
 * @example
 * const udp = openUdp("::", 8848, (bytes, from) => console.log(bytes.length, from));
 * udp.send(new Uint8Array([1, 2, 3]), { host: "127.0.0.1", port: 9000 });
 */
export function openUdp(
  host: string,
  port: number,
  onPacket: (bytes: Uint8Array, from: Addr) => void,
  opts: UdpOptions = {},
): Udp & { done: Promise<void> } {
  const maxInFlight = opts.maxInFlight ?? MAX_IN_FLIGHT_SENDS;
  if (opts.batched && mmsgUsable(host)) {
    try {
      return openMmsgUdp(host, port, onPacket, { maxQueued: maxInFlight });
    } catch {
      // The port taken, ...: the runtime's sockets below report it in their usual words.
    }
  }
  const receives = opts.receives ?? UDP_RECEIVES;
  if (!Number.isInteger(receives) || receives < 1 || receives > 64) {
    throw new RangeError(`Cannot open a UDP socket: receives must be 1 to 64, not ${receives}`);
  }
  const conn = listen(host, port);
  const local = conn.addr as Deno.NetAddr;
  // An IPv6 socket reaches IPv4 hosts at their v4-mapped address. Measured: Deno 2 also
  // accepts a plain IPv4 destination on a "::" socket, but mapping it explicitly does not rely
  // on that, and costs one string per send to an IPv4 host.
  const mapV4 = local.hostname.includes(":");
  let closed = false;
  let sendErrors = 0;
  let sendDropped = 0;
  let inFlight = 0;
  // Shared by every send, so a send allocates no callbacks of its own.
  const sendDone = () => void inFlight--;
  const sendFailed = () => {
    inFlight--;
    sendErrors++;
  };
  const loop = async (buf: Uint8Array) => {
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
        onPacket(got[0], { host: unmapHost(a.hostname), port: a.port });
      } catch (e) {
        // A handler bug must not kill the socket loop; report it and go on.
        console.error(`internal error handling a datagram: ${e instanceof Error ? e.message : e}`);
      }
    }
  };
  const loops: Promise<void>[] = [];
  for (let i = 0; i < receives; i++) loops.push(loop(new Uint8Array(RECEIVE_BUFFER)));
  return {
    local: { host: unmapHost(local.hostname), port: local.port },
    done: Promise.all(loops).then(() => {}),
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
        const hostname = mapV4 && !to.host.includes(":") ? MAPPED_PREFIX + to.host : to.host;
        sent = conn.send(bytes, { transport: "udp", hostname, port: to.port });
      } catch {
        sendErrors++;
        return;
      }
      inFlight++;
      sent.then(sendDone, sendFailed);
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
