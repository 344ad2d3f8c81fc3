/**
 * End-to-end encryption between two peers: Noise IK handshakes
 * (`Noise_IK_25519_ChaChaPoly_SHA256`, prologue "p2pchat/1") and then counter-nonce
 * ChaChaPoly transport with a sliding replay window, after WireGuard. Pure and synchronous:
 * time comes in as `now` (monotonic ms) and `wall` (wall-clock ms, only for handshake
 * timestamps); randomness is injectable. In a locked room both sides hold the room's psk and
 * use `Noise_IKpsk1_25519_ChaChaPoly_SHA256` instead: the psk ends the first message, so an
 * init from anyone without it fails to decrypt and gets no answer (and never an IK one).
 *
 * Bodies follow the 3-byte p2pchat header, which the caller adds and strips:
 *
 * | message        | body                                                                        |
 * | -------------- | --------------------------------------------------------------------------- |
 * | HANDSHAKE_INIT | sender_index u32 · e 32 · enc(s) 48 · enc(session_id 8 · timestamp u64) 32  |
 * | HANDSHAKE_RESP | sender_index u32 · receiver_index u32 · e 32 · enc(empty) 16                |
 * | TRANSPORT      | receiver_index u32 · counter u64 · ChaChaPoly(plaintext) (len + 16)         |
 *
 * Integers are big-endian. The transport nonce is the counter; its associated data is the
 * header followed by index and counter, i.e. everything in the datagram before the ciphertext.
 * @module
 */
import {
  type CipherState,
  type HandshakePattern,
  HandshakeState,
  PATTERNS,
  PSK_LEN,
  withPsk,
} from "../crypto/noise.ts";
import {
  isValidPublicKey,
  KEY_LEN,
  type KeyPair,
  type RandomBytes,
  systemRandom,
} from "../crypto/keys.ts";
import { MAX_COUNTER, ReplayWindow } from "../crypto/replay.ts";
import { equalBytes, fromHex, Reader, toHex, Writer } from "../wire/bytes.ts";
import {
  HS_INIT_LEN,
  HS_PAYLOAD_LEN,
  HS_RESP_LEN,
  INDEX_LEN,
  SEALED_MIN,
  SEALED_PREFIX_LEN,
  TAG_LEN,
} from "../wire/sizes.ts";

/** Noise prologue both sides mix in: a different protocol version cannot complete a handshake. */
export const PROLOGUE = "p2pchat/1";
/** Length of the plaintext handshake payload: session id 8 · timestamp u64. */
const INIT_PAYLOAD_LEN = HS_PAYLOAD_LEN;
/** HANDSHAKE_INIT body length: index, ephemeral, encrypted static, encrypted payload. */
export const INIT_LEN = HS_INIT_LEN;
/** HANDSHAKE_RESP body length: two indexes, ephemeral, encrypted empty payload. */
export const RESP_LEN = HS_RESP_LEN;
/** Bytes a TRANSPORT body adds to the plaintext: index, counter and tag. */
export const TRANSPORT_OVERHEAD = SEALED_MIN;
/** Handshake replies (responder) and processed responses (initiator) remembered for resends. */
export const REPLY_CACHE_SIZE = 256;
/** Remote static keys whose newest handshake timestamp is remembered. */
export const TIMESTAMP_CACHE_SIZE = 4096;

/** The init's sender index comes before the Noise message (whose first bytes are `e`). */
const INDEX_LEN_BYTES = 4;
const PROLOGUE_BYTES = new TextEncoder().encode(PROLOGUE);
const TRANSPORT_PREFIX = SEALED_PREFIX_LEN;
const ID_RE = /^[0-9a-f]{16}$/;

