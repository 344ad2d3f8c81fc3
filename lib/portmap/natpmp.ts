/**
 * NAT-PMP (RFC 6886) codec: the external-address request and the UDP mapping request, and their
 * responses. Pure: bytes in, typed values out, no I/O. All integers big-endian.
 *
 * | message                  | bytes                                                                             |
 * | ------------------------ | --------------------------------------------------------------------------------- |
 * | external address request | `version u8 = 0` · `opcode u8 = 0`                                                 |
 * | external address answer  | `0` · `128` · `result u16` · `epoch u32` · `external IPv4` (12 bytes)              |
 * | UDP map request          | `0` · `1` · `reserved u16` · `internal port u16` · `suggested external port u16` · |
 * |                          | `lifetime u32` (12 bytes); lifetime 0 and external port 0 delete the mapping       |
 * | UDP map answer           | `0` · `129` · `result u16` · `epoch u32` · `internal port u16` ·                   |
 * |                          | `mapped external port u16` · `lifetime u32` (16 bytes)                             |
 */
import { Reader, Writer } from "../wire/bytes.ts";
import { ipFromBytes } from "../wire/addr.ts";
import type { Result } from "../wire/result.ts";

export const NATPMP_VERSION = 0;
export const OP_EXTERNAL_ADDRESS = 0;
export const OP_MAP_UDP = 1;
/** A server's opcode is the request's plus 128. */
export const OP_RESPONSE = 128;
export const EXTERNAL_ADDRESS_RESPONSE_SIZE = 12;
export const MAP_RESPONSE_SIZE = 16;

/** Result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  NOT_AUTHORIZED: 2,
  NETWORK_FAILURE: 3,
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;

const RESULT_NAMES = new Map<number, string>(
  Object.entries(NatPmpResult).map(([name, code]) => [code, name]),
);

/** The name of a NAT-PMP result code, e.g. "NOT_AUTHORIZED", or "RESULT_<n>" for unknown ones. */
export function natPmpResultName(code: number): string {
  return RESULT_NAMES.get(code) ?? `RESULT_${code}`;
}

export type NatPmpResponse =
  | { op: typeof OP_EXTERNAL_ADDRESS; result: number; epoch: number; externalHost: string }
  | {
    op: typeof OP_MAP_UDP;
    result: number;
    epoch: number;
    internalPort: number;
    externalPort: number;
    lifetimeSec: number;
  };

/** The two-byte external address request. */
export function encodeExternalAddressRequest(): Uint8Array {
  return new Uint8Array([NATPMP_VERSION, OP_EXTERNAL_ADDRESS]);
}

/** A UDP mapping request; `lifetimeSec: 0, suggestedPort: 0` deletes the internal port's mapping. */
export function encodeMapRequest(
  req: { internalPort: number; suggestedPort: number; lifetimeSec: number },
): Uint8Array {
  return new Writer(12).u8(NATPMP_VERSION).u8(OP_MAP_UDP).u16(0).u16(req.internalPort)
    .u16(req.suggestedPort).u32(req.lifetimeSec).finish();
}

/**
 * Decodes a server's answer; never throws. A non-zero result code is still a decoded answer
 * (the caller decides), but then only the 8-byte common part is required, since RFC 6886 lets
 * servers send just that for unsupported versions and opcodes.
 */
export function decodeResponse(bytes: Uint8Array): Result<NatPmpResponse> {
  if (bytes.length < 8) return { ok: false, reason: "truncated" };
  if (bytes[0] !== NATPMP_VERSION) return { ok: false, reason: "bad-version" };
  const r = new Reader(bytes);
  r.u8();
  const opByte = r.u8();
  if (opByte < OP_RESPONSE) return { ok: false, reason: "not-response" };
  const op = opByte - OP_RESPONSE;
  const result = r.u16();
  const epoch = r.u32();
  if (op === OP_EXTERNAL_ADDRESS) {
    if (bytes.length < EXTERNAL_ADDRESS_RESPONSE_SIZE) {
      if (result !== NatPmpResult.SUCCESS) {
        return { ok: true, value: { op, result, epoch, externalHost: "0.0.0.0" } };
      }
      return { ok: false, reason: "truncated" };
    }
    if (bytes.length > EXTERNAL_ADDRESS_RESPONSE_SIZE) return { ok: false, reason: "too-long" };
    return { ok: true, value: { op, result, epoch, externalHost: ipFromBytes(r.bytes(4)) } };
  }
  if (op === OP_MAP_UDP) {
    if (bytes.length < MAP_RESPONSE_SIZE) {
      if (result !== NatPmpResult.SUCCESS) {
        return {
          ok: true,
          value: { op, result, epoch, internalPort: 0, externalPort: 0, lifetimeSec: 0 },
        };
      }
      return { ok: false, reason: "truncated" };
    }
    if (bytes.length > MAP_RESPONSE_SIZE) return { ok: false, reason: "too-long" };
    const internalPort = r.u16();
    const externalPort = r.u16();
    const lifetimeSec = r.u32();
    return { ok: true, value: { op, result, epoch, internalPort, externalPort, lifetimeSec } };
  }
  return { ok: false, reason: "unknown-opcode" };
}
