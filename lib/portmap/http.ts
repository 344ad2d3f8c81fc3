/**
 * The little HTTP/1.1 a UPnP control point speaks: one request per connection
 * (`Connection: close`), and a parser for the whole answer once the connection ends. Pure.
 * We talk to the gateway directly rather than through `fetch`, which would honour
 * HTTP_PROXY and send LAN requests to a proxy.
 */
import type { Result } from "../wire/result.ts";

/** A description or SOAP answer larger than this is refused. */
export const MAX_HTTP_RESPONSE = 64 * 1024;

export interface HttpRequest {
  method: "GET" | "POST";
  url: URL;
  headers?: Record<string, string>;
  body?: string;
}

export interface HttpResponse {
  status: number;
  /** Lower-cased names. */
  headers: Map<string, string>;
  body: string;
}

/** The request bytes. Header values must not contain line breaks (they are stripped). */
export function encodeRequest(req: HttpRequest): Uint8Array {
  const body = new TextEncoder().encode(req.body ?? "");
  const path = (req.url.pathname || "/") + req.url.search;
  const lines = [
    `${req.method} ${path} HTTP/1.1`,
    `Host: ${req.url.host}`,
    "Connection: close",
    "User-Agent: p2pchat UPnP/1.1",
  ];
  for (const [k, v] of Object.entries(req.headers ?? {})) {
    lines.push(`${k.replace(/[\r\n:]/g, "")}: ${v.replace(/[\r\n]/g, "")}`);
  }
  if (req.method === "POST") lines.push(`Content-Length: ${body.length}`);
  const head = new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n");
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

function indexOfCrlfCrlf(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

/** Joins a chunked body; null if it is malformed or incomplete. */
function dechunk(b: Uint8Array): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let pos = 0;
  for (;;) {
    let eol = pos;
    while (eol + 1 < b.length && !(b[eol] === 13 && b[eol + 1] === 10)) eol++;
    if (eol + 1 >= b.length) return null;
    const sizeText = new TextDecoder().decode(b.subarray(pos, eol)).split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return null;
    const size = parseInt(sizeText, 16);
    pos = eol + 2;
    if (size === 0) break;
    if (pos + size > b.length) return null;
    parts.push(b.subarray(pos, pos + size));
    pos += size + 2;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Parses a complete response (everything read until the server closed). Honours Content-Length
 * and chunked transfer coding; never throws.
 */
export function decodeResponse(bytes: Uint8Array): Result<HttpResponse> {
  if (bytes.length > MAX_HTTP_RESPONSE) return { ok: false, reason: "too-long" };
  const end = indexOfCrlfCrlf(bytes);
  if (end < 0) return { ok: false, reason: "truncated" };
  const head = new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(0, end));
  const [statusLine, ...lines] = head.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine ?? "");
  if (!m) return { ok: false, reason: "bad-status" };
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body: Uint8Array | null = bytes.subarray(end + 4);
  if (/\bchunked\b/i.test(headers.get("transfer-encoding") ?? "")) {
    body = dechunk(body);
    if (!body) return { ok: false, reason: "bad-chunks" };
  } else if (headers.has("content-length")) {
    const len = headers.get("content-length")!;
    if (!/^\d{1,9}$/.test(len)) return { ok: false, reason: "bad-length" };
    if (body.length < Number(len)) return { ok: false, reason: "truncated" };
    body = body.subarray(0, Number(len));
  }
  return {
    ok: true,
    value: {
      status: Number(m[1]),
      headers,
      body: new TextDecoder("utf-8", { fatal: false }).decode(body),
    },
  };
}
