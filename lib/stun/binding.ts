/** STUN Binding: the request a client sends to learn its public address, and the reply. */
import type { Addr } from "../wire/addr.ts";
import {
  decodeMappedAddress,
  decodeStun,
  decodeXorMappedAddress,
  encodeStun,
  findAttr,
  METHOD_BINDING,
  StunAttr,
  type StunAttribute,
  type StunMessage,
  textAttr,
  verifyFingerprint,
  xorMappedAddress,
} from "./codec.ts";

export interface BindingRequestOptions {
  /** Append FINGERPRINT (default true): it marks the datagram as STUN on a shared port. */
  fingerprint?: boolean;
  /** SOFTWARE attribute text; omitted by default to keep the request small. */
  software?: string;
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
  return encodeStun(
    { method: METHOD_BINDING, class: "request", transactionId: txid, attributes },
    { fingerprint: opts.fingerprint ?? true },
  );
}

/** True for a Binding request, the only STUN message a server answers. */
export function isBindingRequest(msg: StunMessage): boolean {
  return msg.method === METHOD_BINDING && msg.class === "request";
}

/**
 * Builds the Binding success response to `request`, telling the sender it was seen at `mapped`.
 * It carries only XOR-MAPPED-ADDRESS, plus FINGERPRINT iff the request had one, so its size
 * depends on the address family alone (32/40 bytes IPv4, 44/52 IPv6): however a request is
 * padded, the reply cannot be used to amplify traffic. The caller checks isBindingRequest.
 * @throws RangeError if `mapped.host` is not an IP literal.
 */
export function bindingResponse(request: StunMessage, mapped: Addr): Uint8Array {
  const fingerprint = request.attributes.some((a) => a.type === StunAttr.FINGERPRINT);
  return encodeStun({
    method: METHOD_BINDING,
    class: "success",
    transactionId: request.transactionId,
    attributes: [xorMappedAddress(mapped, request.transactionId)],
  }, { fingerprint });
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
