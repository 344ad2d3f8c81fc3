/**
 * PCP (RFC 6887) codec for the two requests a port mapper needs: MAP (create, renew or delete a
 * mapping) and ANNOUNCE (is a PCP server there?). Pure: bytes in, typed values out, no I/O.
 * Only IPv4 clients are supported: addresses travel as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
 *
 * Request header (24 bytes) · MAP body (36 bytes), all big-endian:
 *
 * | offset | size | request field                  | response field                 |
 * | ------ | ---- | ------------------------------ | ------------------------------ |
 * | 0      | 1    | version = 2                    | version = 2                    |
 * | 1      | 1    | R = 0 · opcode (7 bits)        | R = 1 · opcode                 |
 * | 2      | 2    | reserved = 0                   | reserved u8 · result code u8   |
 * | 4      | 4    | requested lifetime (s)         | lifetime (s)                   |
 * | 8      | 16   | client IP address              | epoch time u32 · 12 reserved   |
 * | 24     | 12   | MAP: mapping nonce             | MAP: mapping nonce (echoed)    |
 * | 36     | 1    | MAP: protocol (17 = UDP)       | MAP: protocol                  |
 * | 37     | 3    | MAP: reserved                  | MAP: reserved                  |
 * | 40     | 2    | MAP: internal port             | MAP: internal port             |
 * | 42     | 2    | MAP: suggested external port   | MAP: assigned external port    |
 * | 44     | 16   | MAP: suggested external IP     | MAP: assigned external IP      |
 *
 * Options may follow (code u8 · reserved u8 · length u16 · data padded to 4 bytes); this client
 * sends none and skips those it receives.
 */
import { Reader, Short, Writer } from "../wire/bytes.ts";
import { ipFromBytes, ipv4Bytes } from "../wire/addr.ts";
import type { Result } from "../wire/result.ts";

/** The UDP port PCP (and NAT-PMP) servers listen on. */
export const PCP_SERVER_PORT = 5351;
export const PCP_VERSION = 2;
export const OPCODE_ANNOUNCE = 0;
export const OPCODE_MAP = 1;
export const PROTO_UDP = 17;
export const HEADER_SIZE = 24;
export const MAP_BODY_SIZE = 36;
export const NONCE_SIZE = 12;
/** RFC 6887 §7: PCP messages are at most 1100 bytes. */
export const MAX_PCP_SIZE = 1100;

/** Result codes (RFC 6887 §7.4). */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

const RESULT_NAMES = new Map<number, string>(
  Object.entries(PcpResult).map(([name, code]) => [code, name]),
);

/** The name of a PCP result code, e.g. "NOT_AUTHORIZED", or "RESULT_<n>" for unknown ones. */
export function pcpResultName(code: number): string {
  return RESULT_NAMES.get(code) ?? `RESULT_${code}`;
}

/** A MAP request: lifetime 0 deletes the mapping that `nonce` and `internalPort` name. */
export interface MapRequest {
  /** 12 random bytes, kept for the mapping's life: renewals and the delete must repeat it. */
  nonce: Uint8Array;
  /** Our own IPv4 address, as the server sees it (the source of the request). */
  client: string;
  internalPort: number;
  lifetimeSec: number;
  /** A hint; 0 and "0.0.0.0" mean "any". Renewals repeat what was assigned. */
  suggestedPort?: number;
  suggestedHost?: string;
}

/** A decoded response. `map` is present for MAP responses only. */
export interface PcpResponse {
  opcode: number;
  result: number;
  lifetimeSec: number;
  epoch: number;
  map?: {
    nonce: Uint8Array;
    protocol: number;
    internalPort: number;
    externalPort: number;
    externalHost: string;
  };
}

/** `::ffff:a.b.c.d` for an IPv4 address (the unspecified address for unparsable input). */
function mapped(host: string): Uint8Array {
  const out = new Uint8Array(16);
  const v4 = ipv4Bytes(host);
  if (!v4) return out;
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(v4, 12);
  return out;
}