/** Session lifetimes and limits. */
export interface SecureConfig {
  /** Ask for a new handshake once the current session is this old. */
  rekeyAfterMs: number;
  /** Ask for a new handshake once the current session has sealed this many messages. */
  rekeyAfterMessages: number;
  /** Ask again when a rekey handshake has gone unanswered this long (it may have been lost). */
  rekeyRetryMs: number;
  /** Drop sessions (and unanswered handshakes) with no traffic for this long. */
  sessionTtlMs: number;
  /** Sessions kept per peer; the oldest is dropped when a new one completes. */
  maxSessionsPerPeer: number;
  /**
   * Refuse to seal or open on a session this old, rekeyed or not (more than `rekeyAfterMs`):
   * a rekey that never completes cannot keep old keys in use.
   */
  rejectAfterMs: number;
  /**
   * Refuse to seal on a session that has sealed this many messages, or to open a counter this
   * high (more than `rekeyAfterMessages`).
   */
  rejectAfterMessages: number;
}

/**
 * Defaults: rekey after 2 minutes or 2^20 messages (retried every 5 s until it completes), drop
 * after 5 idle minutes, 3 sessions; a session is unusable after 3 minutes or 2^21 messages
 * whatever happened to its rekey (WireGuard's reject-after, with its 1-minute margin).
 */
export const DEFAULT_SECURE_CONFIG: Readonly<SecureConfig> = {
  rekeyAfterMs: 120_000,
  rekeyAfterMessages: 2 ** 20,
  rekeyRetryMs: 5000,
  sessionTtlMs: 300_000,
  maxSessionsPerPeer: 3,
  rejectAfterMs: 180_000,
  rejectAfterMessages: 2 ** 21,
};

/**
 * Why an incoming body was dropped:
 * - `malformed`: wrong length, bad counter or unexpected payload
 * - `decrypt_failed`: Noise or AEAD authentication failed (tampered, wrong key, not for us,
 *   or an init without our room's psk)
 * - `unknown_static`: the initiator's session id is not registered with `addPeer`
 * - `key_mismatch`: the initiator's static key differs from the one registered for its id
 * - `stale_init`: the init's timestamp is not newer than the last one accepted from that key
 * - `unknown_index`: no session or pending handshake has that index
 * - `replay`: transport counter already accepted
 * - `too_old`: transport counter behind the replay window
 * - `expired`: the session is past `rejectAfterMs`, or the counter past `rejectAfterMessages`
 * - `internal`: an unexpected exception (a bug), reported instead of thrown
 */
export type SecureDropReason =
  | "malformed"
  | "decrypt_failed"
  | "unknown_static"
  | "key_mismatch"
  | "stale_init"
  | "unknown_index"
  | "replay"
  | "too_old"
  | "expired"
  | "internal";

/** A dropped body. */
export type SecureDrop = { ok: false; reason: SecureDropReason };

/** Outcome of {@link SecureLayer.onHandshakeInit}; `reply` is the HANDSHAKE_RESP body. */
export type InitOutcome =
  | { ok: true; peerId: string; reply: Uint8Array; fresh: boolean }
  | SecureDrop;

/** Outcome of {@link SecureLayer.onHandshakeResp}. */
export type RespOutcome = { ok: true; peerId: string; fresh: boolean } | SecureDrop;

/** Outcome of {@link SecureLayer.open}. */
export type OpenOutcome = { ok: true; peerId: string; plaintext: Uint8Array } | SecureDrop;

/** Our identity: static X25519 key pair and the session id (16 lowercase hex) the server gave us. */
export interface SecureSelf {
  readonly staticKey: KeyPair;
  readonly sessionId: string;
  /** A locked room's psk (lib/crypto/room.ts): handshakes are IKpsk1 with it, else IK. */
  readonly roomPsk?: Uint8Array;
}

/** The handshake of an open room, and of a locked one (its psk mixed in after message 1). */
const IK = PATTERNS.IK;
const IK_PSK1 = withPsk(PATTERNS.IK, 1);

interface Session {
  readonly index: number;
  readonly remoteIndex: number;
  readonly peerId: string;
  readonly send: CipherState;
  readonly receive: CipherState;
  readonly window: ReplayWindow;
  readonly createdAt: number;
  lastUsed: number;
  sent: number;
  /**
   * Known to exist at the peer too: always for the initiator; for the responder once a packet
   * opened in it. Like WireGuard, a responder keeps sending on its previous session until then,
   * so a lost (or attacker-delivered) init cannot switch it to keys the peer never got.
   */
  confirmed: boolean;
}

