/** The server's WebSocket endpoint as a user writes it. Pure: no I/O. */

/** `http`/`https` URLs are accepted as `ws`/`wss`; a URL without a path gets `/p2pchat`. */
export function wsUrl(text: string): URL | null {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return null;
  }
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") return null;
  if (u.username || u.password || u.hash) return null;
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/p2pchat";
  return u;
}
