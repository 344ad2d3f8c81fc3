/**
 * The p2pchat datagram codec: every message starts with MAGIC, VERSION, TYPE. Pure: bytes in,
 * typed message out, never throws (see docs/PROTOCOL.md for the byte tables).
 *
 * Each message's layout is written once, in LAYOUTS: its type code with its body's writer and
 * reader side by side (after Tailscale's disco). Sizes come from ./sizes.ts.
 * @module
 */
import { type Addr, ipFromBytes, ipv4Bytes, ipv6Bytes } from "./addr.ts";
import { Reader, Short, toHex, Writer } from "./bytes.ts";
import type { Result } from "./result.ts";
import {
  ADDR4_LEN,
  ADDR6_LEN,
  COOKIE_LEN,
  HEADER_LEN,
  HS_INIT_LEN,
  HS_RESP_LEN,
  ID_LEN,
  KEY_LEN,
  MAC1_LEN,
  MAX_ACK_BLOCKS,
  MAX_DATAGRAM,
  MAX_FRAGS,
  MAX_LARGE_DATAGRAM,
  MAX_LEN8,
  MAX_LOCALS,
  MAX_NAME,
  MAX_TEXT,
  NONCE_LEN,
  ROOM_PROOF_LEN,
  SEALED_MIN,
  SIG_LEN,
  TOKEN_LEN,
} from "./sizes.ts";

export {
  COOKIE_LEN,
  HS_INIT_LEN,
  HS_RESP_LEN,
  KEY_LEN,
  MAX_ACK_BLOCKS,
  MAX_DATAGRAM,
  MAX_FRAGS,
  MAX_LOCALS,
  MAX_NAME,
  MAX_SEND,
  ROOM_PROOF_LEN,
  SEALED_MIN,
  SIG_LEN,
} from "./sizes.ts";

export const MAGIC = 0x50; // 'P': first two bits 01, so never confused with STUN (00)
export const VERSION = 1;

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
  /** The session id is registered with another key (pick a new id). */
  ID_TAKEN: 10,
  /**
   * The room's lock does not match: a locked room without its secret or with a wrong one, or
   * a secret for an open room that has members.
   */
  WRONG_SECRET: 11,
} as const;
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** Peer and session ids are ID_LEN random bytes, carried as hex in memory. */
export type Id = string;

/** The token field of messages that have none to carry (errors about REGISTER). */
export const NO_TOKEN = "00".repeat(TOKEN_LEN);

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
    /**
     * Locked rooms only, and only with a cookie: the room verifier and its signature over
     * roomProofInput() (lib/crypto/room.ts). Absent for an open room.
     */
    proof?: Uint8Array;
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
  /** `mac1` proves the sender knows the responder's static key, before any DH is spent. */
  | { type: "hello"; from: Id; to: Id; nonce: string; init: Uint8Array; mac1: Uint8Array }
  /** Noise IK response, then a sealed PONG echoing the HELLO's nonce. */
  | { type: "hello_ack"; from: Id; to: Id; resp: Uint8Array; sealed: Uint8Array }
  /** Encrypted peer traffic; the plaintext is one encoded PING, PONG, DATA or DATA_ACK. */
  | { type: "sealed"; body: Uint8Array }
  /** Path probe inside an established session (keepalive, RTT, new candidate). */
  | { type: "ping"; from: Id; to: Id; nonce: string }
  | { type: "pong"; from: Id; to: Id; nonce: string; observed: Addr }
  /**
   * What the sender knows of its NAT, sent sealed once a session is up: its mapping behaviour
   * (who does what in birthday punching) and public addresses its gateway mapped for it.
   */
  | {
    type: "nat_info";
    from: Id;
    to: Id;
    /** Whether the sender has the receiver's NAT_INFO already (it stops resending then). */
    have: boolean;
    mapping: NatMapping;
    mapped: Addr[];
  }
  /**
   * Path MTU probe, sealed: `pad` zero bytes make it exactly as large as a DATA of the size
   * being probed (lib/peer/pmtu.ts). Answered by MTU_ACK, only if it arrived whole.
   */
  | { type: "mtu_probe"; from: Id; to: Id; id: number; pad: number }
  /**
   * `id`: the MTU_PROBE answered; `size`: its encoded size as it arrived; `limit`: the largest
   * encoded DATA the answerer takes on the path the probe came in on (its own link's bound).
   */
  | { type: "mtu_ack"; from: Id; to: Id; id: number; size: number; limit: number }
  | ({ type: "data"; from: Id; to: Id } & DataFields)
  /**
   * Acknowledges fragment `frag` of message `seq` (the one whose arrival prompted it) and,
   * with `batch`, many more at once; see AckBatch.
   */
  | { type: "data_ack"; from: Id; to: Id; seq: number; frag: number; batch?: AckBatch }
  /** The sender gave up on every message below `floor` and has nothing else to send. */
  | { type: "floor"; from: Id; to: Id; floor: number };

