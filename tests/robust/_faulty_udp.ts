/**
 * Faulty UDP sockets for in-process tests. PeerHost opens its sockets through lib/net/udp.ts,
 * which has no injection point, so this replaces `Deno.listenDatagram` for the duration of a
 * test: every socket opened meanwhile is a real loopback socket behind a wrapper that consults
 * the faults registered for its local port, on every send and every receive.
 */

/** What happens to one send: it goes, fails (the promise rejects), throws, or goes late. */
export type SendFate = "ok" | "reject" | "throw" | { delayMs: number };

export interface Faults {
  send?: (to: Deno.NetAddr) => SendFate;
  /** "reject": this receive call fails (the datagram waiting, if any, stays queued). */
  receive?: () => "ok" | "reject";
}

export interface FaultySockets {
  /** Faults for the socket bound to `port` (replacing earlier ones); null for none. */
  set(port: number, faults: Faults | null): void;
  /** Sends that were failed, thrown, delayed; receives failed. */
  readonly counts: { reject: number; throw: number; delay: number; receive: number };
  /** Puts the real `Deno.listenDatagram` back. */
  restore(): void;
}

export function installFaultySockets(): FaultySockets {
  const byPort = new Map<number, Faults>();
  const counts = { reject: 0, throw: 0, delay: 0, receive: 0 };
  const real = Deno.listenDatagram;
  const patched = (opts: Deno.UdpListenOptions & { transport: "udp" }) => {
    const conn = real(opts);
    const port = (conn.addr as Deno.NetAddr).port;
    const wrapper = {
      get addr() {
        return conn.addr;
      },
      async receive(buf?: Uint8Array): Promise<[Uint8Array, Deno.Addr]> {
        if (byPort.get(port)?.receive?.() === "reject") {
          counts.receive++;
          await new Promise((r) => setTimeout(r, 0)); // an error comes back from the runtime
          throw new Error("injected receive failure");
        }
        return await conn.receive(buf);
      },
      send(p: Uint8Array, addr: Deno.Addr): Promise<number> {
        const fate = byPort.get(port)?.send?.(addr as Deno.NetAddr) ?? "ok";
        if (fate === "throw") {
          counts.throw++;
          throw new Error("injected synchronous send failure");
        }
        if (fate === "reject") {
          counts.reject++;
          return new Promise((_, no) =>
            setTimeout(() => no(new Error("injected send failure")), 0)
          );
        }
        if (typeof fate === "object") {
          counts.delay++;
          // The bytes are not copied: a caller that reuses its buffer would show here.
          return new Promise((r) => setTimeout(r, fate.delayMs)).then(() => conn.send(p, addr));
        }
        return conn.send(p, addr);
      },
      close: () => conn.close(),
      [Symbol.asyncIterator]: () => conn[Symbol.asyncIterator](),
    };
    return wrapper as unknown as Deno.DatagramConn;
  };
  Object.defineProperty(Deno, "listenDatagram", {
    value: patched,
    writable: true,
    configurable: true,
  });
  return {
    set(port, faults) {
      if (faults) byPort.set(port, faults);
      else byPort.delete(port);
    },
    counts,
    restore() {
      Object.defineProperty(Deno, "listenDatagram", {
        value: real,
        writable: true,
        configurable: true,
      });
    },
  };
}