interface Pending {
  readonly index: number;
  readonly peerId: string;
  readonly hs: HandshakeState;
  readonly body: Uint8Array;
  readonly createdAt: number;
}

interface Peer {
  readonly id: string;
  readonly staticPublic: Uint8Array;
  /** Completed sessions, oldest first; the newest confirmed one is used for sending. */
  sessions: Session[];
  pending: Pending | null;
  /** Whether `tick` has asked for a rekey of the current session already. */
  rekeyReported: boolean;
  /** When `tick` last asked for that rekey. */
  rekeyReportedAt: number;
}

interface CachedReply {
  readonly init: Uint8Array;
  readonly reply: Uint8Array;
  readonly session: Session;
}

/** A map that forgets its least recently used entries beyond `capacity`. */
class Lru<K, V> {
  readonly #map = new Map<K, V>();
  constructor(readonly capacity: number) {}

  get(key: K): V | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    for (const oldest of this.#map.keys()) {
      if (this.#map.size <= this.capacity) break;
      this.#map.delete(oldest);
    }
  }
}

function readU64(r: Reader): bigint {
  const hi = r.u32();
  return (BigInt(hi) << 32n) | BigInt(r.u32());
}

function writeU64(w: Writer, v: bigint): Writer {
  return w.u32(Number(v >> 32n)).u32(Number(v & 0xffff_ffffn));
}

const drop = (reason: SecureDropReason): SecureDrop => ({ ok: false, reason });

/** Reused for every transport AD: the runtime copies it in `setAAD`, and all of this is sync. */
let adScratch = new Uint8Array(64);

/** A transport body's associated data: the datagram header, then the body's index and counter. */
function associatedData(header: Uint8Array, body: Uint8Array): Uint8Array {
  const len = header.length + TRANSPORT_PREFIX;
  if (len > adScratch.length) adScratch = new Uint8Array(len);
  adScratch.set(header);
  adScratch.set(body.subarray(0, TRANSPORT_PREFIX), header.length);
  return adScratch.subarray(0, len);
}

/** The session to send on: the newest usable confirmed one, else the newest usable one. */
function sender(peer: Peer, usable: (s: Session) => boolean): Session | undefined {
  return peer.sessions.findLast((s) => s.confirmed && usable(s)) ?? peer.sessions.findLast(usable);
}

/**
 * The encryption layer for all of one peer's remotes. Each remote is registered with its session
 * id and static public key; handshakes are Noise IK, so the initiator proves its identity in the
 * first message and either side may initiate (both at once works too: each side then holds two
 * sessions and accepts traffic on both).
 *
 * @example
 * const alice = new SecureLayer({ staticKey: aliceKeys, sessionId: aliceId });
 * const bob = new SecureLayer({ staticKey: bobKeys, sessionId: bobId });
 * alice.addPeer(bobId, bobKeys.publicKey);
 * bob.addPeer(aliceId, aliceKeys.publicKey);
 * const r = bob.onHandshakeInit(alice.handshakeInit(bobId, now, Date.now()), now);
 * if (r.ok) alice.onHandshakeResp(r.reply, now);
 * const body = alice.seal(bobId, header, text, now)!;
 * bob.open(header, body, now); // { ok: true, peerId: aliceId, plaintext: text }
 */
export class SecureLayer {
  /** Dropped bodies counted by reason. */
  readonly drops: Map<string, number> = new Map();
  readonly #static: KeyPair;
  readonly #selfId: Uint8Array;
  readonly #selfIdHex: string;
  readonly #cfg: SecureConfig;
  readonly #random: RandomBytes;
  /** IK, or IKpsk1 with the room's psk. */
  readonly #noise: { pattern: HandshakePattern; psks?: Uint8Array[] };
  readonly #peers = new Map<string, Peer>();
  readonly #sessions = new Map<number, Session>();
  readonly #pending = new Map<number, Pending>();
  /** Responder: replies by the hex of the init's ephemeral key. */
  readonly #replies = new Lru<string, CachedReply>(REPLY_CACHE_SIZE);
  /** Initiator: sessions by the hex of the response that completed them. */
  readonly #answered = new Lru<string, Session>(REPLY_CACHE_SIZE);
  /** Responder: newest accepted init timestamp by the hex of the initiator's static key. */
  readonly #timestamps = new Lru<string, bigint>(TIMESTAMP_CACHE_SIZE);
  /** Initiator: the last timestamp we sent, so ours stay increasing if the wall clock steps back. */
  #lastSentTimestamp = -1n;
  /** The latest `now` we were given: what `hasSession` goes by when not told the time. */
  #now = -Infinity;