/** NAT mapping behaviour in RFC 5780 terms, as NAT_INFO carries it (one byte: the index). */
export const NAT_MAPPINGS = [
  "unknown",
  "endpoint-independent",
  "address-dependent",
  "address-and-port-dependent",
] as const;
export type NatMapping = typeof NAT_MAPPINGS[number];

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

/**
 * What a batched DATA_ACK acknowledges besides its first fragment: every message below
 * `below` whole (received, or given up by its sender), and in each block the fragments of
 * message `seq` whose bits are set in `mask` (bit i: fragment i). Blocks come in increasing
 * `seq` order, none below `below`, none empty, at most MAX_ACK_BLOCKS.
 */
export interface AckBatch {
  below: number;
  blocks: AckBlock[];
}
export interface AckBlock {
  seq: number;
  mask: number;
}

export type Decoded = Result<Message>;

/**
 * The kind of a peer-to-peer datagram from its header and length alone, without decoding it:
 * what a relay needs to forward only whole HELLO, HELLO_ACK and SEALED datagrams (the peer
 * decodes them anyway). Null for anything else, truncated or padded ones included.
 */
export function relayedKind(b: Uint8Array): "hello" | "hello_ack" | "sealed" | null {
  if (b.length < HEADER_LEN || b[0] !== MAGIC || b[1] !== VERSION) return null;
  switch (b[2]) {
    case LAYOUTS.hello.code:
      return b.length === HELLO_LEN ? "hello" : null;
    case LAYOUTS.hello_ack.code:
      return b.length >= HELLO_ACK_MIN && b.length <= MAX_DATAGRAM ? "hello_ack" : null;
    case LAYOUTS.sealed.code:
      return b.length >= HEADER_LEN + SEALED_MIN && b.length <= MAX_LARGE_DATAGRAM
        ? "sealed"
        : null;
    default:
      return null;
  }
}
const HELLO_LEN = HEADER_LEN + 3 * ID_LEN + HS_INIT_LEN + MAC1_LEN;
const HELLO_ACK_MIN = HEADER_LEN + 2 * ID_LEN + HS_RESP_LEN + SEALED_MIN;

/** Cheap demultiplexing test: is this (claiming to be) a p2pchat datagram? */
export function looksLikeP2p(b: Uint8Array): boolean {
  return b.length >= HEADER_LEN && b[0] === MAGIC;
}

// ---- pieces: each field kind's writer and reader ----

/** Malformed input; decode turns it into `{ ok: false, reason: message }`. */
class Bad extends Error {}

/**
 * How one kind of field is written and read. Writers are total (they pad, cut or zero-fill
 * rather than fail); readers throw Short or Bad, which decode catches.
 */