/** IPv4-mapped IPv6 back to dotted IPv4; other IPv6 addresses as IPv6 text. */
function unmapped(b: Uint8Array): string {
  const isMapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return isMapped ? ipFromBytes(b.subarray(12, 16)) : ipFromBytes(b);
}

function header(w: Writer, opcode: number, lifetimeSec: number, client: string): void {
  w.u8(PCP_VERSION).u8(opcode & 0x7f).u16(0).u32(lifetimeSec).bytes(mapped(client));
}

/** Encodes a MAP request for UDP (60 bytes). */
export function encodeMapRequest(req: MapRequest): Uint8Array {
  const w = new Writer(HEADER_SIZE + MAP_BODY_SIZE);
  header(w, OPCODE_MAP, req.lifetimeSec, req.client);
  const nonce = new Uint8Array(NONCE_SIZE);
  nonce.set(req.nonce.subarray(0, NONCE_SIZE));
  w.bytes(nonce).u8(PROTO_UDP).u8(0).u16(0);
  w.u16(req.internalPort).u16(req.suggestedPort ?? 0);
  // "Any address" is all zeros in the IPv4-mapped form too (RFC 6887 §11.1): ::ffff:0.0.0.0.
  w.bytes(mapped(req.suggestedHost ?? "0.0.0.0"));
  return w.finish();
}

/** Encodes an ANNOUNCE request (24 bytes): answered by any PCP server, creates no state. */
export function encodeAnnounceRequest(client: string): Uint8Array {
  const w = new Writer(HEADER_SIZE);
  header(w, OPCODE_ANNOUNCE, 0, client);
  return w.finish();
}

/**
 * Decodes a PCP response. Refuses (never throws) requests, other versions, truncated messages,
 * malformed options and anything over 1100 bytes. A NAT-PMP server answering our PCP request
 * sends a version-0 message: that is refused with reason "natpmp".
 */
export function decodeResponse(bytes: Uint8Array): Result<PcpResponse> {
  if (bytes.length > MAX_PCP_SIZE) return { ok: false, reason: "too-long" };
  if (bytes.length < 2) return { ok: false, reason: "truncated" };
  if (bytes[0] === 0) return { ok: false, reason: "natpmp" };
  if (bytes[0] !== PCP_VERSION) return { ok: false, reason: "bad-version" };
  if ((bytes[1]! & 0x80) === 0) return { ok: false, reason: "not-response" };
  // Messages are a multiple of 4 bytes long (RFC 6887 §7).
  if (bytes.length % 4 !== 0 && bytes.length >= HEADER_SIZE) {
    return { ok: false, reason: "bad-length" };
  }
  try {
    const r = new Reader(bytes);
    r.u8(); // version, checked above
    const opcode = r.u8() & 0x7f;
    r.u8(); // reserved
    const result = r.u8();
    const lifetimeSec = r.u32();
    const epoch = r.u32();
    r.bytes(12);
    const out: PcpResponse = { opcode, result, lifetimeSec, epoch };
    if (opcode === OPCODE_MAP) {
      // Error responses may be a bare header (RFC 6887 §7.2 lets servers copy less on error).
      if (r.remaining === 0 && result !== PcpResult.SUCCESS) return { ok: true, value: out };
      const nonce = r.bytes(NONCE_SIZE).slice();
      const protocol = r.u8();
      r.bytes(3);
      const internalPort = r.u16();
      const externalPort = r.u16();
      const externalHost = unmapped(r.bytes(16));
      out.map = { nonce, protocol, internalPort, externalPort, externalHost };
    }
    while (r.remaining > 0) {
      r.u8(); // option code
      r.u8(); // reserved
      const len = r.u16();
      r.bytes((len + 3) & ~3);
    }
    return { ok: true, value: out };
  } catch (e) {
    if (e instanceof Short) return { ok: false, reason: "truncated" };
    throw e;
  }
}
