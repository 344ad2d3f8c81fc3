/**
 * STUN message codec (RFC 8489): header, attribute TLVs, XOR-MAPPED-ADDRESS,
 * MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT. Pure: no I/O, no clock.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { type Addr, ipFromBytes, ipv4Bytes, ipv6Bytes } from "../wire/addr.ts";
import type { Result } from "../wire/result.ts";
import { crc32 } from "./_crc32.ts";

export const MAGIC_COOKIE = 0x2112a442;
export const HEADER_SIZE = 20;
/** Larger datagrams are refused: our STUN traffic is tiny, and a bound caps decoding work. */
export const MAX_STUN_SIZE = 1500;
export const METHOD_BINDING = 0x001;
const FINGERPRINT_XOR = 0x5354554e;
const INTEGRITY_SIZE = 20;

/** Attribute type numbers (RFC 8489 section 18.3, RFC 8445 for the ICE ones, RFC 5780). */
export const StunAttr = {
  MAPPED_ADDRESS: 0x0001,
  /** RFC 5780: "answer from the other address and/or port". */
  CHANGE_REQUEST: 0x0003,
  /** RFC 3489's name for what RFC 5780 calls OTHER-ADDRESS (same layout). */
  CHANGED_ADDRESS: 0x0005,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014,
  NONCE: 0x0015,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  XOR_MAPPED_ADDRESS: 0x0020,
  PRIORITY: 0x0024,
  USE_CANDIDATE: 0x0025,
  /** RFC 5780: pads a message to test fragmentation. */
  PADDING: 0x0026,
  /** RFC 5780: "send the answer to this port of my address". */
  RESPONSE_PORT: 0x0027,
  SOFTWARE: 0x8022,
  ALTERNATE_SERVER: 0x8023,
  FINGERPRINT: 0x8028,
  ICE_CONTROLLED: 0x8029,
  ICE_CONTROLLING: 0x802a,
  /** RFC 5780: the server address the response was sent from. */
  RESPONSE_ORIGIN: 0x802b,
  /** RFC 5780: the server's address with the other IP and the other port. */
  OTHER_ADDRESS: 0x802c,
} as const;

export type StunClass = "request" | "indication" | "success" | "error";
const CLASSES: readonly StunClass[] = ["request", "indication", "success", "error"];

export interface StunAttribute {
  type: number;
  value: Uint8Array;
  /** Start of this attribute's TLV header in `StunMessage.raw`; set by decodeStun only. */
  offset?: number;
}

export interface StunMessage {
  /** 12-bit method, e.g. METHOD_BINDING. */
  method: number;
  class: StunClass;
  /** 12 bytes. */
  transactionId: Uint8Array;
  /** In wire order; after MESSAGE-INTEGRITY only FINGERPRINT (and MI-SHA256) are kept. */
  attributes: StunAttribute[];
  /** A private copy of the decoded datagram; MESSAGE-INTEGRITY and FINGERPRINT hash over it. */
  raw?: Uint8Array;
}

export type Decoded<T> = Result<T>;

export interface EncodeOptions {
  /** Appends MESSAGE-INTEGRITY keyed with this (see shortTermKey, longTermKey). */
  integrityKey?: Uint8Array;
  /** Appends FINGERPRINT, which lets a receiver tell STUN from other traffic on the port. */
  fingerprint?: boolean;
}

function u16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

function put16(b: Uint8Array, i: number, v: number): void {
  b[i] = (v >>> 8) & 0xff;
  b[i + 1] = v & 0xff;
}