  /**
   * Throws "Cannot create secure layer: ..." on a malformed key pair, session id or config.
   * @param random source for session indexes and ephemeral keys (inject for tests)
   */
  constructor(
    self: SecureSelf,
    cfg: Partial<SecureConfig> = {},
    random: RandomBytes = systemRandom,
  ) {
    const why = (r: string) => new Error(`Cannot create secure layer: ${r}`);
    const { publicKey, privateKey } = self.staticKey;
    if (publicKey.length !== KEY_LEN || privateKey.length !== KEY_LEN) {
      throw why("static key pair must be 32-byte keys");
    }
    if (!ID_RE.test(self.sessionId)) {
      throw why(`session id "${self.sessionId}" is not 16 lowercase hex digits`);
    }
    const c = { ...DEFAULT_SECURE_CONFIG, ...cfg };
    for (const [name, v] of Object.entries(c)) {
      if (!(typeof v === "number" && v > 0)) {
        throw why(`${name} must be a positive number, got ${v}`);
      }
    }
    if (!Number.isInteger(c.maxSessionsPerPeer)) {
      throw why(`maxSessionsPerPeer must be an integer, got ${c.maxSessionsPerPeer}`);
    }
    if (c.rejectAfterMs <= c.rekeyAfterMs) {
      throw why(`rejectAfterMs (${c.rejectAfterMs}) must be more than rekeyAfterMs`);
    }
    if (c.rejectAfterMessages <= c.rekeyAfterMessages) {
      throw why(
        `rejectAfterMessages (${c.rejectAfterMessages}) must be more than rekeyAfterMessages`,
      );
    }
    if (self.roomPsk !== undefined && self.roomPsk.length !== PSK_LEN) {
      throw why(`room psk must be ${PSK_LEN} bytes, got ${self.roomPsk.length}`);
    }
    this.#noise = self.roomPsk
      ? { pattern: IK_PSK1, psks: [self.roomPsk.slice()] }
      : { pattern: IK };
    this.#static = { publicKey: publicKey.slice(), privateKey: privateKey.slice() };
    this.#selfIdHex = self.sessionId;
    this.#selfId = fromHex(self.sessionId);
    this.#cfg = c;
    this.#random = random;
  }

