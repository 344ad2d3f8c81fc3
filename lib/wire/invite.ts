/**
 * Invite codes: one line that carries a locked room's server, name and secret, so a member can
 * be let in by sending them a single string. `p2pchat:` then base64url (no padding) of
 * `version u8 = 1` · `server str8` (HOST:PORT as given) · `room str8` · `secret str8`.
 * Whoever holds the code holds the secret: it is shared privately, and never given on a
 * command line (see lib/cli/secret.ts). Pure: no I/O, never throws on input.
 * @example
 * const code = encodeInvite({ server: "chat.example.org:8848", room: "family", secret });
 * decodeInvite(code); // { ok: true, value: { server: "chat.example.org:8848", room: "family", ... } }
 * @module
 */
import { parseHostPort } from "./addr.ts";
import { validName } from "./names.ts";
import type { Result } from "./result.ts";

export const INVITE_PREFIX = "p2pchat:";
const VERSION = 1;
/** The shortest secret we accept from a person or a file (an invite's is 43 characters). */
export const MIN_SECRET = 8;

export interface Invite {
  /** The server, HOST:PORT (a name is resolved when joining). */
  server: string;
  room: string;
  secret: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** base64url without padding (RFC 4648 section 5). */
export function base64url(b: Uint8Array): string {
  let bin = "";
  for (const x of b) bin += String.fromCharCode(x);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return null;
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** The invite code for a room. Throws on a field longer than 255 bytes (no valid one is). */
export function encodeInvite(i: Invite): string {
  const parts = [i.server, i.room, i.secret].map((s) => enc.encode(s));
  const out: number[] = [VERSION];
  for (const p of parts) {
    if (p.length > 255) throw new Error("Cannot make invite: a field is over 255 bytes");
    out.push(p.length, ...p);
  }
  return INVITE_PREFIX + base64url(Uint8Array.from(out));
}

/** Reads an invite code (surrounding whitespace ignored). Never throws. */
export function decodeInvite(code: string): Result<Invite> {
  const bad = (reason: string): Result<Invite> => ({ ok: false, reason });
  const t = code.trim();
  if (!t.startsWith(INVITE_PREFIX)) return bad(`it does not start with "${INVITE_PREFIX}"`);
  const b = fromBase64url(t.slice(INVITE_PREFIX.length));
  if (!b || b.length === 0) return bad("it is not base64url");
  if (b[0] !== VERSION) return bad(`it is version ${b[0]}, this p2pchat reads version 1`);
  const fields: string[] = [];
  let pos = 1;
  for (let f = 0; f < 3; f++) {
    const n = b[pos];
    if (n === undefined || pos + 1 + n > b.length) return bad("it is cut short");
    try {
      fields.push(dec.decode(b.subarray(pos + 1, pos + 1 + n)));
    } catch {
      return bad("it is garbled");
    }
    pos += 1 + n;
  }
  if (pos !== b.length) return bad("it has extra bytes");
  const [server = "", room = "", secret = ""] = fields;
  if (!parseHostPort(server).ok) return bad(`its server "${server}" is not HOST:PORT`);
  if (!validName(room)) return bad(`its room "${room}" is not a valid room name`);
  if (secret.length < MIN_SECRET) return bad("its secret is too short");
  return { ok: true, value: { server, room, secret } };
}
