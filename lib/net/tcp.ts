/**
 * The peer's TCP connections for TCP hole punching (lib/peer/tcp_punch.ts): each connects from
 * a given local port (`node:net`, whose `localPort` binds before connecting; Deno.connect
 * cannot) and carries wire messages framed as a 2-byte big-endian length and the message, the
 * same bytes as a UDP datagram. Each connection is named by `via`, like an extra UDP socket, so
 * the agent sends through it the same way. Nothing here throws past its callbacks: a bad frame,
 * a reset or a failed connect closes that connection and reports it through `onState`.
 */
import * as net from "node:net";
import type { Addr } from "../wire/addr.ts";
import { MAX_DATAGRAM } from "../wire/sizes.ts";

/** Largest framed message accepted or sent: the largest datagram a decoder accepts. */
export const MAX_TCP_MESSAGE = MAX_DATAGRAM;
/** Bytes of the length prefix. */
export const TCP_LENGTH_LEN = 2;
/**
 * Unsent bytes a connection may hold; beyond it sends are dropped and counted, as UDP's bounded
 * in-flight sends are (every sender above retransmits). 256 KiB: a peer that stops reading
 * cannot grow our memory, and a second of full-rate chat fits many times over.
 */
export const MAX_TCP_UNSENT = 256 * 1024;

export interface TcpSocketsOptions {
  /** Local address to connect from; "0.0.0.0" or "::" for any (of the remote's family). */
  bindHost: string;
  /** A whole message from connection `via`; `from` is its remote end (`tcp: true`). */
  onPacket(bytes: Uint8Array, from: Addr, via: number): void;
  /** Connection `via` completed (`open`), or failed or closed (`closed`, once, last). */
  onState(via: number, state: "open" | "closed"): void;
  maxUnsent?: number;
}

interface Conn {
  sock: net.Socket;
  remote: Addr;
  open: boolean;
  /** A partial frame's bytes so far (never more than one frame's worth). */
  buf: Uint8Array;
  have: number;
}

/** The address to connect from: a wildcard `bindHost` becomes the remote's family's wildcard. */
function localFor(bindHost: string, remote: string): string {
  if (bindHost !== "::" && bindHost !== "0.0.0.0") return bindHost;
  return remote.includes(":") ? "::" : "0.0.0.0";
}

/**
 * @example
 * const tcp = new TcpSockets({
 *   bindHost: "0.0.0.0",
 *   onPacket: (bytes, from, via) => agent.handle(bytes, from, now, out, via),
 *   onState: (via, state) => agent.onTcp(via, state, now, out),
 * });
 * tcp.open(7, 40000, { host: "203.0.113.11", port: 40000, tcp: true });
 */
export class TcpSockets {
  private conns = new Map<number, Conn>();
  /** Messages dropped: sent before the connection was up, or beyond `maxUnsent`. */
  dropped = 0;
  /** Connections closed for a frame of length 0 or above MAX_TCP_MESSAGE. */
  badFrames = 0;

  constructor(private readonly opts: TcpSocketsOptions) {}

  /** Whether `via` names one of our connections (else it is some other socket's name). */
  has(via: number): boolean {
    return this.conns.has(via);
  }

  /** Connects from `localPort` to `remote`; a `via` already in use is left alone. */
  open(via: number, localPort: number, remote: Addr): void {
    if (this.conns.has(via)) return;
    let sock: net.Socket;
    try {
      sock = net.connect({
        host: remote.host,
        port: remote.port,
        localAddress: localFor(this.opts.bindHost, remote.host),
        localPort,
      });
    } catch {
      // Reported later, as a failed connect is: never from inside the caller's own call.
      queueMicrotask(() => this.report(via, "closed"));
      return;
    }
    const c: Conn = {
      sock,
      remote: { host: remote.host, port: remote.port, tcp: true },
      open: false,
      buf: new Uint8Array(TCP_LENGTH_LEN + MAX_TCP_MESSAGE),
      have: 0,
    };
    this.conns.set(via, c);
    sock.setNoDelay(true);
    sock.on("connect", () => {
      if (this.conns.get(via) !== c) return;
      c.open = true;
      this.report(via, "open");
    });
    sock.on("data", (chunk: Uint8Array) => {
      if (this.conns.get(via) === c) this.read(via, c, chunk);
    });
    // "close" follows "error"; one report, when the socket is really gone.
    sock.on("error", () => {});
    sock.on("close", () => {
      if (this.conns.get(via) !== c) return;
      this.conns.delete(via);
      this.report(via, "closed");
    });
  }

  /** Sends one message on `via`: dropped (and counted) if not up yet, too big, or backed up. */
  send(via: number, bytes: Uint8Array): void {
    const c = this.conns.get(via);
    const max = this.opts.maxUnsent ?? MAX_TCP_UNSENT;
    if (!c?.open || bytes.length > MAX_TCP_MESSAGE || c.sock.writableLength > max) {
      this.dropped++;
      return;
    }
    const frame = new Uint8Array(TCP_LENGTH_LEN + bytes.length);
    frame[0] = bytes.length >> 8;
    frame[1] = bytes.length & 0xff;
    frame.set(bytes, TCP_LENGTH_LEN);
    try {
      c.sock.write(frame);
    } catch {
      this.dropped++;
    }
  }

  /** Closes `via` without reporting it (the caller asked). */
  close(via: number): void {
    const c = this.conns.get(via);
    if (!c) return;
    this.conns.delete(via);
    c.sock.destroy();
  }

  closeAll(): void {
    for (const via of [...this.conns.keys()]) this.close(via);
  }

  /** Splits `chunk` into frames; a bad length closes the connection. */
  private read(via: number, c: Conn, chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      if (c.have < TCP_LENGTH_LEN) {
        c.buf[c.have++] = chunk[off++]!;
        if (c.have === TCP_LENGTH_LEN) {
          const len = (c.buf[0]! << 8) | c.buf[1]!;
          if (len === 0 || len > MAX_TCP_MESSAGE) {
            this.badFrames++;
            this.close(via);
            return this.report(via, "closed");
          }
        }
        continue;
      }
      const len = (c.buf[0]! << 8) | c.buf[1]!;
      const want = TCP_LENGTH_LEN + len - c.have;
      const take = Math.min(want, chunk.length - off);
      c.buf.set(chunk.subarray(off, off + take), c.have);
      c.have += take;
      off += take;
      if (c.have === TCP_LENGTH_LEN + len) {
        c.have = 0;
        // A copy: the agent may keep it, and the buffer takes the next frame.
        const msg = c.buf.slice(TCP_LENGTH_LEN, TCP_LENGTH_LEN + len);
        try {
          this.opts.onPacket(msg, c.remote, via);
        } catch (e) {
          console.error(
            `internal error handling a TCP message: ${e instanceof Error ? e.message : e}`,
          );
        }
        // The handler may have closed it.
        if (this.conns.get(via) !== c) return;
      }
    }
  }

  private report(via: number, state: "open" | "closed"): void {
    try {
      this.opts.onState(via, state);
    } catch (e) {
      console.error(`internal error handling a TCP state: ${e instanceof Error ? e.message : e}`);
    }
  }
}