  /**
   * Register a remote by session id (16 lowercase hex) and static X25519 public key, replacing
   * a previous registration of that id. A changed key drops the sessions made with the old one.
   * Throws "Cannot add peer ..." on a malformed id or key, or our own id.
   */
  addPeer(peerId: string, staticPublic: Uint8Array): void {
    const why = (r: string) => new Error(`Cannot add peer "${peerId}": ${r}`);
    if (!ID_RE.test(peerId)) throw why("id is not 16 lowercase hex digits");
    if (peerId === this.#selfIdHex) throw why("that is our own session id");
    if (!isValidPublicKey(staticPublic)) throw why("static key is not a valid X25519 public key");
    const old = this.#peers.get(peerId);
    if (old && equalBytes(old.staticPublic, staticPublic)) return;
    if (old) this.removePeer(peerId);
    this.#peers.set(peerId, {
      id: peerId,
      staticPublic: staticPublic.slice(),
      sessions: [],
      pending: null,
      rekeyReported: false,
      rekeyReportedAt: 0,
    });
  }

  /** Forget a remote with its sessions and pending handshake; its packets then drop. */
  removePeer(peerId: string): void {
    const peer = this.#peers.get(peerId);
    if (!peer) return;
    for (const s of peer.sessions) this.#sessions.delete(s.index);
    if (peer.pending) this.#pending.delete(peer.pending.index);
    this.#peers.delete(peerId);
  }

  /**
   * The HANDSHAKE_INIT body for this peer. The first call makes it (fresh ephemeral key and
   * timestamp); later calls return the same bytes until the handshake completes, is restarted,
   * or goes unanswered for `sessionTtlMs` — so it can go to many candidate addresses and be
   * resent while hole punching without more DH work. Throws when the peer is not registered.
   */
  handshakeInit(peerId: string, now: number, wall: number): Uint8Array {
    const peer = this.#peers.get(peerId);
    if (!peer) throw new Error(`Cannot start handshake with "${peerId}": peer not registered`);
    if (peer.pending) return peer.pending.body.slice();
    if (!Number.isFinite(wall)) {
      throw new Error(`Cannot start handshake with "${peerId}": wall clock ${wall} is not finite`);
    }
    const wallMs = BigInt(Math.max(0, Math.floor(wall)));
    const timestamp = wallMs > this.#lastSentTimestamp ? wallMs : this.#lastSentTimestamp + 1n;
    this.#lastSentTimestamp = timestamp;
    const hs = HandshakeState.initialize({
      ...this.#noise,
      cipher: "ChaChaPoly",
      initiator: true,
      prologue: PROLOGUE_BYTES,
      s: this.#static,
      rs: peer.staticPublic,
      random: this.#random,
    });
    const payload = writeU64(new Writer(INIT_PAYLOAD_LEN).bytes(this.#selfId), timestamp).finish();
    const index = this.#newIndex();
    const body = new Writer(INIT_LEN).u32(index).bytes(hs.writeMessage(payload)).finish();
    const pending = { index, peerId, hs, body, createdAt: now };
    peer.pending = pending;
    this.#pending.set(index, pending);
    return body.slice();
  }

  /** Discard the pending handshake with this peer, so the next `handshakeInit` makes a new one. */
  restartHandshake(peerId: string): void {
    const peer = this.#peers.get(peerId);
    if (!peer?.pending) return;
    this.#pending.delete(peer.pending.index);
    peer.pending = null;
  }

  /**
   * Whether `body` is a copy of an init already answered (its answer is cached): such copies
   * cost no Diffie-Hellman work, so callers rate-limit only the others.
   */
  isAnsweredInit(body: Uint8Array, now: number): boolean {
    return body.length === INIT_LEN && this.#cachedReply(body, now) !== null;
  }

  /** The cached answer to an identical init, if its session is still usable at `now`. */
  #cachedReply(body: Uint8Array, now: number): CachedReply | null {
    const cached = this.#replies.get(
      toHex(body.subarray(INDEX_LEN_BYTES, INDEX_LEN_BYTES + KEY_LEN)),
    );
    if (!cached || !equalBytes(cached.init, body)) return null;
    // A session past reject-after cannot seal the answer's PONG: answer as a new init would.
    if (!this.#isLive(cached.session) || this.#expired(cached.session, now)) return null;
    return cached;
  }

  /**
   * Responder side: answer a HANDSHAKE_INIT body. The initiator is identified by the session id
   * in the payload and must use the static key registered for it. A copy of an init already
   * answered gets the identical reply (`fresh: false`) and no new session; otherwise the init's
   * timestamp must be newer than the last accepted from that key. Never throws.
   */
  onHandshakeInit(body: Uint8Array, now: number): InitOutcome {
    this.#clock(now);
    return this.#count(this.#guard(() => this.#onInit(body, now)));
  }

  /**
   * Initiator side: complete the pending handshake with a HANDSHAKE_RESP body. An identical
   * copy of a response already processed gives `fresh: false` (the path it came by works).
   * Never throws.
   */
  onHandshakeResp(body: Uint8Array, now: number): RespOutcome {
    this.#clock(now);
    return this.#count(this.#guard(() => this.#onResp(body, now)));
  }

  /**
   * Whether a completed session with this peer can be sealed on at `now` (by default the latest
   * time this layer was given): false once every session is past its reject-after limits, so
   * the caller handshakes again.
   */
  hasSession(peerId: string, now: number = this.#now): boolean {
    const peer = this.#peers.get(peerId);
    return peer !== undefined && this.#sender(peer, now) !== undefined;
  }

  /** Number of completed sessions with this peer (at most `maxSessionsPerPeer`). */
  sessionCount(peerId: string): number {
    return this.#peers.get(peerId)?.sessions.length ?? 0;
  }

  /**
   * Encrypt `plaintext` with the peer's newest session; returns the TRANSPORT body, or null
   * without a usable session (none, or all past `rejectAfterMs` / `rejectAfterMessages`).
   * `header` is the datagram header the caller puts in front (authenticated).
   * Throws only when the plaintext is too long for one Noise message (65519 bytes).
   * With `headroom`, the body starts that many bytes into the returned buffer, which the caller
   * fills (with the header, say: the whole datagram is then one buffer).
   */
  seal(
    peerId: string,
    header: Uint8Array,
    plaintext: Uint8Array,
    now: number,
    headroom = 0,
  ): Uint8Array | null {
    this.#clock(now);
    const peer = this.#peers.get(peerId);
    const s = peer && this.#sender(peer, now);
    if (!s) return null;
    // One buffer for the whole body: index and counter, then ciphertext and tag written in place.
    const out = new Uint8Array(headroom + TRANSPORT_PREFIX + plaintext.length + TAG_LEN);
    const body = headroom === 0 ? out : out.subarray(headroom);
    const v = new DataView(out.buffer, headroom);
    v.setUint32(0, s.remoteIndex);
    v.setBigUint64(INDEX_LEN, s.send.nonce);
    s.send.encryptInto(associatedData(header, body), plaintext, out, headroom + TRANSPORT_PREFIX);
    s.sent++;
    s.lastUsed = now;
    return out;
  }

  /** Decrypt a TRANSPORT body that came after `header`. Never throws. */
  open(header: Uint8Array, body: Uint8Array, now: number): OpenOutcome {
    this.#clock(now);
    let r: OpenOutcome;
    try {
      r = this.#open(header, body, now);
    } catch {
      r = drop("internal"); // as #guard: untrusted input must never escape as an exception
    }
    return this.#count(r);
  }

  /**
   * Housekeeping: drops sessions and unanswered handshakes idle for `sessionTtlMs`, and lists
   * peers whose current session is due for a rekey (by age or messages sealed). Each peer is
   * listed once per session, and again every `rekeyRetryMs` while that rekey goes unanswered
   * (also once its sessions are past their reject-after limits); the caller then calls
   * `restartHandshake` and sends a new init.
   */
  tick(now: number): { rekey: string[] } {
    this.#clock(now);
    const ttl = this.#cfg.sessionTtlMs;
    const rekey: string[] = [];
    for (const peer of this.#peers.values()) {
      const live = peer.sessions.filter((s) => now - s.lastUsed < ttl);
      for (const s of peer.sessions) if (!live.includes(s)) this.#sessions.delete(s.index);
      peer.sessions = live;
      if (peer.pending && now - peer.pending.createdAt >= ttl) this.restartHandshake(peer.id);
      const cur = this.#sender(peer, now);
      // Sessions remain, but none is usable any more: a new handshake is needed.
      const rejected = !cur && peer.sessions.length > 0;
      if (!cur && !rejected) continue;
      if (peer.rekeyReported) {
        // A lost rekey handshake is tried again rather than leaving the old session in use.
        const since = peer.pending?.createdAt ?? peer.rekeyReportedAt;
        if (now - since >= this.#cfg.rekeyRetryMs) {
          peer.rekeyReportedAt = now;
          rekey.push(peer.id);
        }
        continue;
      }
      if (
        !cur || now - cur.createdAt >= this.#cfg.rekeyAfterMs ||
        cur.sent >= this.#cfg.rekeyAfterMessages
      ) {
        peer.rekeyReported = true;
        peer.rekeyReportedAt = now;
        rekey.push(peer.id);
      }
    }
    return { rekey };
  }

  /**
   * When `tick` next has work: a session or handshake expiring, a rekey or its retry due, or
   * the session we send on reaching `rejectAfterMs` (`hasSession` may turn false then).
   */
  nextDeadline(now: number): number | null {
    this.#clock(now);
    const ttl = this.#cfg.sessionTtlMs;
    let at = Infinity;
    for (const peer of this.#peers.values()) {
      for (const s of peer.sessions) at = Math.min(at, s.lastUsed + ttl);
      if (peer.pending) at = Math.min(at, peer.pending.createdAt + ttl);
      const cur = this.#sender(peer, now);
      if (!cur && peer.sessions.length === 0) continue;
      if (cur) at = Math.min(at, cur.createdAt + this.#cfg.rejectAfterMs);
      if (peer.rekeyReported) {
        const since = peer.pending?.createdAt ?? peer.rekeyReportedAt;
        at = Math.min(at, since + this.#cfg.rekeyRetryMs);
      } else if (!cur || cur.sent >= this.#cfg.rekeyAfterMessages) {
        at = Math.min(at, now);
      } else {
        at = Math.min(at, cur.createdAt + this.#cfg.rekeyAfterMs);
      }
    }
    return at === Infinity ? null : at;
  }

  #onInit(body: Uint8Array, now: number): InitOutcome {
    if (body.length !== INIT_LEN) return drop("malformed");
    const r = new Reader(body);
    const senderIndex = r.u32();
    const message = r.rest();
    const ephemeral = toHex(message.subarray(0, KEY_LEN));
    const cached = this.#cachedReply(body, now);
    if (cached) {
      return { ok: true, peerId: cached.session.peerId, reply: cached.reply.slice(), fresh: false };
    }

    const hs = HandshakeState.initialize({
      ...this.#noise,
      cipher: "ChaChaPoly",
      initiator: false,
      prologue: PROLOGUE_BYTES,
      s: this.#static,
      random: this.#random,
    });
    const read = hs.readMessage(message);
    if (!read.ok) return drop("decrypt_failed");
    const p = new Reader(read.value);
    const peerId = toHex(p.bytes(8));
    const timestamp = readU64(p);
    const peer = this.#peers.get(peerId);
    if (!peer) return drop("unknown_static");
    const remoteStatic = hs.getRemoteStatic();
    if (remoteStatic === null || !equalBytes(remoteStatic, peer.staticPublic)) {
      return drop("key_mismatch");
    }
    const staticHex = toHex(remoteStatic);
    // Per key *and session id*: a peer that restarts gets a new session id, so a wall clock
    // that stepped back (a fixed clock, say) does not lock it out until time catches up.
    // Replays stay refused: an init is accepted only for a session id registered now.
    const stampKey = `${staticHex}/${peerId}`;
    const last = this.#timestamps.get(stampKey);
    if (last !== undefined && timestamp <= last) return drop("stale_init");
    this.#timestamps.set(stampKey, timestamp);

    const index = this.#newIndex();
    const reply = new Writer(RESP_LEN).u32(index).u32(senderIndex).bytes(hs.writeMessage())
      .finish();
    const session = this.#addSession(peer, index, senderIndex, hs, now, false);
    this.#replies.set(ephemeral, { init: body.slice(), reply, session });
    return { ok: true, peerId, reply: reply.slice(), fresh: true };
  }

  #onResp(body: Uint8Array, now: number): RespOutcome {
    if (body.length !== RESP_LEN) return drop("malformed");
    const key = toHex(body);
    const done = this.#answered.get(key);
    if (done && this.#isLive(done)) return { ok: true, peerId: done.peerId, fresh: false };
    const r = new Reader(body);
    const senderIndex = r.u32();
    const pending = this.#pending.get(r.u32());
    if (!pending) return drop("unknown_index");
    const read = pending.hs.readMessage(r.rest());
    if (!read.ok) return drop("decrypt_failed");
    const peer = this.#peers.get(pending.peerId)!;
    this.#pending.delete(pending.index);
    peer.pending = null;
    // Authenticated, so only the peer itself can send a payload; v1 defines none.
    if (read.value.length !== 0) return drop("malformed");
    const session = this.#addSession(peer, pending.index, senderIndex, pending.hs, now, true);
    this.#answered.set(key, session);
    return { ok: true, peerId: peer.id, fresh: true };
  }

  #open(header: Uint8Array, body: Uint8Array, now: number): OpenOutcome {
    if (body.length < TRANSPORT_OVERHEAD) return drop("malformed");
    const v = new DataView(body.buffer, body.byteOffset, TRANSPORT_PREFIX);
    const s = this.#sessions.get(v.getUint32(0));
    const counter = v.getBigUint64(INDEX_LEN);
    if (!s) return drop("unknown_index");
    if (counter > MAX_COUNTER) return drop("malformed");
    if (this.#expired(s, now) || counter >= BigInt(this.#cfg.rejectAfterMessages)) {
      return drop("expired");
    }
    if (!s.window.check(counter)) {
      return drop(counter + s.window.windowSize < s.window.highest ? "too_old" : "replay");
    }
    s.receive.setNonce(counter);
    const pt = s.receive.decryptWithAd(
      associatedData(header, body),
      body.subarray(TRANSPORT_PREFIX),
    );
    if (!pt.ok) return drop("decrypt_failed");
    s.window.accept(counter);
    s.lastUsed = now;
    s.confirmed = true;
    return { ok: true, peerId: s.peerId, plaintext: pt.value };
  }

  #addSession(
    peer: Peer,
    index: number,
    remoteIndex: number,
    hs: HandshakeState,
    now: number,
    confirmed: boolean,
  ): Session {
    const { send, receive } = hs.split();
    const session: Session = {
      index,
      remoteIndex,
      peerId: peer.id,
      send,
      receive,
      window: new ReplayWindow(),
      createdAt: now,
      lastUsed: now,
      sent: 0,
      confirmed,
    };
    this.#sessions.set(index, session);
    peer.sessions.push(session);
    while (peer.sessions.length > this.#cfg.maxSessionsPerPeer) {
      // The oldest goes, unless it is the one we send on (then the next oldest).
      const keep = this.#sender(peer, now);
      const victim = peer.sessions.find((x) => x !== keep)!;
      peer.sessions.splice(peer.sessions.indexOf(victim), 1);
      this.#sessions.delete(victim.index);
    }
    peer.rekeyReported = false;
    return session;
  }

  /** The session to seal on at `now`: past neither reject-after limit. */
  #sender(peer: Peer, now: number): Session | undefined {
    return sender(
      peer,
      (s) => !this.#expired(s, now) && s.sent < this.#cfg.rejectAfterMessages,
    );
  }

  /** Past `rejectAfterMs`: no longer sealed or opened on, whatever became of its rekey. */
  #expired(s: Session, now: number): boolean {
    return now - s.createdAt >= this.#cfg.rejectAfterMs;
  }

  #clock(now: number): void {
    if (now > this.#now) this.#now = now;
  }

  /** A session still in use (not expired, evicted or removed with its peer). */
  #isLive(s: Session): boolean {
    return this.#sessions.get(s.index) === s;
  }

  /** A random local index not used by any session or pending handshake. */
  #newIndex(): number {
    for (let i = 0; i < 64; i++) {
      const b = this.#random(4);
      const index = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
      if (!this.#sessions.has(index) && !this.#pending.has(index)) return index;
    }
    throw new Error("Cannot allocate session index: random source keeps repeating");
  }

  #guard<T extends { ok: true }>(f: () => T | SecureDrop): T | SecureDrop {
    try {
      return f();
    } catch {
      // Defence in depth: untrusted input must never escape as an exception.
      return drop("internal");
    }
  }

  #count<T extends { ok: true }>(r: T | SecureDrop): T | SecureDrop {
    if (!r.ok) this.drops.set(r.reason, (this.drops.get(r.reason) ?? 0) + 1);
    return r;
  }
}
