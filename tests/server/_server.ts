/** Shared setup for the server tests: a ServerState fed encoded messages at a fake time. */
import assert from "node:assert/strict";
import {
  DEFAULT_SERVER_CONFIG,
  type ServerAction,
  type ServerConfig,
  ServerState,
} from "../../lib/server/state.ts";
import { decode, encode, type Message, registerSigInput } from "../../lib/wire/codec.ts";
import { type Identity, sign } from "../../lib/identity/identity.ts";
import type { Addr } from "../../lib/wire/addr.ts";

export const cfg: ServerConfig = { ...DEFAULT_SERVER_CONFIG, keepaliveMs: 1000, nameTtlMs: 60_000 };
export const A: Addr = { host: "198.51.100.10", port: 4000 };
export const B: Addr = { host: "203.0.113.20", port: 5000 };
export const C: Addr = { host: "192.0.2.30", port: 6000 };
export const ID1 = "1111111111111111", ID2 = "2222222222222222", ID3 = "3333333333333333";

export type Send = Extract<ServerAction, { type: "send" }>;
export type Feed = (m: Message | Uint8Array, from: Addr, now?: number) => Send[];

export function server(c: ServerConfig = cfg): { s: ServerState; feed: Feed } {
  const s = new ServerState(c);
  const feed: Feed = (m, from, now = 0) => {
    const out: ServerAction[] = [];
    s.handle(m instanceof Uint8Array ? m : encode(m), from, now, out);
    return out.filter((a) => a.type === "send") as Send[];
  };
  return { s, feed };
}

/** The decodable messages among `sends`. */
export const msgs = (sends: { bytes: Uint8Array }[]): Message[] =>
  sends.map((x) => decode(x.bytes)).filter((d) => d.ok).map((d) => (d as { value: Message }).value);

/** What `tick(now)` sends. */
export function tick(s: ServerState, now: number): Message[] {
  return msgs(tickActions(s, now).filter((a) => a.type === "send") as Send[]);
}

/** Everything `tick(now)` does. */
export function tickActions(s: ServerState, now: number): ServerAction[] {
  const out: ServerAction[] = [];
  s.tick(now, out);
  return out;
}

/** Names of the members `actions` report as timed out (from the server's log lines). */
export const timedOut = (actions: ServerAction[]): string[] =>
  actions.flatMap((a) =>
    a.type === "log" && a.message.endsWith("(timed out)") ? [a.message.split(" ")[0]!] : []
  );

export type Register = Extract<Message, { type: "register" }>;

/** A REGISTER; signed when it carries a cookie. `edit` changes fields before signing. */
export function reg(
  id: string,
  name: string,
  who: Identity,
  cookie: Uint8Array = new Uint8Array(0),
  room = "lobby",
  nonce = "abcdefabcdefabcd",
  edit: (m: Register) => void = () => {},
): Register {
  const m: Register = {
    type: "register",
    id,
    nonce,
    name,
    room,
    locals: [],
    key: who.edPublic,
    cookie,
    sig: new Uint8Array(0),
  };
  edit(m);
  if (cookie.length) m.sig = sign(who, registerSigInput(m));
  return m;
}

export interface JoinOptions {
  room?: string;
  nonce?: string;
  edit?: (m: Register) => void;
}

/** The full cookie exchange; returns the server's answers to the signed REGISTER. */
export function join(
  feed: Feed,
  id: string,
  name: string,
  who: Identity,
  from: Addr,
  now = 0,
  room = "lobby",
  o: Omit<JoinOptions, "room"> = {},
): Message[] {
  const first = reg(id, name, who, undefined, room, o.nonce);
  const c = msgs(feed(first, from, now))[0];
  assert.equal(c?.type, "cookie");
  const cookie = (c as { cookie: Uint8Array }).cookie;
  const out = feed(reg(id, name, who, cookie, room, o.nonce, o.edit), from, now);
  return msgs(out.filter((x) => x.to.host === from.host && x.to.port === from.port));
}

/** The error code of an ERROR message, or undefined for anything else. */
export const errorCode = (m: Message | undefined): number | undefined =>
  m?.type === "error" ? m.code : undefined;

/** The token of a REGISTER_OK. */
export function tokenOf(m: Message | undefined): string {
  assert.equal(m?.type, "register_ok", JSON.stringify(m));
  return (m as { token: string }).token;
}
