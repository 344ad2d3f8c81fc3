/** Messages between bench/server_bench.ts and its client workers (bench/_client.ts). */

export type Kind = "stun" | "keepalive";
export const KINDS: readonly Kind[] = ["stun", "keepalive"];

/** main -> worker, first message: the worker drives one socket per entry of `clients`. */
export interface ClientInit {
  type: "init";
  index: number;
  serverPort: number;
  kinds: Kind[];
  /** Requests each socket keeps outstanding (closed loop). */
  window: number;
  /**
   * Requests per second this worker sends (over its sockets in turn) whatever the answers (open
   * loop, for latency at a fixed load), or 0: keep `window` outstanding (closed loop).
   */
  rate: number;
  timeoutMs: number;
  /** Register a fake peer first (needed for keepalives; a STUN-only target has no p2pchat). */
  register: boolean;
  /** Per socket: its fake peer id (16 hex chars) and name. */
  clients: { id: string; name: string }[];
  room: string;
}

/**
 * main -> worker, once every client is registered: first the warm-up (unmeasured; the client
 * then drains, forgets anything unanswered and answers "warm"), then the measured period.
 */
export interface ClientPhase {
  type: "phase";
  phase: "warmup" | "measure";
  ms: number;
}

export type ToClient = ClientInit | ClientPhase;

export interface KindResult {
  /** Requests sent during the measured period. */
  sent: number;
  /** Of those, answered within the timeout. */
  answered: number;
  /** Of those, answered with an error message instead (counted in `answered` too). */
  errors: number;
  /** Of those, never answered within the timeout. */
  lost: number;
  /** Replies that matched nothing outstanding (after a timeout, or duplicates). */
  unmatched: number;
  /** Round-trip times in µs; all of them, or a uniform sample when there were very many. */
  rttUs: Float64Array<ArrayBuffer>;
}

/**
 * One worker's figures: per kind, plus its sockets' kernel drops over the measured period and,
 * in open loop, the sends it skipped because too many were outstanding.
 */
export type ClientResult = Record<Kind, KindResult> & { socketDrops?: number; skipped: number };

export type FromClient =
  /** `busy`: batched system calls in a busy loop; else Deno.DatagramConn and timers. */
  | { type: "ready"; index: number; busy: boolean }
  | { type: "warm"; index: number }
  | { type: "result"; index: number; results: ClientResult }
  | { type: "error"; index: number; message: string };
