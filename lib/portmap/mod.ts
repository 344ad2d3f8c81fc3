/**
 * Port mapping: ask the gateway to forward a public UDP port to our socket, with PCP
 * (RFC 6887), NAT-PMP (RFC 6886) or UPnP IGD v1/v2, keep the lease renewed, delete it on stop.
 *
 * Discovery is bounded and parallel: every protocol's probe (PCP ANNOUNCE, NAT-PMP external
 * address, SSDP search) gets `timeoutMs`, all at once, and none of them creates anything on the
 * gateway. Then the best protocol that answered (PCP, NAT-PMP, UPnP) maps, falling back to the
 * next that answered if it is refused. One mapping at a time: two protocols of one gateway
 * (miniupnpd speaks all three) would map the same port twice, and deleting the loser could
 * delete the winner. Without a gateway the probes fail at once or after `timeoutMs`.
 *
 * @example
 * const pm = new PortMapper({ internalPort: udp.port, onChange: (m) => console.log(m) });
 * const m = await pm.start(); // null: no gateway would map
 * if (m) console.log(`reachable at ${m.external.host}:${m.external.port} via ${m.protocol}`);
 * await pm.stop(); // deletes the mapping
 */
import { systemGateway, systemInterfaces } from "./_io.ts";
import { DEFAULT_LEASE_CONFIG, LeaseClock, type LeaseConfig } from "./lease.ts";
import { NatPmpClient } from "./natpmp_client.ts";
import { PcpClient } from "./pcp_client.ts";
import { guessGateways, localAddressFor } from "./route.ts";
import type { ClientContext, MapperClient, Mapping, Protocol } from "./types.ts";
import { PROTOCOLS } from "./types.ts";
import { UpnpClient } from "./upnp_client.ts";

export type { Mapping, Protocol } from "./types.ts";
export { PROTOCOLS } from "./types.ts";

/** How long each protocol's discovery may take: a LAN gateway answers in a few ms. */
export const DEFAULT_TIMEOUT_MS = 250;
/** Each request's limit once a gateway has answered (description, SOAP, MAP). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 1000;
/** Lease we ask for; renewed at half-time. One hour, as miniupnpc and most clients ask. */
export const DEFAULT_LEASE_SEC = 3600;
/** How long stop() may spend deleting the mapping before it gives up (the lease then ends it). */
export const DEFAULT_STOP_TIMEOUT_MS = 1000;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface PortMapperOptions {
  /** The local UDP port to map (our socket's, bound on all interfaces). */
  internalPort: number;
  /**
   * The NAT-PMP/PCP server. Default: the default route's gateway from /proc/net/route, or,
   * where that cannot be read (Deno allows it only with --allow-all), the `.1` of each LAN
   * interface's subnet (see `guessGateways`). null: none (UPnP multicast only).
   */
  gateway?: string | null;
  /** Protocols to try, in order of preference; default all (pcp, natpmp, upnp). */
  protocols?: readonly Protocol[];
  timeoutMs?: number;
  requestTimeoutMs?: number;
  stopTimeoutMs?: number;
  leaseSec?: number;
  /** Our LAN address as gateways see it; default: the interface address on the gateway's subnet. */
  localAddress?: string;
  /** Debug lines ("pcp: NOT_AUTHORIZED", ...). */
  log?: (msg: string) => void;
  /**
   * Called when the mapping changes after start() resolved: a renewal got another address or
   * port, the lease ran out (null), or a later discovery found one. Not called by stop().
   */
  onChange?: (m: Mapping | null) => void;
  /** For tests: the clock (ms), randomness, lease intervals, and the protocol clients. */
  now?: () => number;
  random?: (n: number) => Uint8Array;
  lease?: Partial<LeaseConfig>;
  clients?: (ctx: ClientContext) => MapperClient[];
}

const FACTORIES: Record<Protocol, (ctx: ClientContext) => MapperClient> = {
  pcp: (ctx) => new PcpClient(ctx),
  natpmp: (ctx) => new NatPmpClient(ctx),
  upnp: (ctx) => new UpnpClient(ctx),
};

function sameMapping(a: Mapping, b: Mapping): boolean {
  return a.protocol === b.protocol && a.external.host === b.external.host &&
    a.external.port === b.external.port;
}

export class PortMapper {
  readonly #o: PortMapperOptions;
  readonly #now: () => number;
  readonly #lease: LeaseClock;
  #winner: MapperClient | null = null;
  #mapping: Mapping | null = null;
  #starting: Promise<Mapping | null> | null = null;
  #busy: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #probes = new AbortController();
  #stopped = false;

  constructor(opts: PortMapperOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#lease = new LeaseClock({ ...DEFAULT_LEASE_CONFIG, ...opts.lease });
  }

  /** The mapping held now, or null. */
  get mapping(): Mapping | null {
    return this.#mapping;
  }

