/** Messages between bench/server_bench.ts and its client workers (bench/_client.ts). */

export type Kind = "stun" | "keepalive";
export const KINDS: readonly Kind[] = ["stun", "keepalive"];

/** main -> worker, first message. */
export interface ClientInit {
  type: "init";
  index: number;
  serverPort: number;
  kinds: Kind[];
  window: number;
  timeoutMs: number;
  /** 16 hex chars: this client's fake peer id. */
  id: string;
  name: string;
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

/** One client's figures: per kind, plus its socket's kernel drops over the measured period. */
export type ClientResult = Record<Kind, KindResult> & { socketDrops?: number };

export type FromClient =
  | { type: "ready"; index: number; local: number }
  | { type: "warm"; index: number }
  | { type: "result"; index: number; results: ClientResult }
  | { type: "error"; index: number; message: string };
