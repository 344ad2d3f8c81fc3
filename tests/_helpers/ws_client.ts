/**
 * WebSocket clients for the tests: a well-behaved member (Deno's WebSocket, messages queued
 * for `next`) and a raw one over a plain TCP connection that writes whatever frames, headers
 * or bytes a test wants and reads only when asked (an attacker's client).
 */
import { decode, type Message } from "../../lib/wire/codec.ts";

const enc = new TextEncoder();

/** A member's connection: every binary message decoded and queued. */
export class WsMember {
  readonly got: Message[] = [];
  closed: { code: number; reason: string } | null = null;
  private wake: (() => void) | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      const d = decode(new Uint8Array(e.data as ArrayBuffer));
      if (d.ok) this.got.push(d.value);
      this.wake?.();
    };
    ws.onclose = (e) => {
      this.closed = { code: e.code, reason: e.reason };
      this.wake?.();
    };
  }

  static async open(url: string, init?: { client?: Deno.HttpClient }): Promise<WsMember> {
    const ws = init?.client ? new WebSocket(url, { client: init.client }) : new WebSocket(url);
    const m = new WsMember(ws);
    await new Promise<void>((ok, fail) => {
      ws.onopen = () => ok();
      ws.onerror = (e) => fail(new Error(`Cannot open ${url}: ${(e as ErrorEvent).message}`));
    });
    return m;
  }

  send(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  /** The first queued message `pred` accepts (removed from the queue), waiting up to `ms`. */
  async next<T extends Message>(pred: (m: Message) => m is T, ms?: number): Promise<T>;
  async next(pred: (m: Message) => boolean, ms?: number): Promise<Message>;
  async next(pred: (m: Message) => boolean, ms = 5000): Promise<Message> {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.got.findIndex(pred);
      if (i >= 0) return this.got.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`closed (${this.closed.code}) while waiting`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out; queued: ${this.got.map((m) => m.type)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
  }

  /** Resolves with the close code once the server closes the connection. */
  async closedWith(ms = 5000): Promise<number> {
    const end = Date.now() + ms;
    while (!this.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    if (!this.closed) throw new Error(`still open after ${ms} ms`);
    return this.closed.code;
  }

  close(): void {
    try {
      this.ws.close();
    } catch { /* already closed */ }
  }
}

/** One client-to-server frame (masked, as RFC 6455 requires of clients). */
export function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    new DataView(out.buffer).setUint16(2, n);
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

/** The upgrade request a client sends, as bytes. */
export function upgradeRequest(path = "/p2pchat"): Uint8Array {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  return enc.encode(
    `GET ${path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
}

/** A raw TCP client: writes what it is given, reads only when asked. */
export class RawClient {
  private constructor(readonly conn: Deno.TcpConn) {}

  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Connects and upgrades; returns the client once the 101 answer is read. */
  static async upgraded(port: number): Promise<RawClient> {
    const c = await RawClient.connect(port);
    await c.write(upgradeRequest());
    const head = await c.readHead();
    if (!head.startsWith("HTTP/1.1 101")) throw new Error(`no upgrade: ${head.split("\r\n")[0]}`);
    return c;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Reads up to the end of an HTTP response head (byte by byte: nothing past it is taken). */
  async readHead(): Promise<string> {
    const got: number[] = [];
    const one = new Uint8Array(1);
    while (got.length < 16384) {
      const n = await this.conn.read(one);
      if (n === null) break;
      got.push(one[0]!);
      const l = got.length;
      if (
        l >= 4 && got[l - 4] === 13 && got[l - 3] === 10 && got[l - 2] === 13 && got[l - 1] === 10
      ) {
        break;
      }
    }
    return new TextDecoder().decode(new Uint8Array(got));
  }

  /**
   * Reads until the server sends a close frame or ends the connection, or `ms` pass: whether
   * it ended the connection, and the close frame's code (null if none was seen).
   */
  async untilClosed(ms: number): Promise<{ closed: boolean; code: number | null }> {
    const all: number[] = [];
    const buf = new Uint8Array(4096);
    const end = Date.now() + ms;
    let closed = false;
    while (Date.now() < end) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.conn.read(buf).catch(() => null),
        new Promise<"wait">((r) => timer = setTimeout(() => r("wait"), end - Date.now())),
      ]);
      clearTimeout(timer);
      if (n === "wait") break;
      if (n === null) {
        closed = true;
        break;
      }
      all.push(...buf.subarray(0, n));
      if (closeCode(new Uint8Array(all)) !== null) break;
    }
    return { closed, code: closeCode(new Uint8Array(all)) };
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** The status code of the first close frame among unmasked server frames, or null. */
function closeCode(b: Uint8Array): number | null {
  let i = 0;
  while (i + 2 <= b.length) {
    const op = b[i]! & 0x0f;
    let n = b[i + 1]! & 0x7f;
    let at = i + 2;
    if (n === 126) {
      n = (b[at]! << 8) | b[at + 1]!;
      at += 2;
    } else if (n === 127) {
      n = Number(new DataView(b.buffer, b.byteOffset + at).getBigUint64(0));
      at += 8;
    }
    if (op === 8) return n >= 2 && at + 2 <= b.length ? (b[at]! << 8) | b[at + 1]! : 1005;
    i = at + n;
  }
  return null;
}
