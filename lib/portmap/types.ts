/** What the port mapper's protocol clients share. */
import type { Result } from "../wire/result.ts";

export type Protocol = "pcp" | "natpmp" | "upnp";

/** All protocols, in the order a port mapper prefers them when several gateways answer. */
export const PROTOCOLS: readonly Protocol[] = ["pcp", "natpmp", "upnp"];

/** A UDP port mapping on the gateway: packets to `external` reach our `internalPort`. */
export interface Mapping {
  protocol: Protocol;
  external: { host: string; port: number };
  internalPort: number;
  /** Seconds granted; 0 for a permanent UPnP mapping. */
  leaseSec: number;
}

/** What every protocol client gets to work with. */
export interface ClientContext {
  internalPort: number;
  /**
   * Where NAT-PMP and PCP servers may be: the default gateway when known, else guesses (see
   * `guessGateways`); empty when there is no network. Probes go to all, the first to answer wins.
   */
  gateways: string[];
  /** Our address as a gateway at `peer` sees it, or null when no interface is on its subnet. */
  localAddress(peer: string): string | null;
  /** How long a probe may wait for a gateway, in ms (the caller's signal enforces it). */
  timeoutMs: number;
  /** Each request's time limit once a gateway has answered, in ms. */
  requestTimeoutMs: number;
  /** `n` random bytes. */
  random(n: number): Uint8Array;
  log(msg: string): void;
}

/**
 * One protocol's client. `probe` only asks whether a gateway speaking it is there (and creates
 * nothing on it); `map` creates or renews the one mapping this client holds; `unmap` deletes it.
 */
export interface MapperClient {
  readonly protocol: Protocol;
  probe(signal: AbortSignal): Promise<boolean>;
  map(leaseSec: number): Promise<Result<Mapping>>;
  unmap(signal: AbortSignal): Promise<void>;
}

/** Resend offsets for a request given `timeoutMs`: twice more, as RFC 6886 §3.1 retries. */
export function resendSchedule(timeoutMs: number): number[] {
  return [Math.floor(timeoutMs / 4), Math.floor(timeoutMs / 2)];
}
