/**
 * The p2pchat datagram codec: every message starts with MAGIC, VERSION, TYPE. Pure: bytes in,
 * typed message out, never throws (see docs/PROTOCOL.md for the byte tables).
 */
import { type Addr, ipFromBytes, ipv4Bytes, ipv6Bytes } from "./addr.ts";
import { Reader, Short, toHex, Writer } from "./bytes.ts";

export const MAGIC = 0x50; // 'P': first two bits 01, so never confused with STUN (00)
export const VERSION = 1;
/** Largest datagram we send; decoders also refuse anything bigger than MAX_DATAGRAM. */
export const MAX_SEND = 1200;
export const MAX_DATAGRAM = 1500;
export const MAX_LOCALS = 4;
export const MAX_NAME = 32;
export const MAX_FRAGS = 32;

export const T = {
  REGISTER: 0x01,
  REGISTER_OK: 0x02,
  ERROR: 0x03,
  PEER_JOINED: 0x04,
  PEER_LEFT: 0x05,
  KEEPALIVE: 0x06,
  KEEPALIVE_ACK: 0x07,
  LEAVE: 0x08,
  MEMBERS: 0x09,
  COOKIE: 0x0a,
  CONNECT: 0x10,
  CONNECT_FWD: 0x11,
  RELAY: 0x20,
  RELAYED: 0x21,
  HELLO: 0x30,
  HELLO_ACK: 0x31,
  PING: 0x32,
  PONG: 0x33,
  DATA: 0x40,
  DATA_ACK: 0x41,
  SEALED: 0x50,
} as const;

export const ErrorCode = {
  NAME_TAKEN: 1,
  BAD_NAME: 2,
  BAD_VERSION: 3,
  UNKNOWN_PEER: 4,
  ROOM_FULL: 5,
  NO_SUCH_PEER: 6,
  SERVER_FULL: 7,
  BAD_ROOM: 8,
  BAD_SIGNATURE: 9,
} as const;
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** Peer and session ids are 8 random bytes, carried as 16 hex chars in memory. */
export type Id = string;

/** Ed25519 public keys and signatures travel as raw bytes. */
export const KEY_LEN = 32;
export const SIG_LEN = 64;
export const COOKIE_LEN = 16;
/** The token field of messages that have none to carry (errors about REGISTER). */
export const NO_TOKEN = "0000000000000000";
/** Noise IK handshake bodies (lib/peer/secure.ts): the init HELLO carries, the reply HELLO_ACK. */
export const HS_INIT_LEN = 116;
export const HS_RESP_LEN = 56;
/** Smallest sealed (transport) body: receiver index 4, counter 8, AEAD tag 16. */
export const SEALED_MIN = 28;

export interface Member {
  id: Id;
  name: string;
  public: Addr;
  locals: Addr[];
  /** The member's Ed25519 identity key, as registered (and proven) at the server. */
  key: Uint8Array;
}

export type Message =
  | {
    type: "register";
    id: Id;
    /**
     * Fresh per registration attempt; COOKIE, REGISTER_OK and errors about REGISTER echo it, so
     * nobody who did not see the request can forge the answers.
     */
    nonce: string;
    name: string;
    room: string;
    locals: Addr[];
    key: Uint8Array;
    /** Empty on the first try; then the server's cookie, echoed. */
    cookie: Uint8Array;
    /** Empty without a cookie; else Ed25519 over registerSigInput(). */
    sig: Uint8Array;
  }
  | { type: "cookie"; nonce: string; cookie: Uint8Array }
  | {
    type: "register_ok";
    id: Id;
    /** The REGISTER's nonce, echoed. */
    nonce: string;
    /** Secret between this peer and the server; proves later requests come from it. */
    token: string;
    public: Addr;
    keepaliveMs: number;
    total: number;
    members: Member[];
  }
  /*
   * Server -> peer messages after REGISTER_OK carry the recipient's `token`: only the server
   * knows it, so an off-path sender forging the server's address cannot invent members.
   */
  | { type: "members"; token: string; total: number; members: Member[] }
  /**
   * `token`: the token of the request that caused it, or the nonce of a REGISTER (so a peer can
   * tell a real answer from a forgery); zeros when the request carried neither.
   */
  | { type: "error"; code: number; about: number; token: string; text: string }
  | { type: "peer_joined"; token: string; member: Member }
  | { type: "peer_left"; token: string; id: Id; name: string }
  | { type: "keepalive"; id: Id; token: string }
  | { type: "keepalive_ack"; id: Id; token: string; public: Addr }
  | { type: "leave"; id: Id; token: string }
  | { type: "connect"; from: Id; token: string; to: Id; nonce: string }
  | { type: "connect_fwd"; token: string; member: Member; nonce: string }
  | { type: "relay"; from: Id; token: string; to: Id; payload: Uint8Array }
  | { type: "relayed"; token: string; from: Id; payload: Uint8Array }
  /** Probe and Noise IK handshake init: the LAN-first handshake and every punch probe. */
  | { type: "hello"; from: Id; to: Id; nonce: string; init: Uint8Array }
  /** Noise IK response, then a sealed PONG echoing the HELLO's nonce. */
  | { type: "hello_ack"; from: Id; to: Id; resp: Uint8Array; sealed: Uint8Array }
  /** Encrypted peer traffic; the plaintext is one encoded PING, PONG, DATA or DATA_ACK. */
  | { type: "sealed"; body: Uint8Array }
  /** Path probe inside an established session (keepalive, RTT, new candidate). */
  | { type: "ping"; from: Id; to: Id; nonce: string }
  | { type: "pong"; from: Id; to: Id; nonce: string; observed: Addr }
  | ({ type: "data"; from: Id; to: Id } & DataFields)
  | { type: "data_ack"; from: Id; to: Id; seq: number; frag: number };