interface Piece<V> {
  write(w: Writer, v: V): void;
  read(r: Reader): V;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** n random bytes, as 2n hex chars in memory. */
function hex(n: number): Piece<string> {
  return {
    write(w, v) {
      for (let i = 0; i < n; i++) w.u8(parseInt(v.slice(2 * i, 2 * i + 2), 16));
    },
    read: (r) => toHex(r.bytes(n)),
  };
}
const id = hex(ID_LEN);
const token = hex(TOKEN_LEN);
const nonce = hex(NONCE_LEN);

/** Length byte and UTF-8: writes cut at `cut` bytes, reads refuse more than `max`. */
function str8(max: number, cut = MAX_LEN8): Piece<string> {
  return {
    write(w, v) {
      const b = enc.encode(v).subarray(0, cut);
      w.u8(b.length).bytes(b);
    },
    read(r) {
      const n = r.u8();
      if (n > max) throw new Bad("string too long");
      try {
        return dec.decode(r.bytes(n));
      } catch (e) {
        if (e instanceof Short) throw e;
        throw new Bad("invalid UTF-8");
      }
    },
  };
}
const name = str8(MAX_NAME);
const text = str8(MAX_LEN8, MAX_TEXT);

/** Length byte and bytes; reads accept only the lengths in `allowed`. */
function var8(allowed: readonly number[]): Piece<Uint8Array> {
  return {
    write(w, v) {
      w.u8(Math.min(v.length, MAX_LEN8)).bytes(v.subarray(0, MAX_LEN8));
    },
    read(r) {
      const n = r.u8();
      if (!allowed.includes(n)) throw new Bad("bad length");
      return r.bytes(n).slice();
    },
  };
}
const optCookie = var8([0, COOKIE_LEN]);
const noSig = var8([0]);
const sig = var8([SIG_LEN]);
const roomProof = var8([ROOM_PROOF_LEN]);

/** Exactly n bytes: shorter values are zero-padded and longer ones cut, so encode stays total. */
function fixed(n: number): Piece<Uint8Array> {
  return {
    write(w, v) {
      const out = new Uint8Array(n);
      out.set(v.subarray(0, n));
      w.bytes(out);
    },
    read: (r) => r.bytes(n).slice(),
  };
}
const key = fixed(KEY_LEN);
const mac1 = fixed(MAC1_LEN);
const cookie = fixed(COOKIE_LEN);

/** n bytes read; written as given (the encryption layer builds them to size). */
function sized(n: number): Piece<Uint8Array> {
  return { write: (w, v) => void w.bytes(v), read: (r) => r.bytes(n).slice() };
}
const init = sized(HS_INIT_LEN);
const resp = sized(HS_RESP_LEN);

/** The rest of the datagram: a view into it, not a copy. */
const rest: Piece<Uint8Array> = { write: (w, v) => void w.bytes(v), read: (r) => r.rest() };

/** The rest of the datagram, at least an empty plaintext's sealed size. */
const sealed: Piece<Uint8Array> = {
  write: rest.write,
  read(r) {
    if (r.remaining < SEALED_MIN) throw new Short();
    return r.rest();
  },
};

const addr: Piece<Addr> = {
  write(w, a) {
    const v4 = ipv4Bytes(a.host);
    if (v4) w.u8(4).bytes(v4);
    else w.u8(6).bytes(ipv6Bytes(a.host) ?? new Uint8Array(16));
    w.u16(a.port);
  },
  read(r) {
    const fam = r.u8();
    let host: string;
    if (fam === 4) host = ipFromBytes(r.bytes(4));
    else if (fam === 6) host = ipFromBytes(r.bytes(16));
    else throw new Bad("bad address family");
    const port = r.u16();
    if (port === 0) throw new Bad("port 0");
    return { host, port };
  },
};

/** Count byte and addresses; writes keep the first MAX_LOCALS. */
const addrs: Piece<Addr[]> = {
  write(w, list) {
    const l = list.slice(0, MAX_LOCALS);
    w.u8(l.length);
    for (const a of l) addr.write(w, a);
  },
  read(r) {
    const n = r.u8();
    if (n > MAX_LOCALS) throw new Bad("too many addresses");
    const out: Addr[] = [];
    for (let i = 0; i < n; i++) out.push(addr.read(r));
    return out;
  },
};

const member: Piece<Member> = {
  write(w, m) {
    id.write(w, m.id);
    name.write(w, m.name);
    addr.write(w, m.public);
    addrs.write(w, m.locals);
    key.write(w, m.key);
  },
  read: (r) => ({
    id: id.read(r),
    name: name.read(r),
    public: addr.read(r),
    locals: addrs.read(r),
    key: key.read(r),
  }),
};

/** Count byte and member entries. */
const members: Piece<Member[]> = {
  write(w, list) {
    w.u8(list.length);
    for (const m of list) member.write(w, m);
  },
  read(r) {
    const n = r.u8();
    const out: Member[] = [];
    for (let i = 0; i < n; i++) out.push(member.read(r));
    return out;
  },
};

/** `below u32` · count u8 · count × (`seq u32` · `mask u32`); writes keep MAX_ACK_BLOCKS. */
const ackBatch: Piece<AckBatch> = {
  write(w, b) {
    const blocks = b.blocks.slice(0, MAX_ACK_BLOCKS);
    w.u32(b.below).u8(blocks.length);
    for (const k of blocks) w.u32(k.seq).u32(k.mask);
  },
  read(r) {
    const below = r.u32(), n = r.u8();
    if (n > MAX_ACK_BLOCKS) throw new Bad("too many blocks");
    const blocks: AckBlock[] = [];
    let last = below - 1;
    for (let i = 0; i < n; i++) {
      const seq = r.u32(), mask = r.u32();
      if (seq <= last) throw new Bad("blocks out of order");
      if (mask === 0) throw new Bad("empty block");
      blocks.push({ seq, mask });
      last = seq;
    }
    return { below, blocks };
  },
};

// ---- messages: each type's code, writer and reader ----

type Type = Message["type"];
type Of<K extends Type> = Extract<Message, { type: K }>;

/** One message type: its code and its body (after the header), written and read. */
interface Layout<K extends Type> {
  readonly code: number;
  write(w: Writer, m: Of<K>): void;
  read(r: Reader): Omit<Of<K>, "type">;
}
type Layouts = { readonly [K in Type]: Layout<K> };

/** The body KEEPALIVE and LEAVE share. */
const idToken = {
  write(w: Writer, m: { id: Id; token: string }): void {
    id.write(w, m.id);
    token.write(w, m.token);
  },
  read: (r: Reader) => ({ id: id.read(r), token: token.read(r) }),
};

const LAYOUTS = {
  register: {
    code: 0x01,
    write(w, m) {
      id.write(w, m.id);
      nonce.write(w, m.nonce);
      name.write(w, m.name);
      name.write(w, m.room);
      addrs.write(w, m.locals);
      key.write(w, m.key);
      optCookie.write(w, m.cookie);
      sig.write(w, m.sig);
      // Open rooms write nothing here, so their REGISTERs are what they always were.
      if (m.cookie.length > 0 && m.proof && m.proof.length > 0) roomProof.write(w, m.proof);
    },
    read(r) {
      const head = {
        id: id.read(r),
        nonce: nonce.read(r),
        name: name.read(r),
        room: name.read(r),
        locals: addrs.read(r),
        key: key.read(r),
        cookie: optCookie.read(r),
      };
      // Only a REGISTER that echoes a cookie is signed (the signature covers the cookie), and
      // only a signed one may end with a room proof (the signature covers that too).
      const signed = { ...head, sig: (head.cookie.length ? sig : noSig).read(r) };
      if (head.cookie.length === 0 || r.remaining === 0) return signed;
      return { ...signed, proof: roomProof.read(r) };
    },
  },
  register_ok: {
    code: 0x02,
    write(w, m) {
      id.write(w, m.id);
      nonce.write(w, m.nonce);
      token.write(w, m.token);
      addr.write(w, m.public);
      w.u32(m.keepaliveMs).u16(m.total);
      members.write(w, m.members);
    },
    read: (r) => ({
      id: id.read(r),
      nonce: nonce.read(r),
      token: token.read(r),
      public: addr.read(r),
      keepaliveMs: r.u32(),
      total: r.u16(),
      members: members.read(r),
    }),
  },
  error: {
    code: 0x03,
    write(w, m) {
      w.u8(m.code).u8(m.about);
      token.write(w, m.token);
      text.write(w, m.text);
    },
    read: (r) => ({ code: r.u8(), about: r.u8(), token: token.read(r), text: text.read(r) }),
  },
  peer_joined: {
    code: 0x04,
    write(w, m) {
      token.write(w, m.token);
      member.write(w, m.member);
    },
    read: (r) => ({ token: token.read(r), member: member.read(r) }),
  },
  peer_left: {
    code: 0x05,
    write(w, m) {
      token.write(w, m.token);
      id.write(w, m.id);
      name.write(w, m.name);
    },
    read: (r) => ({ token: token.read(r), id: id.read(r), name: name.read(r) }),
  },
  keepalive: { code: 0x06, ...idToken },
  keepalive_ack: {
    code: 0x07,
    write(w, m) {
      id.write(w, m.id);
      token.write(w, m.token);
      addr.write(w, m.public);
    },
    read: (r) => ({ id: id.read(r), token: token.read(r), public: addr.read(r) }),
  },
  leave: { code: 0x08, ...idToken },
  members: {
    code: 0x09,
    write(w, m) {
      token.write(w, m.token);
      w.u16(m.total);
      members.write(w, m.members);
    },
    read: (r) => ({ token: token.read(r), total: r.u16(), members: members.read(r) }),
  },
  cookie: {
    code: 0x0a,
    write(w, m) {
      nonce.write(w, m.nonce);
      cookie.write(w, m.cookie);
    },
    read: (r) => ({ nonce: nonce.read(r), cookie: cookie.read(r) }),
  },
  connect: {
    code: 0x10,
    write(w, m) {
      id.write(w, m.from);
      token.write(w, m.token);
      id.write(w, m.to);
      nonce.write(w, m.nonce);
    },
    read: (r) => ({ from: id.read(r), token: token.read(r), to: id.read(r), nonce: nonce.read(r) }),
  },
  connect_fwd: {
    code: 0x11,
    write(w, m) {
      token.write(w, m.token);
      member.write(w, m.member);
      nonce.write(w, m.nonce);
    },
    read: (r) => ({ token: token.read(r), member: member.read(r), nonce: nonce.read(r) }),
  },
  relay: {
    code: 0x20,
    write(w, m) {
      id.write(w, m.from);
      token.write(w, m.token);
      id.write(w, m.to);
      rest.write(w, m.payload);
    },
    read: (r) => ({
      from: id.read(r),
      token: token.read(r),
      to: id.read(r),
      payload: rest.read(r),
    }),
  },
  relayed: {
    code: 0x21,
    write(w, m) {
      token.write(w, m.token);
      id.write(w, m.from);
      rest.write(w, m.payload);
    },
    read: (r) => ({ token: token.read(r), from: id.read(r), payload: rest.read(r) }),
  },
  hello: {
    code: 0x30,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      nonce.write(w, m.nonce);
      init.write(w, m.init);
      mac1.write(w, m.mac1);
    },
    read: (r) => ({
      from: id.read(r),
      to: id.read(r),
      nonce: nonce.read(r),
      init: init.read(r),
      mac1: mac1.read(r),
    }),
  },
  hello_ack: {
    code: 0x31,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      resp.write(w, m.resp);
      sealed.write(w, m.sealed);
    },
    read: (r) => ({ from: id.read(r), to: id.read(r), resp: resp.read(r), sealed: sealed.read(r) }),
  },
  ping: {
    code: 0x32,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      nonce.write(w, m.nonce);
    },
    read: (r) => ({ from: id.read(r), to: id.read(r), nonce: nonce.read(r) }),
  },
  pong: {
    code: 0x33,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      nonce.write(w, m.nonce);
      addr.write(w, m.observed);
    },
    read: (r) => ({
      from: id.read(r),
      to: id.read(r),
      nonce: nonce.read(r),
      observed: addr.read(r),
    }),
  },
  nat_info: {
    code: 0x34,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      w.u8(m.have ? 1 : 0).u8(NAT_MAPPINGS.indexOf(m.mapping));
      addrs.write(w, m.mapped);
    },
    read(r) {
      const from = id.read(r), to = id.read(r), have = r.u8();
      if (have > 1) throw new Bad("bad flag");
      const mapping = NAT_MAPPINGS[r.u8()];
      if (mapping === undefined) throw new Bad("bad mapping");
      return { from, to, have: have === 1, mapping, mapped: addrs.read(r) };
    },
  },
  mtu_probe: {
    code: 0x35,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      w.u32(m.id).bytes(new Uint8Array(m.pad));
    },
    read(r) {
      const from = id.read(r), to = id.read(r), probe = r.u32(), pad = r.rest();
      // Zeros only, so that what decodes re-encodes to the same bytes.
      if (pad.some((x) => x !== 0)) throw new Bad("bad padding");
      return { from, to, id: probe, pad: pad.length };
    },
  },
  mtu_ack: {
    code: 0x36,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      w.u32(m.id).u16(m.size).u16(m.limit);
    },
    read: (r) => ({ from: id.read(r), to: id.read(r), id: r.u32(), size: r.u16(), limit: r.u16() }),
  },
  data: {
    code: 0x40,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      w.u32(m.seq).u32(m.floor).u32(m.msgNo).u8(m.frag).u8(m.frags).u8(m.direct ? 1 : 0);
      rest.write(w, m.chunk);
    },
    read(r) {
      const from = id.read(r), to = id.read(r), seq = r.u32(), floor = r.u32(), msgNo = r.u32();
      const frag = r.u8(), frags = r.u8(), kind = r.u8();
      if (frags === 0 || frags > MAX_FRAGS || frag >= frags) throw new Bad("bad fragment");
      if (kind > 1) throw new Bad("bad kind");
      return { from, to, seq, floor, msgNo, frag, frags, direct: kind === 1, chunk: rest.read(r) };
    },
  },
  data_ack: {
    code: 0x41,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      w.u32(m.seq).u8(m.frag);
      if (m.batch) ackBatch.write(w, m.batch);
    },
    read(r) {
      const from = id.read(r), to = id.read(r), seq = r.u32(), frag = r.u8();
      // Without the batch this is the single-fragment DATA_ACK of earlier versions.
      if (r.remaining === 0) return { from, to, seq, frag };
      return { from, to, seq, frag, batch: ackBatch.read(r) };
    },
  },
  floor: {
    code: 0x42,
    write(w, m) {
      id.write(w, m.from);
      id.write(w, m.to);
      w.u32(m.floor);
    },
    read: (r) => ({ from: id.read(r), to: id.read(r), floor: r.u32() }),
  },
  sealed: {
    code: 0x50,
    write(w, m) {
      sealed.write(w, m.body);
    },
    read: (r) => ({ body: sealed.read(r) }),
  },
} as const satisfies Layouts;

