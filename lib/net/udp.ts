/**
 * The only place that touches UDP sockets. One receive buffer, reused; an explicit loop with
 * a try/catch around each receive, so an ICMP error or a bad datagram never ends it.
 */
import type { Addr } from "../wire/addr.ts";

export interface Udp {
  readonly local: Addr;
  send(bytes: Uint8Array, to: Addr): void;
  close(): void;
  /** Send failures (e.g. no route), counted rather than thrown. */
  readonly sendErrors: number;
}

/**
 * Binds `host:port` and calls `onPacket` for each datagram until closed. `onPacket` gets a view
 * into the shared buffer: copy what you keep.
 */
export function openUdp(
  host: string,
  port: number,
  onPacket: (bytes: Uint8Array, from: Addr) => void,
): Udp & { done: Promise<void> } {
  const conn = Deno.listenDatagram({ hostname: host, port, transport: "udp" });
  const local = conn.addr as Deno.NetAddr;
  let closed = false;
  let sendErrors = 0;
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
    send(bytes, to) {
      if (closed) return;
      conn.send(bytes, { transport: "udp", hostname: to.host, port: to.port }).catch(() => {
        sendErrors++;
      });
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