/** One fragment of a message, as DATA carries it (see lib/peer/delivery.ts). */
export interface DataFields {
  seq: number;
  /** Lowest sequence number the sender still tries to deliver. */
  floor: number;
  msgNo: number;
  frag: number;
  frags: number;
  direct: boolean;
  chunk: Uint8Array;
}

export type Decoded = { ok: true; value: Message } | { ok: false; reason: string };

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Cheap demultiplexing test: is this (claiming to be) a p2pchat datagram? */
export function looksLikeP2p(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === MAGIC;
}

// ---- writing ----

function wId(w: Writer, id: Id): void {
  for (let i = 0; i < 16; i += 2) w.u8(parseInt(id.slice(i, i + 2), 16));
}
function wStr8(w: Writer, s: string): void {
  const b = enc.encode(s);
  w.u8(Math.min(b.length, 255)).bytes(b.subarray(0, 255));
}
function wAddr(w: Writer, a: Addr): void {
  const v4 = ipv4Bytes(a.host);
  if (v4) w.u8(4).bytes(v4);
  else w.u8(6).bytes(ipv6Bytes(a.host) ?? new Uint8Array(16));
  w.u16(a.port);
}
function wAddrs(w: Writer, list: Addr[]): void {
  const l = list.slice(0, MAX_LOCALS);
  w.u8(l.length);
  for (const a of l) wAddr(w, a);
}
function wMember(w: Writer, m: Member): void {
  wId(w, m.id);
  wStr8(w, m.name);
  wAddr(w, m.public);
  wAddrs(w, m.locals);
  wFixed(w, m.key, KEY_LEN);
}
/** Exactly n bytes: shorter input is zero-padded, longer is cut (encode stays total). */
function wFixed(w: Writer, b: Uint8Array, n: number): void {
  const out = new Uint8Array(n);
  out.set(b.subarray(0, n));
  w.bytes(out);
}
function wVar8(w: Writer, b: Uint8Array): void {
  w.u8(Math.min(b.length, 255)).bytes(b.subarray(0, 255));
}
function wNonce(w: Writer, n: string): void {
  wId(w, n);
}

/** Encodes a message. Total: any well-typed message encodes. */
const scratch = new Writer(2048);