function put32(b: Uint8Array, i: number, v: number): void {
  put16(b, i, v >>> 16);
  put16(b, i + 2, v & 0xffff);
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Copies the first 12 bytes of `t`, zero-filled, so encoders stay total. */
function txid12(t: Uint8Array): Uint8Array {
  const out = new Uint8Array(12);
  out.set(t.subarray(0, 12));
  return out;
}

/**
 * Cheap demultiplexing test: could this datagram be STUN? Checks the two zero leading bits,
 * the magic cookie, and that the length field is a multiple of 4 matching the datagram.
 * @example if (looksLikeStun(datagram)) handleStun(datagram); else handleChat(datagram);
 */
export function looksLikeStun(bytes: Uint8Array): boolean {
  if (bytes.length < HEADER_SIZE || (bytes[0]! & 0xc0) !== 0) return false;
  if (u32(bytes, 4) !== MAGIC_COOKIE) return false;
  const len = u16(bytes, 2);
  return len % 4 === 0 && HEADER_SIZE + len === bytes.length;
}

/** Decodes a STUN datagram. Never throws; the result owns a copy of the bytes. */
export function decodeStun(bytes: Uint8Array): Decoded<StunMessage> {
  try {
    return decodeUnchecked(bytes);
  } catch (e) {
    // Belt and braces: the parser checks bounds itself, but a decoder must never throw.
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

function decodeUnchecked(input: Uint8Array): Decoded<StunMessage> {
  const fail = (reason: string): Decoded<StunMessage> => ({ ok: false, reason });
  if (input.length < HEADER_SIZE) return fail(`${input.length} bytes is shorter than a header`);
  if (input.length > MAX_STUN_SIZE) return fail(`${input.length} bytes is over ${MAX_STUN_SIZE}`);
  if ((input[0]! & 0xc0) !== 0) return fail("first two bits are not zero");
  if (u32(input, 4) !== MAGIC_COOKIE) return fail("no magic cookie");
  const len = u16(input, 2);
  if (len % 4 !== 0) return fail(`length ${len} is not a multiple of 4`);
  if (HEADER_SIZE + len !== input.length) {
    return fail(`length field says ${HEADER_SIZE + len} bytes, datagram has ${input.length}`);
  }
  const raw = input.slice();
  const type = u16(raw, 0);
  const attributes: StunAttribute[] = [];
  let afterIntegrity = false;
  let pos = HEADER_SIZE;
  while (pos < raw.length) {
    if (pos + 4 > raw.length) return fail(`attribute header at ${pos} is truncated`);
    const t = u16(raw, pos);
    const n = u16(raw, pos + 2);
    if (pos + 4 + pad4(n) > raw.length) return fail(`attribute 0x${hex16(t)} overruns the message`);
    const attr = { type: t, value: raw.subarray(pos + 4, pos + 4 + n), offset: pos };
    pos += 4 + pad4(n);
    if (t === StunAttr.FINGERPRINT) {
      if (n !== 4) return fail(`FINGERPRINT has length ${n}`);
      if (pos !== raw.length) return fail("FINGERPRINT is not the last attribute");
    } else if (t === StunAttr.MESSAGE_INTEGRITY && !afterIntegrity) {
      if (n !== INTEGRITY_SIZE) return fail(`MESSAGE-INTEGRITY has length ${n}`);
      afterIntegrity = true;
    } else if (afterIntegrity && t !== StunAttr.MESSAGE_INTEGRITY_SHA256) {
      // RFC 8489 14.5: anything else after MESSAGE-INTEGRITY is unauthenticated; ignore it.
      continue;
    }
    attributes.push(attr);
  }
  return {
    ok: true,
    value: {
      method: (type & 0xf) | ((type >> 1) & 0x70) | ((type >> 2) & 0xf80),
      class: CLASSES[((type >> 4) & 1) | ((type >> 7) & 2)]!,
      transactionId: raw.subarray(8, 20),
      attributes,
      raw,
    },
  };
}

function hex16(n: number): string {
  return n.toString(16).padStart(4, "0");
}

/**
 * Encodes a message. Total: MESSAGE-INTEGRITY and FINGERPRINT in `msg.attributes` are dropped
 * (they are computed from `opts`), the method is masked to 12 bits, the transaction id is
 * cut or zero-filled to 12 bytes, and attributes that would overflow the 16-bit length are
 * left out.
 * @example encodeStun(msg, { integrityKey: shortTermKey("pass"), fingerprint: true })
 */
export function encodeStun(msg: StunMessage, opts: EncodeOptions = {}): Uint8Array {
  const tail = (opts.integrityKey ? 4 + INTEGRITY_SIZE : 0) + (opts.fingerprint ? 8 : 0);
  const attrs: { type: number; value: Uint8Array }[] = [];
  let body = 0;
  for (const a of msg.attributes) {
    if (a.type === StunAttr.MESSAGE_INTEGRITY || a.type === StunAttr.FINGERPRINT) continue;
    const value = a.value.subarray(0, 0xffff);
    if (body + 4 + pad4(value.length) + tail > 0xffff) continue;
    attrs.push({ type: a.type & 0xffff, value });
    body += 4 + pad4(value.length);
  }
  const out = new Uint8Array(HEADER_SIZE + body + tail);
  const m = msg.method & 0xfff;
  const c = CLASSES.indexOf(msg.class) & 3;
  put16(
    out,
    0,
    (m & 0xf) | ((m & 0x70) << 1) | ((m & 0xf80) << 2) | ((c & 1) << 4) | ((c & 2) << 7),
  );
  put32(out, 4, MAGIC_COOKIE);
  out.set(txid12(msg.transactionId), 8);
  let pos = HEADER_SIZE;
  for (const a of attrs) {
    put16(out, pos, a.type);
    put16(out, pos + 2, a.value.length);
    out.set(a.value, pos + 4);
    pos += 4 + pad4(a.value.length);
  }
  if (opts.integrityKey) {
    const mac = integrityOver(out.subarray(0, pos), opts.integrityKey);
    put16(out, pos, StunAttr.MESSAGE_INTEGRITY);
    put16(out, pos + 2, INTEGRITY_SIZE);
    out.set(mac, pos + 4);
    pos += 4 + INTEGRITY_SIZE;
  }
  if (opts.fingerprint) {
    const fp = fingerprintOver(out.subarray(0, pos));
    put16(out, pos, StunAttr.FINGERPRINT);
    put16(out, pos + 2, 4);
    put32(out, pos + 4, fp);
    pos += 8;
  }
  put16(out, 2, pos - HEADER_SIZE);
  return out;
}

/** The message up to an attribute, with the length field set as if that attribute ended it. */
function prefixWithLength(prefix: Uint8Array, attrSize: number): Uint8Array {
  const copy = prefix.slice();
  put16(copy, 2, prefix.length - HEADER_SIZE + attrSize);
  return copy;
}

function integrityOver(prefix: Uint8Array, key: Uint8Array): Uint8Array {
  const data = prefixWithLength(prefix, 4 + INTEGRITY_SIZE);
  return new Uint8Array(createHmac("sha1", key).update(data).digest());
}

function fingerprintOver(prefix: Uint8Array): number {
  return (crc32(prefixWithLength(prefix, 8)) ^ FINGERPRINT_XOR) >>> 0;
}

/** First attribute's decoded position, or undefined (also for messages not from decodeStun). */
function located(msg: StunMessage, type: number): { raw: Uint8Array; at: StunAttribute } | null {
  const at = msg.attributes.find((a) => a.type === type);
  if (!at || at.offset === undefined || !msg.raw) return null;
  return { raw: msg.raw, at };
}

/**
 * True if a decoded message's MESSAGE-INTEGRITY matches `key`; false if it is absent or wrong.
 * @example verifyIntegrity(msg, shortTermKey(password))
 */
export function verifyIntegrity(msg: StunMessage, key: Uint8Array): boolean {
  const l = located(msg, StunAttr.MESSAGE_INTEGRITY);
  if (!l || l.at.value.length !== INTEGRITY_SIZE) return false;
  const expected = integrityOver(l.raw.subarray(0, l.at.offset), key);
  return timingSafeEqual(expected, l.at.value);
}

/** True if a decoded message's FINGERPRINT matches its bytes; false if it is absent or wrong. */
export function verifyFingerprint(msg: StunMessage): boolean {
  const l = located(msg, StunAttr.FINGERPRINT);
  if (!l || l.at.value.length !== 4) return false;
  return fingerprintOver(l.raw.subarray(0, l.at.offset)) === u32(l.at.value, 0);
}

/** SASLprep stand-in: NFKC does the mapping that matters for real passwords (RFC 5769 2.4). */
function saslprep(s: string): string {
  return s.normalize("NFKC");
}

/** Short-term credential key (RFC 8489 9.1.1): the password's UTF-8 bytes. */
export function shortTermKey(password: string): Uint8Array {
  return new TextEncoder().encode(password);
}

/** Long-term credential key (RFC 8489 9.2.2): MD5(username ":" realm ":" SASLprep(password)). */
export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  const text = `${username}:${realm}:${saslprep(password)}`;
  return new Uint8Array(createHash("md5").update(text, "utf8").digest());
}

/** Value of the first attribute of `type`, or undefined (RFC 8489: later duplicates are ignored). */
export function findAttr(msg: StunMessage, type: number): Uint8Array | undefined {
  return msg.attributes.find((a) => a.type === type)?.value;
}

function hostBytes(host: string): Uint8Array | null {
  return ipv4Bytes(host) ?? ipv6Bytes(host);
}

/**
 * Builds an XOR-MAPPED-ADDRESS attribute for an IPv4 or IPv6 address.
 * @throws RangeError if `addr.host` is not an IP literal or the port is out of range.
 */
export function xorMappedAddress(addr: Addr, transactionId: Uint8Array): StunAttribute {
  const ip = hostBytes(addr.host);
  if (!ip) throw new RangeError(`Cannot encode address: "${addr.host}" is not an IP literal`);
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 0xffff) {
    throw new RangeError(`Cannot encode address: port ${addr.port} is out of range`);
  }
  const value = new Uint8Array(4 + ip.length);
  value[1] = ip.length === 4 ? 1 : 2;
  put16(value, 2, addr.port ^ (MAGIC_COOKIE >>> 16));
  const mask = xorMask(transactionId);
  for (let i = 0; i < ip.length; i++) value[4 + i] = ip[i]! ^ mask[i]!;
  return { type: StunAttr.XOR_MAPPED_ADDRESS, value };
}

/** Cookie then transaction id: IPv4 uses the first 4 bytes, IPv6 all 16. */
function xorMask(transactionId: Uint8Array): Uint8Array {
  const mask = new Uint8Array(16);
  put32(mask, 0, MAGIC_COOKIE);
  mask.set(txid12(transactionId), 4);
  return mask;
}

/** Family, port and address bytes of a (XOR-)MAPPED-ADDRESS value, or null if malformed. */
function parseAddress(value: Uint8Array): { port: number; ip: Uint8Array } | null {
  if (value.length < 4) return null;
  const size = value[1] === 1 ? 4 : value[1] === 2 ? 16 : 0;
  if (size === 0 || value.length !== 4 + size) return null;
  return { port: u16(value, 2), ip: value.slice(4) };
}

/** Decodes an XOR-MAPPED-ADDRESS value, or null if malformed. */
export function decodeXorMappedAddress(value: Uint8Array, transactionId: Uint8Array): Addr | null {
  const a = parseAddress(value);
  if (!a) return null;
  const mask = xorMask(transactionId);
  for (let i = 0; i < a.ip.length; i++) a.ip[i] = a.ip[i]! ^ mask[i]!;
  return { host: ipFromBytes(a.ip), port: a.port ^ (MAGIC_COOKIE >>> 16) };
}

/** Decodes a MAPPED-ADDRESS value (sent by RFC 3489 servers), or null if malformed. */
export function decodeMappedAddress(value: Uint8Array): Addr | null {
  const a = parseAddress(value);
  return a && { host: ipFromBytes(a.ip), port: a.port };
}

/** A UTF-8 text attribute such as SOFTWARE, USERNAME, REALM or NONCE. */
export function textAttr(type: number, text: string): StunAttribute {
  return { type, value: new TextEncoder().encode(text) };
}

/** Decodes a UTF-8 text attribute value, or null if it is not valid UTF-8. */
export function decodeText(value: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(value);
  } catch {
    return null;
  }
}