function layoutOf<K extends Type>(type: K): Layout<K> {
  const all: Layouts = LAYOUTS;
  return all[type];
}

const TYPES = Object.keys(LAYOUTS) as Type[];

/** Type codes by upper-case message name (`T.REGISTER_OK`), as they appear on the wire. */
export const T = Object.fromEntries(TYPES.map((t) => [t.toUpperCase(), LAYOUTS[t].code])) as {
  readonly [K in Type as Uppercase<K>]: (typeof LAYOUTS)[K]["code"];
};

const TYPE_OF = new Map<number, Type>(TYPES.map((t) => [LAYOUTS[t].code, t]));

// ---- encode and decode ----

/** Types that may exceed MAX_DATAGRAM: those that carry a DATA of several fragments. */
const LARGE = new Set<number>([
  LAYOUTS.sealed.code,
  LAYOUTS.relay.code,
  LAYOUTS.relayed.code,
  LAYOUTS.data.code,
  LAYOUTS.mtu_probe.code,
]);

/** Reused by every encode: encoders run one at a time and finish() copies out. */
const scratch = new Writer(2048);

/**
 * Encodes a message. Total: any well-typed message encodes.
 * @example socket.send(encode({ type: "keepalive", id, token }), server);
 */
export function encode(m: Message): Uint8Array {
  const layout = layoutOf(m.type);
  const w = scratch.reset();
  w.u8(MAGIC).u8(VERSION).u8(layout.code);
  layout.write(w, m);
  return w.finish();
}

