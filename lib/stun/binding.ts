/**
 * STUN Binding: the request a client sends to learn its public address, and the reply; with the
 * RFC 5780 attributes NAT behaviour discovery adds (CHANGE-REQUEST, RESPONSE-ORIGIN,
 * OTHER-ADDRESS).
 */
import type { Addr } from "../wire/addr.ts";
import type { Result } from "../wire/result.ts";
import {
  addressAttr,
  type ChangeRequest,
  changeRequestAttr,
  decodeErrorCode,
  decodeMappedAddress,
  decodeStun,
  decodeUnknownAttributes,
  decodeXorMappedAddress,
  encodeStun,
  errorCodeAttr,
  findAttr,
  METHOD_BINDING,
  responsePortAttr,
  StunAttr,
  type StunAttribute,
  type StunMessage,
  textAttr,
  unknownAttributesAttr,
  verifyFingerprint,
  xorMappedAddress,
} from "./codec.ts";

export interface BindingRequestOptions {
  /** Append FINGERPRINT (default true): it marks the datagram as STUN on a shared port. */
  fingerprint?: boolean;
  /** SOFTWARE attribute text; omitted by default to keep the request small. */
  software?: string;
  /** CHANGE-REQUEST (RFC 5780): ask the server to answer from its other address and/or port. */
  change?: ChangeRequest;
  /** RESPONSE-PORT (RFC 5780): ask the server to answer to this port of our address. */
  responsePort?: number;
}

/**
 * Builds a Binding request datagram.
 * @throws RangeError if `txid` is not 12 bytes (it must be random; reuse breaks matching).
 * @example const req = bindingRequest(crypto.getRandomValues(new Uint8Array(12)));
 */
export function bindingRequest(txid: Uint8Array, opts: BindingRequestOptions = {}): Uint8Array {
  if (txid.length !== 12) {
    throw new RangeError(`Cannot build Binding request: transaction id is ${txid.length} bytes`);
  }
  const attributes: StunAttribute[] = [];
  if (opts.software !== undefined) attributes.push(textAttr(StunAttr.SOFTWARE, opts.software));
  if (opts.change) attributes.push(changeRequestAttr(opts.change));
  if (opts.responsePort !== undefined) attributes.push(responsePortAttr(opts.responsePort));
  return encodeStun(
    { method: METHOD_BINDING, class: "request", transactionId: txid, attributes },
    { fingerprint: opts.fingerprint ?? true },
  );
}

/** True for a Binding request, the only STUN message a server answers. */
export function isBindingRequest(msg: StunMessage): boolean {
  return msg.method === METHOD_BINDING && msg.class === "request";
}

/** The RFC 5780 attributes a Binding success response may carry beside XOR-MAPPED-ADDRESS. */
export interface BindingExtras {
  /** RESPONSE-ORIGIN: the server address the response is sent from. */
  origin?: Addr;
  /** OTHER-ADDRESS: the server address with the other IP and the other port. */
  other?: Addr;
}

/**
 * Builds the Binding success response to `request`, telling the sender it was seen at `mapped`.
 * It carries XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS when given in `extras`, and
 * FINGERPRINT iff the request had one, so its size depends on the address families alone
 * (32/40 bytes for IPv4 without extras, 56/64 with both): however a request is padded, the
 * reply cannot be used to amplify traffic more than that. The caller checks isBindingRequest.
 * @throws RangeError if an address is not an IP literal.
 */
export function bindingResponse(
  request: StunMessage,
  mapped: Addr,
  extras: BindingExtras = {},
): Uint8Array {
  const attributes = [xorMappedAddress(mapped, request.transactionId)];
  if (extras.origin) attributes.push(addressAttr(StunAttr.RESPONSE_ORIGIN, extras.origin));
  if (extras.other) attributes.push(addressAttr(StunAttr.OTHER_ADDRESS, extras.other));
  return encodeStun({
    method: METHOD_BINDING,
    class: "success",
    transactionId: request.transactionId,
    attributes,
  }, { fingerprint: hasFingerprint(request) });
}

function hasFingerprint(msg: StunMessage): boolean {
  return msg.attributes.some((a) => a.type === StunAttr.FINGERPRINT);
}

/**
 * Builds a Binding error response to `request`: ERROR-CODE with `reason` (empty by default, to
 * keep it small), UNKNOWN-ATTRIBUTES when `unknown` lists types, FINGERPRINT iff the request
 * had one. With no reason and one unknown type it is 36 bytes, 44 with FINGERPRINT.
 * @throws RangeError if `code` is not in 300..699.
 * @example bindingError(request, 420, "", [StunAttr.CHANGE_REQUEST])
 */