/**
 * Builds an ERROR-CODE attribute.
 * @throws RangeError if `code` is not an integer in 300..699.
 * @example errorCodeAttr(400, "Bad Request")
 */
export function errorCodeAttr(code: number, reason: string): StunAttribute {
  if (!Number.isInteger(code) || code < 300 || code > 699) {
    throw new RangeError(`Cannot encode ERROR-CODE: ${code} is not in 300..699`);
  }
  const text = new TextEncoder().encode(reason);
  const value = new Uint8Array(4 + text.length);
  value[2] = Math.floor(code / 100);
  value[3] = code % 100;
  value.set(text, 4);
  return { type: StunAttr.ERROR_CODE, value };
}

/** Decodes an ERROR-CODE value into code (300..699) and reason phrase, or null if malformed. */
export function decodeErrorCode(value: Uint8Array): { code: number; reason: string } | null {
  if (value.length < 4) return null;
  const cls = value[2]! & 7;
  const num = value[3]!;
  if (cls < 3 || cls > 6 || num > 99) return null;
  const reason = decodeText(value.subarray(4));
  return reason === null ? null : { code: cls * 100 + num, reason };
}

// ---- RFC 5780 (NAT behaviour discovery) ---------------------------------------------------
//
// | attribute          | type   | value                                                         |
// | ------------------ | ------ | ------------------------------------------------------------- |
// | CHANGE-REQUEST     | 0x0003 | u32: bit 0x4 change IP, bit 0x2 change port, others zero      |
// | RESPONSE-PORT      | 0x0027 | port u16 · 2 zero bytes                                       |
// | RESPONSE-ORIGIN    | 0x802b | as MAPPED-ADDRESS: 0 · family u8 (1, 2) · port u16 · address |
// | OTHER-ADDRESS      | 0x802c | as MAPPED-ADDRESS                                             |