export function encode(m: Message): Uint8Array {
  const w = scratch.reset();
  w.u8(MAGIC).u8(VERSION).u8(typeCode(m.type));
  switch (m.type) {
    case "register":
      wId(w, m.id);
      wNonce(w, m.nonce);
      wStr8(w, m.name);
      wStr8(w, m.room);
      wAddrs(w, m.locals);
      wFixed(w, m.key, KEY_LEN);
      wVar8(w, m.cookie);
      wVar8(w, m.sig);
      break;
    case "cookie":
      wNonce(w, m.nonce);
      wFixed(w, m.cookie, COOKIE_LEN);
      break;
    case "register_ok":
      wId(w, m.id);
      wNonce(w, m.nonce);
      wId(w, m.token);
      wAddr(w, m.public);
      w.u32(m.keepaliveMs).u16(m.total).u8(m.members.length);
      for (const x of m.members) wMember(w, x);
      break;
    case "members":
      wId(w, m.token);
      w.u16(m.total).u8(m.members.length);
      for (const x of m.members) wMember(w, x);
      break;
    case "error": {
      w.u8(m.code).u8(m.about);
      wId(w, m.token);
      const t = enc.encode(m.text).subarray(0, 200);
      w.u8(t.length).bytes(t);
      break;
    }
    case "peer_joined":
      wId(w, m.token);
      wMember(w, m.member);
      break;
    case "peer_left":
      wId(w, m.token);
      wId(w, m.id);
      wStr8(w, m.name);
      break;
    case "keepalive":
    case "leave":
      wId(w, m.id);
      wId(w, m.token);
      break;
    case "keepalive_ack":
      wId(w, m.id);
      wId(w, m.token);
      wAddr(w, m.public);
      break;
    case "connect":
      wId(w, m.from);
      wId(w, m.token);
      wId(w, m.to);
      wNonce(w, m.nonce);
      break;
    case "connect_fwd":
      wId(w, m.token);
      wMember(w, m.member);
      wNonce(w, m.nonce);
      break;
    case "relay":
      wId(w, m.from);
      wId(w, m.token);
      wId(w, m.to);
      w.bytes(m.payload);
      break;
    case "relayed":
      wId(w, m.token);
      wId(w, m.from);
      w.bytes(m.payload);
      break;
    case "hello":
      wId(w, m.from);
      wId(w, m.to);
      wNonce(w, m.nonce);
      w.bytes(m.init);
      break;
    case "hello_ack":
      wId(w, m.from);
      wId(w, m.to);
      w.bytes(m.resp);
      w.bytes(m.sealed);
      break;
    case "sealed":
      w.bytes(m.body);
      break;
    case "ping":
      wId(w, m.from);
      wId(w, m.to);
      wNonce(w, m.nonce);
      break;
    case "pong":
      wId(w, m.from);
      wId(w, m.to);
      wNonce(w, m.nonce);
      wAddr(w, m.observed);
      break;
    case "data":
      wId(w, m.from);
      wId(w, m.to);
      w.u32(m.seq).u32(m.floor).u32(m.msgNo).u8(m.frag).u8(m.frags).u8(m.direct ? 1 : 0);
      w.bytes(m.chunk);
      break;
    case "data_ack":
      wId(w, m.from);
      wId(w, m.to);
      w.u32(m.seq).u8(m.frag);
      break;
  }
  return w.finish();
}

function typeCode(t: Message["type"]): number {
  return T[t.toUpperCase() as keyof typeof T];
}

// ---- reading ----

class Bad extends Error {}

function rId(r: Reader): Id {
  return toHex(r.bytes(8));
}
function rStr8(r: Reader, max: number): string {
  const n = r.u8();
  if (n > max) throw new Bad("string too long");
  try {
    return dec.decode(r.bytes(n));
  } catch (e) {
    if (e instanceof Short) throw e;
    throw new Bad("invalid UTF-8");
  }
}
function rAddr(r: Reader): Addr {
  const fam = r.u8();
  let host: string;
  if (fam === 4) host = ipFromBytes(r.bytes(4));
  else if (fam === 6) host = ipFromBytes(r.bytes(16));
  else throw new Bad("bad address family");
  const port = r.u16();
  if (port === 0) throw new Bad("port 0");
  return { host, port };
}
function rAddrs(r: Reader): Addr[] {
  const n = r.u8();
  if (n > MAX_LOCALS) throw new Bad("too many addresses");
  const out: Addr[] = [];
  for (let i = 0; i < n; i++) out.push(rAddr(r));
  return out;
}
function rMember(r: Reader): Member {
  return {
    id: rId(r),
    name: rStr8(r, MAX_NAME),
    public: rAddr(r),
    locals: rAddrs(r),
    key: r.bytes(KEY_LEN).slice(),
  };
}
function rVar8(r: Reader, allowed: number[]): Uint8Array {
  const n = r.u8();
  if (!allowed.includes(n)) throw new Bad("bad length");
  return r.bytes(n).slice();
}
function rMembers(r: Reader): Member[] {
  const n = r.u8();
  const out: Member[] = [];
  for (let i = 0; i < n; i++) out.push(rMember(r));
  return out;
}

const CODES = new Map<number, Message["type"]>(
  Object.entries(T).map(([k, v]) => [v, k.toLowerCase() as Message["type"]]),
);

/** Decodes one datagram. Never throws; anything malformed comes back as `{ ok: false }`. */
export function decode(b: Uint8Array): Decoded {
  if (b.length < 3) return { ok: false, reason: "short" };
  if (b.length > MAX_DATAGRAM) return { ok: false, reason: "oversize" };
  if (b[0] !== MAGIC) return { ok: false, reason: "magic" };
  if (b[1] !== VERSION) return { ok: false, reason: "version" };
  const type = CODES.get(b[2]!);
  if (!type) return { ok: false, reason: "type" };
  const r = new Reader(b);
  r.pos = 3;
  try {
    const value = body(type, r);
    // Trailing bytes mean a sender we do not understand: refuse rather than guess.
    if (r.remaining !== 0) return { ok: false, reason: "trailing bytes" };
    return { ok: true, value };
  } catch (e) {
    if (e instanceof Short) return { ok: false, reason: "truncated" };
    if (e instanceof Bad) return { ok: false, reason: e.message };
    return { ok: false, reason: "malformed" };
  }
}

