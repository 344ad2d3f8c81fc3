/**
 * Runs NAT discovery (lib/nat/discovery.ts) on real UDP sockets: opens the fresh sockets the
 * machine asks for, sends what it says, sleeps until its next deadline, closes everything when
 * it is done. The NAT treats every socket of a host alike, so a run from fresh sockets tells a
 * peer how its NAT treats its main socket too.
 */
import type { Addr } from "../wire/addr.ts";
import { type NatAction, NatDiscovery, type NatReport, TIMEOUT_MS } from "../nat/discovery.ts";
import { Alarm } from "./alarm.ts";
import { openUdp, type Udp } from "./udp.ts";

export interface DiscoverOptions {
  /** The STUN server's primary address: an IP literal (see lib/net/resolve.ts). */
  server: Addr;
  /**
   * Also try the server's port + 1 when it names no OTHER-ADDRESS (default true): a p2pchat
   * server answers STUN there. Pass false for other STUN servers.
   */
  guessAltPort?: boolean;
  /** Give up on each request after this long (default TIMEOUT_MS); a run takes about twice. */
  timeoutMs?: number;
  /** Local address to bind the sockets to (default "::", dual stack, any port: udp.ts). */
  bindHost?: string;
  /** Aborting closes the sockets and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** This host's IP addresses: a public address among them means there is no NAT. */
function localHosts(): string[] {
  try {
    return Deno.networkInterfaces().map((i) => i.address);
  } catch {
    return []; // no --allow-sys: "natted" stays unknown
  }
}

/**
 * Finds out how the NAT in front of this host behaves (RFC 5780 tests against `server`).
 * Resolves with a report even when nothing answered (then `udp` is false); rejects only when
 * no socket can be opened or `signal` aborts.
 * @example
 * const nat = await discoverNat({ server: { host: "198.51.100.2", port: 8848 } });
 * if (nat.mapping === "endpoint-independent") console.log("easy NAT at", nat.public);
 */
export function discoverNat(o: DiscoverOptions): Promise<NatReport> {
  const machine = new NatDiscovery({
    server: o.server,
    guessAltPort: o.guessAltPort ?? true,
    timeoutMs: o.timeoutMs ?? TIMEOUT_MS,
    localHosts: localHosts(),
  });
  const bindHost = o.bindHost ?? "::";
  const sockets = new Map<number, Udp>();
  return new Promise<NatReport>((resolve, reject) => {
    let over = false;
    const alarm = new Alarm(() => step(machine.tick(performance.now())));
    const end = (outcome: () => void) => {
      if (over) return;
      over = true;
      alarm.clear();
      o.signal?.removeEventListener("abort", onAbort);
      for (const s of sockets.values()) s.close();
      outcome();
    };
    const onAbort = () => end(() => reject(o.signal!.reason));
    const open = (socket: number) => {
      const udp = openUdp(bindHost, 0, (bytes, from) => {
        if (!over) step(machine.handle(bytes, from, socket, performance.now()));
      });
      sockets.set(socket, udp);
      machine.opened(socket, udp.local);
    };
    function step(actions: NatAction[]): void {
      for (const a of actions) {
        if (over) return;
        if (a.type === "open_socket") {
          try {
            open(a.socket);
          } catch (e) {
            const why = e instanceof Error ? e.message : String(e);
            return end(() =>
              reject(new Error(`Cannot open a UDP socket for NAT discovery: ${why}`))
            );
          }
        } else if (a.type === "send") {
          sockets.get(a.socket)?.send(a.bytes, a.to);
        } else {
          return end(() => resolve(a.report));
        }
      }
      if (!over) alarm.set(machine.nextDeadline(), performance.now());
    }
    if (o.signal?.aborted) return reject(o.signal.reason);
    o.signal?.addEventListener("abort", onAbort);
    step(machine.start(performance.now()));
  });
}
