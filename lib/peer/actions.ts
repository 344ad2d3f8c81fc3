/** What the peer's state machines ask their host to do: the one output type of lib/peer. */
import type { Addr } from "../wire/addr.ts";
import type { PeerEvent } from "./events.ts";

export type AgentAction =
  /** `via`: the local socket to send from; absent or 0 is the main one. */
  | { type: "send"; to: Addr; bytes: Uint8Array; via?: number }
  /** Open (or close) an extra local socket, named `via`, for birthday punching. */
  | { type: "open_socket"; via: number }
  | { type: "close_socket"; via: number }
  /** Connect from local port `localPort` to `to`, as connection `via` (TCP hole punching). */
  | { type: "tcp_open"; via: number; localPort: number; to: Addr }
  | { type: "tcp_close"; via: number }
  | { type: "event"; event: PeerEvent }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string }
  /** Unrecoverable: print `message` and exit with `code` (2: the user must change something). */
  | { type: "fatal"; message: string; code: number };

/** The earlier of two deadlines, where null means "none". */
export function earliest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return a < b ? a : b;
}