function body(type: Message["type"], r: Reader): Message {
  switch (type) {
    case "register": {
      const id = rId(r), nonce = rId(r), name = rStr8(r, MAX_NAME), room = rStr8(r, MAX_NAME);
      const locals = rAddrs(r), key = r.bytes(KEY_LEN).slice();
      const cookie = rVar8(r, [0, COOKIE_LEN]);
      const sig = rVar8(r, cookie.length ? [SIG_LEN] : [0]);
      return { type, id, nonce, name, room, locals, key, cookie, sig };
    }
    case "cookie":
      return { type, nonce: rId(r), cookie: r.bytes(COOKIE_LEN).slice() };
    case "register_ok": {
      const id = rId(r), nonce = rId(r), token = rId(r), pub = rAddr(r);
      const keepaliveMs = r.u32(), total = r.u16();
      return { type, id, nonce, token, public: pub, keepaliveMs, total, members: rMembers(r) };
    }
    case "members": {
      const token = rId(r), total = r.u16();
      return { type, token, total, members: rMembers(r) };
    }
    case "error": {
      const code = r.u8(), about = r.u8(), token = rId(r);
      return { type, code, about, token, text: rStr8(r, 255) };
    }
    case "peer_joined":
      return { type, token: rId(r), member: rMember(r) };
    case "peer_left":
      return { type, token: rId(r), id: rId(r), name: rStr8(r, MAX_NAME) };
    case "keepalive":
    case "leave":
      return { type, id: rId(r), token: rId(r) };
    case "keepalive_ack":
      return { type, id: rId(r), token: rId(r), public: rAddr(r) };
    case "connect":
      return { type, from: rId(r), token: rId(r), to: rId(r), nonce: rId(r) };
    case "connect_fwd":
      return { type, token: rId(r), member: rMember(r), nonce: rId(r) };
    case "relay":
      return { type, from: rId(r), token: rId(r), to: rId(r), payload: r.rest() };
    case "relayed":
      return { type, token: rId(r), from: rId(r), payload: r.rest() };
    case "hello":
      return { type, from: rId(r), to: rId(r), nonce: rId(r), init: r.bytes(HS_INIT_LEN).slice() };
    case "hello_ack": {
      const from = rId(r), to = rId(r), resp = r.bytes(HS_RESP_LEN).slice();
      return { type, from, to, resp, sealed: rSealed(r) };
    }
    case "sealed":
      return { type, body: rSealed(r) };
    case "ping":
      return { type, from: rId(r), to: rId(r), nonce: rId(r) };
    case "pong":
      return { type, from: rId(r), to: rId(r), nonce: rId(r), observed: rAddr(r) };
    case "data": {
      const from = rId(r), to = rId(r), seq = r.u32(), floor = r.u32(), msgNo = r.u32();
      const frag = r.u8(), frags = r.u8(), kind = r.u8();
      if (frags === 0 || frags > MAX_FRAGS || frag >= frags) throw new Bad("bad fragment");
      if (kind > 1) throw new Bad("bad kind");
      return {
        type,
        from,
        to,
        seq,
        floor,
        msgNo,
        frag,
        frags,
        direct: kind === 1,
        chunk: r.rest(),
      };
    }
    case "data_ack":
      return { type, from: rId(r), to: rId(r), seq: r.u32(), frag: r.u8() };
  }
}

function rSealed(r: Reader): Uint8Array {
  if (r.remaining < SEALED_MIN) throw new Short();
  return r.rest();
}

function addrSize(a: Addr): number {
  return a.host.includes(":") ? 19 : 7;
}

/** Encoded size of a member entry, so senders can page member lists under MAX_SEND. */
export function memberSize(m: Member): number {
  return 8 + 1 + enc.encode(m.name).length + addrSize(m.public) + 1 +
    m.locals.slice(0, MAX_LOCALS).reduce((n, a) => n + addrSize(a), 0) + KEY_LEN;
}

const SIG_CONTEXT = enc.encode("p2pchat register v1");

/**
 * What a REGISTER's signature covers: a context string and the whole message with its cookie
 * but without the signature, so a signature proves the key holder asked for exactly this
 * name, room and address list, after seeing this cookie.
 */
export function registerSigInput(m: Extract<Message, { type: "register" }>): Uint8Array {
  const body = encode({ ...m, sig: new Uint8Array(0) });
  const out = new Uint8Array(SIG_CONTEXT.length + body.length);
  out.set(SIG_CONTEXT);
  out.set(body, SIG_CONTEXT.length);
  return out;
}
