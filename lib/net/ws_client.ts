/**
 * The peer's WebSocket to the server (runtime's built-in WebSocket): one wire message per
 * binary frame, the same bytes as a UDP datagram. Sends are dropped (and counted) while the
 * socket is not open or when too much is still unsent, as UDP drops; every sender above
 * retransmits.
 */

/** Unsent bytes allowed on the socket; beyond it sends are dropped rather than queued. */
export const MAX_WS_BUFFERED = 256 * 1024;
/** Frames larger than any wire message are not ours: the connection is closed. */
export const MAX_WS_FRAME = 4096;

export interface WsLink {
  readonly url: string;
  send(bytes: Uint8Array): void;
  close(): void;
  /** Sends dropped: not open yet, or too much unsent. */
  readonly dropped: number;
}

export interface WsHandlers {
  onOpen(): void;
  onPacket(bytes: Uint8Array): void;
  /** Closed or failed to open; called once. */
  onClose(why: string): void;
}

/** Opens a WebSocket to `url`; events arrive through `h`. Never throws for network trouble. */
export function openWs(url: string, h: WsHandlers): WsLink {
  let ws: WebSocket | null = null;
  let done = false;
  let dropped = 0;
  /** Runs a handler; what it throws is reported, never left to end the process. */
  const guard = (fn: () => void) => {
    try {
      fn();
    } catch (e) {
      console.error(`internal error in a WebSocket handler: ${e instanceof Error ? e.message : e}`);
    }
  };
  const finish = (why: string) => {
    if (done) return;
    done = true;
    try {
      ws?.close();
    } catch { /* already closing */ }
    guard(() => h.onClose(why));
  };
  try {
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
  } catch (e) {
    // Reported after return, like every other outcome.
    queueMicrotask(() => finish(e instanceof Error ? e.message : String(e)));
  }
  if (ws) {
    ws.onopen = () => {
      if (!done) guard(() => h.onOpen());
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (done) return;
      if (!(ev.data instanceof ArrayBuffer) || ev.data.byteLength > MAX_WS_FRAME) {
        return finish("the server sent a frame that is not a wire message");
      }
      guard(() => h.onPacket(new Uint8Array(ev.data)));
    };
    ws.onerror = (ev: Event) => {
      const msg = (ev as ErrorEvent).message;
      finish(msg ? msg : "connection failed");
    };
    ws.onclose = (ev: CloseEvent) => {
      finish(`closed${ev.code ? ` (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})` : ""}`);
    };
  }
  return {
    url,
    get dropped() {
      return dropped;
    },
    send(bytes) {
      if (done || !ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_WS_BUFFERED) {
        dropped++;
        return;
      }
      try {
        ws.send(bytes);
      } catch {
        dropped++;
      }
    },
    close() {
      if (done) return;
      done = true;
      try {
        ws?.close();
      } catch { /* already closing */ }
    },
  };
}
