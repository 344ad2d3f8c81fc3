/**
 * The server's STUN answers (RFC 8489 Binding, RFC 5780 NAT behaviour discovery), pure: from
 * the request and the socket it came in on, which socket answers and with what bytes.
 *
 * The server has up to four STUN sockets. Bit 0 of a socket's index means "the alternate
 * port", bit 1 "the alternate address", so CHANGE-REQUEST's "change port" and "change IP" are
 * XORs on the index:
 *
 * | index | bound to          | carries          |
 * | ----- | ----------------- | ---------------- |
 * | 0     | host:port         | p2pchat and STUN |
 * | 1     | host:altPort      | STUN only        |
 * | 2     | altHost:port      | STUN only        |
 * | 3     | altHost:altPort   | STUN only        |
 *
 * With all four open on concrete addresses (`serve --alt-host`) the server is an RFC 5780
 * server: every success response carries RESPONSE-ORIGIN (the answering socket) and
 * OTHER-ADDRESS (the socket with the other address and port than the one the request came in
 * on). With fewer, answers are plain RFC 8489 ones, and a CHANGE-REQUEST that needs a socket
 * the server lacks gets error 420 (Unknown Attribute) from the socket it came in on.
 * RESPONSE-PORT is refused the same way: honouring it would let anyone aim answers at other
 * ports of their source address.
 *
 * Sizes are fixed by the address families, whatever the request carries: for IPv4, 32 bytes
 * (40 with FINGERPRINT) plain, 56 (64) with the RFC 5780 attributes, 36 (44) for the 420.
 */
import type { Addr } from "../wire/addr.ts";
import { decodeChangeRequest, decodeStun, findAttr, StunAttr } from "../stun/codec.ts";
import { bindingError, bindingResponse, isBindingRequest } from "../stun/binding.ts";

export type StunSocket = 0 | 1 | 2 | 3;

/** Bit of a socket index for "the alternate port" and "the alternate address". */
export const ALT_PORT = 1;
export const ALT_HOST = 2;

/** The largest answer to an IPv4 source (a full RFC 5780 success with FINGERPRINT). */
export const MAX_STUN_ANSWER_V4 = 64;

/** Where the STUN sockets are bound, by index; null where there is none. */
export interface StunLayout {
  readonly sockets: readonly [Addr | null, Addr | null, Addr | null, Addr | null];
}

/** Primary only, address not known: plain RFC 8489 answers. */
export const PRIMARY_ONLY: StunLayout = { sockets: [null, null, null, null] };

const WILDCARD = new Set(["0.0.0.0", "::"]);

/**
 * Whether `layout` makes an RFC 5780 server: all four sockets open on concrete addresses (a
 * wildcard socket's answers leave from whatever address routing picks, not a known one).
 */
export function isRfc5780(layout: StunLayout): boolean {
  return layout.sockets.every((s) => s !== null && !WILDCARD.has(s.host));
}

export type StunAnswer =
  | { ok: true; socket: StunSocket; bytes: Uint8Array }
  | { ok: false; reason: string };

/**
 * The answer to STUN datagram `b` from `from`, received on socket `via`: which socket sends it
 * and what it is, or why it gets none (a drop reason for the server's counters).
 * @example answerStun(datagram, from, 0, { sockets: [p, p1, a, a1] }) // {ok, socket: 3, bytes}
 */
export function answerStun(
  b: Uint8Array,
  from: Addr,
  via: StunSocket,
  layout: StunLayout,
): StunAnswer {
  const d = decodeStun(b);
  if (!d.ok) return { ok: false, reason: "stun_malformed" };
  const msg = d.value;
  if (!isBindingRequest(msg)) return { ok: false, reason: "stun_unsupported" };
  if (findAttr(msg, StunAttr.RESPONSE_PORT)) {
    return { ok: true, socket: via, bytes: bindingError(msg, 420, "", [StunAttr.RESPONSE_PORT]) };
  }
  let socket = via;
  const cr = findAttr(msg, StunAttr.CHANGE_REQUEST);
  if (cr) {
    const change = decodeChangeRequest(cr);
    if (!change.ok) return { ok: false, reason: "stun_malformed" };
    socket = (via ^ (change.value.port ? ALT_PORT : 0) ^
      (change.value.ip ? ALT_HOST : 0)) as StunSocket;
    if (socket !== via && layout.sockets[socket] === null) {
      const refusal = bindingError(msg, 420, "", [StunAttr.CHANGE_REQUEST]);
      return { ok: true, socket: via, bytes: refusal };
    }
  }
  const extras = isRfc5780(layout)
    ? { origin: layout.sockets[socket]!, other: layout.sockets[via ^ (ALT_PORT | ALT_HOST)]! }
    : {};
  return { ok: true, socket, bytes: bindingResponse(msg, from, extras) };
}