/** The two flags of CHANGE-REQUEST. */
export interface ChangeRequest {
  ip: boolean;
  port: boolean;
}

const CHANGE_IP = 0x4;
const CHANGE_PORT = 0x2;

/**
 * Builds a CHANGE-REQUEST attribute (RFC 5780 section 7.2).
 * @example changeRequestAttr({ ip: true, port: true }) // 00 03 00 04 00 00 00 06
 */
export function changeRequestAttr(change: ChangeRequest): StunAttribute {
  const value = new Uint8Array(4);
  value[3] = (change.ip ? CHANGE_IP : 0) | (change.port ? CHANGE_PORT : 0);
  return { type: StunAttr.CHANGE_REQUEST, value };
}

/** Decodes a CHANGE-REQUEST value; bits other than the two flags are ignored, as RFC 5780 asks. */
export function decodeChangeRequest(value: Uint8Array): Result<ChangeRequest> {
  if (value.length !== 4) return { ok: false, reason: `CHANGE-REQUEST has length ${value.length}` };
  const flags = value[3]!;
  return { ok: true, value: { ip: (flags & CHANGE_IP) !== 0, port: (flags & CHANGE_PORT) !== 0 } };
}

/**
 * Builds a RESPONSE-PORT attribute (RFC 5780 section 7.5).
 * @throws RangeError if `port` is not in 0..65535.
 */