  #log(msg: string): void {
    this.#o.log?.(`portmap: ${msg}`);
  }

  /**
   * Finds a gateway and maps the port; resolves to the mapping or null (never rejects). Then
   * keeps it renewed until {@link stop}. Calling it again returns the same promise.
   */
  start(): Promise<Mapping | null> {
    if (this.#stopped) return Promise.resolve(null);
    this.#starting ??= this.#discover().then((m) => {
      if (!m && !this.#stopped) this.#lease.lost(this.#now());
      this.#arm();
      return m;
    });
    return this.#starting;
  }

  async #context(): Promise<ClientContext> {
    const o = this.#o;
    let gateways: string[];
    if (o.gateway !== undefined) gateways = o.gateway ? [o.gateway] : [];
    else {
      const gw = await systemGateway();
      gateways = gw ? [gw] : guessGateways(systemInterfaces());
    }
    return {
      internalPort: o.internalPort,
      gateways,
      localAddress: (peer) => {
        if (o.localAddress) return o.localAddress;
        const ifaces = systemInterfaces();
        return localAddressFor(peer, ifaces) ??
          ifaces.find((i) => i.family === "IPv4" && !i.address.startsWith("127."))?.address ??
          null;
      },
      timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      requestTimeoutMs: o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      random: o.random ?? ((n) => crypto.getRandomValues(new Uint8Array(n))),
      log: (msg) => this.#log(msg),
    };
  }

  async #discover(): Promise<Mapping | null> {
    const t0 = this.#now();
    const ctx = await this.#context();
    this.#log(`NAT-PMP/PCP servers to ask: ${ctx.gateways.join(", ") || "none"}`);
    const clients = this.#o.clients?.(ctx) ??
      (this.#o.protocols ?? PROTOCOLS).map((p) => FACTORIES[p](ctx));
    const probes = new AbortController();
    this.#probes = probes;
    const signal = AbortSignal.any([probes.signal, AbortSignal.timeout(ctx.timeoutMs)]);
    const answered = clients.map((c) => c.probe(signal).catch(() => false));
    try {
      for (const [i, c] of clients.entries()) {
        if (!(await answered[i])) continue;
        if (this.#stopped) return null;
        const r = await c.map(this.#o.leaseSec ?? DEFAULT_LEASE_SEC)
          .catch((e) => ({ ok: false as const, reason: String(e) }));
        if (r.ok) {
          this.#winner = c;
          this.#mapping = r.value;
          this.#lease.granted(this.#now(), r.value.leaseSec);
          const { host, port } = r.value.external;
          this.#log(`${c.protocol}: mapped ${host}:${port} in ${Math.round(this.#now() - t0)} ms`);
          return r.value;
        }
        this.#log(`${c.protocol}: cannot map port ${ctx.internalPort}: ${r.reason}`);
      }
      this.#log(`no mapping (${Math.round(this.#now() - t0)} ms)`);
      return null;
    } finally {
      probes.abort();
    }
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#stopped) return;
    const at = this.#lease.nextDeadline();
    if (at === null) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.#now()));
    const timer = setTimeout(() => {
      this.#timer = undefined;
      this.#busy = this.#fire().finally(() => {
        this.#busy = null;
        this.#arm();
      });
    }, delay);
    // A mapping being kept must not keep the process alive.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  async #fire(): Promise<void> {
    const due = this.#lease.due(this.#now());
    if (due === "renew" && this.#winner) {
      const c = this.#winner;
      const r = await c.map(this.#o.leaseSec ?? DEFAULT_LEASE_SEC)
        .catch((e) => ({ ok: false as const, reason: String(e) }));
      if (this.#stopped) return;
      if (r.ok) {
        this.#lease.granted(this.#now(), r.value.leaseSec);
        const changed = !this.#mapping || !sameMapping(this.#mapping, r.value);
        this.#mapping = r.value;
        if (changed) this.#o.onChange?.(r.value);
        return;
      }
      this.#log(`${c.protocol}: renewal failed: ${r.reason}`);
      if (!this.#lease.failed(this.#now())) {
        this.#log(`${c.protocol}: mapping lost`);
        this.#winner = null;
        this.#mapping = null;
        this.#o.onChange?.(null);
      }
    } else if (due === "renew") {
      this.#lease.lost(this.#now()); // nothing to renew: look again later, never spin
    } else if (due === "rediscover") {
      const m = await this.#discover();
      if (this.#stopped) return;
      if (m) this.#o.onChange?.(m);
      else this.#lease.lost(this.#now());
    }
  }

  /**
   * Stops renewing and deletes the mapping, within about `stopTimeoutMs` (plus the end of a
   * request already on the wire). A mapping that a late answer still creates is deleted as
   * soon as it arrives. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#probes.abort();
    const limit = this.#o.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    const pending = [this.#starting, this.#busy].filter((p) => p !== null);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      Promise.allSettled(pending).then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), limit)),
    ]);
    clearTimeout(timer);
    const release = async () => {
      const c = this.#winner;
      this.#winner = null;
      this.#mapping = null;
      this.#lease.clear();
      if (c) await c.unmap(AbortSignal.timeout(limit)).catch(() => {});
    };
    if (late) {
      // Whatever is still on the wire finishes in the background and is undone then.
      void Promise.allSettled(pending).then(release);
      return;
    }
    await release();
  }
}