/**
 * Decodes one datagram. Never throws; anything malformed comes back as `{ ok: false }`.
 * @example const d = decode(datagram); if (!d.ok) drops.count(d.reason); else handle(d.value);
 */
export function decode(b: Uint8Array): Decoded {
  if (b.length < HEADER_LEN) return { ok: false, reason: "short" };
  if (b.length > MAX_DATAGRAM && !(b.length <= MAX_LARGE_DATAGRAM && LARGE.has(b[2]!))) {
    return { ok: false, reason: "oversize" };
  }
  if (b[0] !== MAGIC) return { ok: false, reason: "magic" };
  if (b[1] !== VERSION) return { ok: false, reason: "version" };
  const type = TYPE_OF.get(b[2]!);
  if (!type) return { ok: false, reason: "type" };
  const r = new Reader(b);
  r.pos = HEADER_LEN;
  try {
    const value = { type, ...layoutOf(type).read(r) } as Message;
    // Trailing bytes mean a sender we do not understand: refuse rather than guess.
    if (r.remaining !== 0) return { ok: false, reason: "trailing bytes" };
    return { ok: true, value };
  } catch (e) {
    if (e instanceof Short) return { ok: false, reason: "truncated" };
    if (e instanceof Bad) return { ok: false, reason: e.message };
    return { ok: false, reason: "malformed" };
  }
}