export function responsePortAttr(port: number): StunAttribute {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new RangeError(`Cannot encode RESPONSE-PORT: port ${port} is out of range`);
  }
  const value = new Uint8Array(4);
  put16(value, 0, port);
  return { type: StunAttr.RESPONSE_PORT, value };
}

/** Decodes a RESPONSE-PORT value into the port. */
export function decodeResponsePort(value: Uint8Array): Result<number> {
  if (value.length !== 4) return { ok: false, reason: `RESPONSE-PORT has length ${value.length}` };
  return { ok: true, value: u16(value, 0) };
}

/**
 * Builds an attribute in MAPPED-ADDRESS layout (not XORed): MAPPED-ADDRESS, RESPONSE-ORIGIN,
 * OTHER-ADDRESS, CHANGED-ADDRESS. Decode its value with decodeAddressAttr.
 * @throws RangeError if `addr.host` is not an IP literal or the port is out of range.
 * @example addressAttr(StunAttr.OTHER_ADDRESS, { host: "192.0.2.1", port: 3479 })
 */
export function addressAttr(type: number, addr: Addr): StunAttribute {
  const ip = hostBytes(addr.host);
  if (!ip) throw new RangeError(`Cannot encode address: "${addr.host}" is not an IP literal`);
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 0xffff) {
    throw new RangeError(`Cannot encode address: port ${addr.port} is out of range`);
  }
  const value = new Uint8Array(4 + ip.length);
  value[1] = ip.length === 4 ? 1 : 2;
  put16(value, 2, addr.port);
  value.set(ip, 4);
  return { type, value };
}

/** Decodes a value in MAPPED-ADDRESS layout (RESPONSE-ORIGIN, OTHER-ADDRESS, ...). */
export function decodeAddressAttr(value: Uint8Array): Result<Addr> {
  const a = decodeMappedAddress(value);
  return a ? { ok: true, value: a } : { ok: false, reason: "malformed address attribute" };
}

/** Builds UNKNOWN-ATTRIBUTES (RFC 8489 section 14.9): the types a 420 error did not understand. */
export function unknownAttributesAttr(types: readonly number[]): StunAttribute {
  const value = new Uint8Array(types.length * 2);
  types.forEach((t, i) => put16(value, i * 2, t & 0xffff));
  return { type: StunAttr.UNKNOWN_ATTRIBUTES, value };
}

/** Decodes an UNKNOWN-ATTRIBUTES value into attribute types. */
export function decodeUnknownAttributes(value: Uint8Array): Result<number[]> {
  if (value.length % 2 !== 0) {
    return { ok: false, reason: `UNKNOWN-ATTRIBUTES has odd length ${value.length}` };
  }
  const out: number[] = [];
  for (let i = 0; i < value.length; i += 2) out.push(u16(value, i));
  return { ok: true, value: out };
}