export function bindingError(
  request: StunMessage,
  code: number,
  reason = "",
  unknown: readonly number[] = [],
): Uint8Array {
  const attributes = [errorCodeAttr(code, reason)];
  if (unknown.length > 0) attributes.push(unknownAttributesAttr(unknown));
  return encodeStun({
    method: METHOD_BINDING,
    class: "error",
    transactionId: request.transactionId,
    attributes,
  }, { fingerprint: hasFingerprint(request) });
}

/** A Binding response as a client reads it. */
export type BindingAnswer =
  | {
    class: "success";
    transactionId: Uint8Array;
    /** XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489 servers), else null. */
    mapped: Addr | null;
    /** RESPONSE-ORIGIN, or null. */
    origin: Addr | null;
    /** OTHER-ADDRESS, else RFC 3489's CHANGED-ADDRESS, else null. */
    other: Addr | null;
  }
  | { class: "error"; transactionId: Uint8Array; code: number; unknown: number[] };

/**
 * Client side: decodes a Binding success or error response (any transaction: the caller
 * matches `transactionId`). Refuses other messages, a bad FINGERPRINT, and malformed address
 * or error attributes. Never throws.
 */
export function decodeBindingAnswer(bytes: Uint8Array): Result<BindingAnswer> {
  const r = decodeStun(bytes);
  if (!r.ok) return r;
  const msg = r.value;
  if (msg.method !== METHOD_BINDING) return { ok: false, reason: "not a Binding message" };
  if (msg.class !== "success" && msg.class !== "error") {
    return { ok: false, reason: `a Binding ${msg.class}, not a response` };
  }
  if (findAttr(msg, StunAttr.FINGERPRINT) && !verifyFingerprint(msg)) {
    return { ok: false, reason: "bad FINGERPRINT" };
  }
  const transactionId = msg.transactionId;
  if (msg.class === "error") {
    const e = findAttr(msg, StunAttr.ERROR_CODE);
    const err = e ? decodeErrorCode(e) : null;
    if (!err) return { ok: false, reason: "error response without a valid ERROR-CODE" };
    const u = findAttr(msg, StunAttr.UNKNOWN_ATTRIBUTES);
    const unknown = u ? decodeUnknownAttributes(u) : { ok: true as const, value: [] };
    if (!unknown.ok) return unknown;
    return {
      ok: true,
      value: { class: "error", transactionId, code: err.code, unknown: unknown.value },
    };
  }
  const address = (type: number, xor = false): Result<Addr | null> => {
    const v = findAttr(msg, type);
    if (!v) return { ok: true, value: null };
    const a = xor ? decodeXorMappedAddress(v, transactionId) : decodeMappedAddress(v);
    return a
      ? { ok: true, value: a }
      : { ok: false, reason: `malformed attribute 0x${type.toString(16)}` };
  };
  const xor = address(StunAttr.XOR_MAPPED_ADDRESS, true);
  const plain = address(StunAttr.MAPPED_ADDRESS);
  const origin = address(StunAttr.RESPONSE_ORIGIN);
  const other = address(StunAttr.OTHER_ADDRESS);
  const changed = address(StunAttr.CHANGED_ADDRESS);
  for (const x of [xor, plain, origin, other, changed]) if (!x.ok) return x;
  const v = (x: Result<Addr | null>) => (x.ok ? x.value : null);
  return {
    ok: true,
    value: {
      class: "success",
      transactionId,
      mapped: v(xor) ?? v(plain),
      origin: v(origin),
      other: v(other) ?? v(changed),
    },
  };
}

/**
 * Client side: the mapped address from a Binding success response to the request with `txid`,
 * or null if `bytes` is not one (other traffic, wrong transaction, bad FINGERPRINT, no address).
 * Falls back to MAPPED-ADDRESS for RFC 3489 servers.
 */
export function parseBindingResponse(bytes: Uint8Array, txid: Uint8Array): Addr | null {
  const r = decodeStun(bytes);
  if (!r.ok) return null;
  const msg = r.value;
  if (msg.method !== METHOD_BINDING || msg.class !== "success") return null;
  if (!sameBytes(msg.transactionId, txid)) return null;
  if (findAttr(msg, StunAttr.FINGERPRINT) && !verifyFingerprint(msg)) return null;
  const xor = findAttr(msg, StunAttr.XOR_MAPPED_ADDRESS);
  if (xor) return decodeXorMappedAddress(xor, msg.transactionId);
  const plain = findAttr(msg, StunAttr.MAPPED_ADDRESS);
  return plain ? decodeMappedAddress(plain) : null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
