/**
 * The port mapper's edge: the only code here that opens sockets or reads the system. One UDP
 * request/answer exchange with resends, one HTTP exchange, the route table, the interfaces.
 * Everything is bounded by an AbortSignal and reports failure as a value, never by throwing.
 */
import { decodeResponse, encodeRequest, type HttpRequest, type HttpResponse } from "./http.ts";
import { MAX_HTTP_RESPONSE } from "./http.ts";
import { defaultGateway, type Iface } from "./route.ts";
import type { Result } from "../wire/result.ts";

export interface Datagram {
  hostname: string;
  port: number;
  bytes: Uint8Array;
}

/** Largest datagram we read; PCP's limit is 1100 bytes, SSDP answers are well under this. */
const RECV_BUFFER = 4096;

/**
 * Sends `out` (all of it) from a fresh socket on an ephemeral port, again at each offset in
 * `resendMs`, and reads answers until `accept` returns a value, `signal` aborts, or sending
 * fails for good (e.g. no route). Returns that value, or null.
 */
export async function udpExchange<T>(opts: {
  out: Datagram[];
  accept: (bytes: Uint8Array, from: { hostname: string; port: number }) => T | undefined;
  resendMs?: number[];
  signal: AbortSignal;
}): Promise<T | null> {
  if (opts.signal.aborted) return null;
  let sock: Deno.DatagramConn;
  try {
    sock = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
  } catch {
    return null;
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      sock.close();
    } catch {
      // already closed
    }
  };
  const timers: ReturnType<typeof setTimeout>[] = [];
  opts.signal.addEventListener("abort", close, { once: true });
  // Resolves false when not a single datagram could be sent (no route, no interface).
  const sendAll = async (): Promise<boolean> => {
    let any = false;
    for (const d of opts.out) {
      try {
        await sock.send(d.bytes, { transport: "udp", hostname: d.hostname, port: d.port });
        any = true;
      } catch {
        // this target is unreachable; others may not be
      }
    }
    return any;
  };
  try {
    if (!(await sendAll())) return null;
    for (const ms of opts.resendMs ?? []) {
      timers.push(setTimeout(() => void (!closed && sendAll()), ms));
    }
    const buf = new Uint8Array(RECV_BUFFER);
    while (!closed) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await sock.receive(buf);
      } catch {
        // closed by the abort, or an ICMP error surfaced; the latter must not end the wait
        if (closed) return null;
        continue;
      }
      const [bytes, addr] = got;
      if (addr.transport !== "udp") continue;
      const v = opts.accept(bytes.slice(), { hostname: addr.hostname, port: addr.port });
      if (v !== undefined) return v;
    }
    return null;
  } finally {
    for (const t of timers) clearTimeout(t);
    opts.signal.removeEventListener("abort", close);
    close();
  }
}

/** One HTTP request over a fresh TCP connection, read until the server closes. */
export async function httpExchange(
  req: HttpRequest,
  signal: AbortSignal,
): Promise<Result<HttpResponse>> {
  if (signal.aborted) return { ok: false, reason: "aborted" };
  const port = Number(req.url.port || 80);
  let conn: Deno.TcpConn | null = null;
  const abort = () => {
    try {
      conn?.close();
    } catch {
      // already closed
    }
    conn = null;
  };
  signal.addEventListener("abort", abort, { once: true });
  try {
    const c = await Deno.connect({ hostname: req.url.hostname, port, transport: "tcp" });
    if (signal.aborted) {
      c.close();
      return { ok: false, reason: "aborted" };
    }
    conn = c;
    const out = encodeRequest(req);
    for (let off = 0; off < out.length;) off += await c.write(out.subarray(off));
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await c.read(buf);
      if (n === null) break;
      total += n;
      if (total > MAX_HTTP_RESPONSE) return { ok: false, reason: "too-long" };
      chunks.push(buf.slice(0, n));
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const ch of chunks) {
      all.set(ch, at);
      at += ch.length;
    }
    return decodeResponse(all);
  } catch {
    return { ok: false, reason: signal.aborted ? "aborted" : "connection-failed" };
  } finally {
    signal.removeEventListener("abort", abort);
    abort();
  }
}

/** The default gateway on Linux, or null (not Linux, no permission, no default route). */
export async function systemGateway(): Promise<string | null> {
  try {
    return defaultGateway(await Deno.readTextFile("/proc/net/route"))?.gateway ?? null;
  } catch {
    return null;
  }
}

/** This host's interfaces, or none when the permission or the API is missing. */
export function systemInterfaces(): Iface[] {
  try {
    return Deno.networkInterfaces();
  } catch {
    return [];
  }
}