function addrSize(a: Addr): number {
  return a.host.includes(":") ? ADDR6_LEN : ADDR4_LEN;
}

/** Encoded size of a member entry, so senders can page member lists under MAX_SEND. */
export function memberSize(m: Member): number {
  // The 1s are the name's length byte and the locals' count byte.
  return ID_LEN + 1 + enc.encode(m.name).length + addrSize(m.public) + 1 +
    m.locals.slice(0, MAX_LOCALS).reduce((n, a) => n + addrSize(a), 0) + KEY_LEN;
}

/** What HELLO's mac1 covers: the whole datagram before the mac1 field. */
export function helloMacInput(m: Extract<Message, { type: "hello" }>): Uint8Array {
  const b = encode({ ...m, mac1: new Uint8Array(MAC1_LEN) });
  return b.subarray(0, b.length - MAC1_LEN);
}

const SIG_CONTEXT = enc.encode("p2pchat register v1");

/**
 * What a REGISTER's signature covers: a context string and the whole message with its cookie
 * (and room proof) but without the signature, so a signature proves the key holder asked for
 * exactly this name, room and address list, after seeing this cookie.
 */
export function registerSigInput(m: Extract<Message, { type: "register" }>): Uint8Array {
  return withContext(SIG_CONTEXT, encode({ ...m, sig: new Uint8Array(0) }));
}

const PROOF_CONTEXT = enc.encode("p2pchat room proof v1");

/**
 * What a locked room's proof signs: a context string and the REGISTER without its signature
 * and proof. It includes the cookie (this source address, this minute), the id, nonce, name,
 * room and key, so a captured proof is worth nothing for any other registration.
 */
export function roomProofInput(m: Extract<Message, { type: "register" }>): Uint8Array {
  const { proof: _, ...rest } = m;
  return withContext(PROOF_CONTEXT, encode({ ...rest, sig: new Uint8Array(0) }));
}

function withContext(context: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(context.length + body.length);
  out.set(context);
  out.set(body, context.length);
  return out;
}
