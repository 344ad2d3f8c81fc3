/**
 * Noise Protocol Framework, revision 34, for DH 25519, hash SHA256 and cipher AESGCM or
 * ChaChaPoly. Synchronous and pure: no I/O, no clock; randomness only for ephemeral keys,
 * and that is injectable. Handshake patterns are token lists, so any fundamental pattern runs
 * on the same engine, with or without `pskN` modifiers (section 9: `IKpsk1`, `NNpsk0+psk2`).
 * DH, AEAD, hash and HKDF are the runtime's native, synchronous `node:crypto` primitives.
 *
 * @example
 * const alice = HandshakeState.initialize({ pattern: "XX", cipher: "ChaChaPoly", initiator: true, s: aliceKeys });
 * const bob = HandshakeState.initialize({ pattern: "XX", cipher: "ChaChaPoly", initiator: false, s: bobKeys });
 * bob.readMessage(alice.writeMessage());
 * alice.readMessage(bob.writeMessage());
 * bob.readMessage(alice.writeMessage());
 * const a = alice.split(), b = bob.split();
 * b.receive.decryptWithAd(new Uint8Array(), a.send.encryptWithAd(new Uint8Array(), hello));
 * @module
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { hkdfSha256, sha256 } from "./hash.ts";
import {
  dh,
  generateKeyPair,
  isValidPublicKey,
  KEY_LEN,
  type KeyPair,
  type RandomBytes,
  systemRandom,
} from "./keys.ts";
import { concat } from "../wire/bytes.ts";

/** Outcome of an operation on untrusted input; failures carry a short reason, never throw. */
export type Result<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const fail = <T>(reason: string): Result<T> => ({ ok: false, reason });

/** Largest Noise message (handshake or transport), in bytes. */
export const MAX_MESSAGE_LEN = 65535;
/** AEAD tag length. */
export const TAG_LEN = 16;
/** SHA-256 output length. */
export const HASH_LEN = 32;
/** Nonce 2^64-1 is reserved for rekey, so counters run from 0 to MAX_NONCE - 1. */
export const MAX_NONCE = 0xffff_ffff_ffff_ffffn;

const EMPTY = new Uint8Array(0);

/** The two cipher functions Noise defines. */
export type CipherName = "AESGCM" | "ChaChaPoly";

// ---------------------------------------------------------------------------------------------
// Handshake patterns

/** A handshake token (section 7), or `psk` (section 9: mix a pre-shared key). */
export type Token = "e" | "s" | "ee" | "es" | "se" | "ss" | "psk";
/** A pre-message token: keys known before the handshake starts. */
export type PreToken = "e" | "s";

/** A handshake pattern: pre-messages per side and message token lists, initiator first. */
export interface HandshakePattern {
  readonly name: string;
  readonly initiatorPre: readonly PreToken[];
  readonly responderPre: readonly PreToken[];
  readonly messages: readonly (readonly Token[])[];
}

function pattern(
  name: string,
  initiatorPre: PreToken[],
  responderPre: PreToken[],
  ...messages: Token[][]
): HandshakePattern {
  return { name, initiatorPre, responderPre, messages };
}

/** All fundamental one-way and interactive patterns of section 7.4 and 7.5. */
export const PATTERNS = {
  N: pattern("N", [], ["s"], ["e", "es"]),
  K: pattern("K", ["s"], ["s"], ["e", "es", "ss"]),
  X: pattern("X", [], ["s"], ["e", "es", "s", "ss"]),
  NN: pattern("NN", [], [], ["e"], ["e", "ee"]),
  NK: pattern("NK", [], ["s"], ["e", "es"], ["e", "ee"]),
  NX: pattern("NX", [], [], ["e"], ["e", "ee", "s", "es"]),
  KN: pattern("KN", ["s"], [], ["e"], ["e", "ee", "se"]),
  KK: pattern("KK", ["s"], ["s"], ["e", "es", "ss"], ["e", "ee", "se"]),
  KX: pattern("KX", ["s"], [], ["e"], ["e", "ee", "se", "s", "es"]),
  XN: pattern("XN", [], [], ["e"], ["e", "ee"], ["s", "se"]),
  XK: pattern("XK", [], ["s"], ["e", "es"], ["e", "ee"], ["s", "se"]),
  XX: pattern("XX", [], [], ["e"], ["e", "ee", "s", "es"], ["s", "se"]),
  IN: pattern("IN", [], [], ["e", "s"], ["e", "ee", "se"]),
  IK: pattern("IK", [], ["s"], ["e", "es", "s", "ss"], ["e", "ee", "se"]),
  IX: pattern("IX", [], [], ["e", "s"], ["e", "ee", "se", "s", "es"]),
} as const satisfies Record<string, HandshakePattern>;

/** Name of a built-in pattern. */
export type PatternName = keyof typeof PATTERNS;

/** PSK pre-shared key length (section 9.1). */
export const PSK_LEN = 32;

/**
 * A pattern with PSK modifiers (section 9.2): `psk0` puts a `psk` token at the start of the
 * first message, `pskN` at the end of message N. Throws when a position is past the last
 * message or repeated. Modifiers are named in the order given.
 * @example
 * const ikpsk1 = withPsk(PATTERNS.IK, 1); // name "IKpsk1": -> e, es, s, ss, psk
 */
export function withPsk(base: HandshakePattern, ...positions: number[]): HandshakePattern {
  const messages = base.messages.map((m) => [...m]);
  for (const [i, n] of positions.entries()) {
    if (!Number.isInteger(n) || n < 0 || n > messages.length || positions.indexOf(n) !== i) {
      throw new Error(`Cannot add psk${n} to ${base.name}: no such message, or repeated`);
    }
    if (n === 0) messages[0]!.unshift("psk");
    else messages[n - 1]!.push("psk");
  }
  const name = base.name + positions.map((n) => `psk${n}`).join("+");
  return { ...base, name, messages };
}

/** Whether a pattern uses a PSK: then every `e` is also mixed into the key (section 9.2). */
function isPskPattern(p: HandshakePattern): boolean {
  return p.messages.some((m) => m.includes("psk"));
}

/** How many `psk` tokens, hence pre-shared keys, a pattern takes. */
export function pskCount(p: HandshakePattern): number {
  return p.messages.reduce((n, m) => n + m.filter((t) => t === "psk").length, 0);
}

/** A parsed protocol name such as `Noise_IK_25519_ChaChaPoly_SHA256`. */
export interface Protocol {
  readonly pattern: HandshakePattern;
  readonly cipher: CipherName;
}

/** The full protocol name of a pattern and cipher, as hashed into the handshake. */
export function protocolName(pattern: HandshakePattern, cipher: CipherName): string {
  return `Noise_${pattern.name}_25519_${cipher}_SHA256`;
}

/**
 * Parse a protocol name this module supports: a built-in pattern, optionally with PSK
 * modifiers (`IKpsk2`, `NNpsk0+psk2`), then 25519, AESGCM or ChaChaPoly, and SHA256.
 * @example
 * const p = parseProtocolName("Noise_XX_25519_AESGCM_SHA256");
 * if (p.ok) HandshakeState.initialize({ ...p.value, initiator: true, s });
 */
export function parseProtocolName(name: string): Result<Protocol> {
  const m = /^Noise_([A-Za-z0-9+]+)_([^_]+)_([^_]+)_([^_]+)$/.exec(name);
  if (!m) return fail(`malformed protocol name "${name}"`);
  const [, pat = "", dhName, cipher, hash] = m;
  if (dhName !== "25519") return fail(`unsupported DH "${dhName}"`);
  if (cipher !== "AESGCM" && cipher !== "ChaChaPoly") return fail(`unsupported cipher "${cipher}"`);
  if (hash !== "SHA256") return fail(`unsupported hash "${hash}"`);
  const mods = /^([A-Z]+)((?:psk\d+)(?:\+psk\d+)*)?$/.exec(pat);
  const base = mods?.[1] ?? "";
  if (!mods || !Object.hasOwn(PATTERNS, base)) {
    return fail(`unsupported handshake pattern "${pat}"`);
  }
  const plain = PATTERNS[base as PatternName];
  if (mods[2] === undefined) return ok({ pattern: plain, cipher });
  const positions = mods[2].split("+").map((m) => Number(m.slice(3)));
  try {
    return ok({ pattern: withPsk(plain, ...positions), cipher });
  } catch {
    return fail(`unsupported handshake pattern "${pat}"`);
  }
}

// ---------------------------------------------------------------------------------------------
// CipherState

// One nonce buffer, rewritten for each call: the runtime copies it when the cipher is created,
// and everything here is synchronous.
const NONCE = new Uint8Array(12);
const NONCE_VIEW = new DataView(NONCE.buffer);

function nonceBytes(cipher: CipherName, n: bigint): Uint8Array {
  // Section 12: 32 zero bits then the counter, big-endian for AESGCM, little-endian for ChaChaPoly.
  NONCE_VIEW.setBigUint64(4, n, cipher === "ChaChaPoly");
  return NONCE;
}

const AEAD_OPTIONS = { authTagLength: TAG_LEN };

function nativeCipher(cipher: CipherName, k: Uint8Array, nonce: Uint8Array) {
  return cipher === "AESGCM"
    ? createCipheriv("aes-256-gcm", k, nonce, AEAD_OPTIONS)
    : createCipheriv("chacha20-poly1305", k, nonce, AEAD_OPTIONS);
}

function nativeDecipher(cipher: CipherName, k: Uint8Array, nonce: Uint8Array) {
  return cipher === "AESGCM"
    ? createDecipheriv("aes-256-gcm", k, nonce, AEAD_OPTIONS)
    : createDecipheriv("chacha20-poly1305", k, nonce, AEAD_OPTIONS);
}

/**
 * Encrypts `plaintext` into `out` at `at`: the ciphertext, then the tag. Each call builds a
 * runtime cipher object (node:crypto has no way to give one a new nonce); what it costs beyond
 * that is one buffer the runtime returns, copied once into `out`.
 */
function aeadEncryptInto(
  cipher: CipherName,
  k: Uint8Array,
  n: bigint,
  ad: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  at: number,
): void {
  const c = nativeCipher(cipher, k, nonceBytes(cipher, n));
  if (ad.length > 0) c.setAAD(ad);
  out.set(c.update(plaintext), at);
  // Both are stream modes: final() has nothing left to emit, it only computes the tag.
  c.final();
  out.set(c.getAuthTag(), at + plaintext.length);
}

function aeadEncrypt(
  cipher: CipherName,
  k: Uint8Array,
  n: bigint,
  ad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(plaintext.length + TAG_LEN);
  aeadEncryptInto(cipher, k, n, ad, plaintext, out, 0);
  return out;
}

function aeadDecrypt(
  cipher: CipherName,
  k: Uint8Array,
  n: bigint,
  ad: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array | null {
  const body = ciphertext.length - TAG_LEN;
  try {
    const d = nativeDecipher(cipher, k, nonceBytes(cipher, n));
    if (ad.length > 0) d.setAAD(ad);
    d.setAuthTag(ciphertext.subarray(body));
    const pt = d.update(ciphertext.subarray(0, body));
    // Throws on a wrong tag; the unauthenticated plaintext above is dropped then.
    d.final();
    // A plain Uint8Array over the runtime's fresh buffer, not a copy: nobody else holds it, and
    // a Buffer's slice() would be a view where callers expect a copy.
    return new Uint8Array(pt.buffer, pt.byteOffset, pt.byteLength);
  } catch {
    return null;
  }
}

/**
 * A cipher key with its 64-bit nonce counter (section 5.1). Without a key it passes data
 * through unchanged, as the first handshake messages require.
 */
export class CipherState {
  #k: Uint8Array | null = null;
  #n = 0n;

  /** A cipher state for `cipher`, optionally keyed. */
  constructor(readonly cipher: CipherName, key: Uint8Array | null = null) {
    this.initializeKey(key);
  }

  /** Set a new key (or none) and reset the nonce to zero. */
  initializeKey(key: Uint8Array | null): void {
    if (key !== null && key.length !== KEY_LEN) {
      throw new Error(`Cannot set cipher key: key is ${key.length} bytes, not 32`);
    }
    this.#k = key === null ? null : key.slice();
    this.#n = 0n;
  }

  /** Whether a key is set. */
  hasKey(): boolean {
    return this.#k !== null;
  }

  /** The nonce the next encrypt/decrypt will use. */
  get nonce(): bigint {
    return this.#n;
  }

  /**
   * Set the next nonce, for transports that carry an explicit counter (section 11.4) because
   * datagrams may arrive out of order. Pair it with a replay window.
   */
  setNonce(n: bigint): void {
    if (n < 0n || n > MAX_NONCE) throw new Error(`Cannot set nonce: ${n} is not a 64-bit counter`);
    this.#n = n;
  }

  /**
   * Encrypt and advance the nonce. Throws only on caller error: nonces exhausted, or a
   * result longer than {@link MAX_MESSAGE_LEN}.
   */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.#k === null) return plaintext.slice();
    const out = new Uint8Array(plaintext.length + TAG_LEN);
    this.encryptInto(ad, plaintext, out, 0);
    return out;
  }

  /**
   * {@link encryptWithAd} into a buffer the caller owns: the ciphertext and tag
   * (`plaintext.length + TAG_LEN` bytes) are written to `out` from `at`, so a transport can
   * put its own header in front without another copy. Throws as `encryptWithAd` does, and
   * with a key missing or `out` too small.
   */
  encryptInto(ad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, at: number): void {
    if (this.#k === null) throw new Error("Cannot encrypt into a buffer: no key set");
    if (plaintext.length + TAG_LEN > MAX_MESSAGE_LEN) {
      throw new Error(
        `Cannot encrypt: ${plaintext.length} bytes plus tag exceed the ${MAX_MESSAGE_LEN}-byte limit`,
      );
    }
    if (this.#n >= MAX_NONCE) {
      throw new Error("Cannot encrypt: nonces exhausted, rekey or redo the handshake");
    }
    if (!(at >= 0 && at + plaintext.length + TAG_LEN <= out.length)) {
      throw new Error(`Cannot encrypt: no room for ${plaintext.length + TAG_LEN} bytes at ${at}`);
    }
    aeadEncryptInto(this.cipher, this.#k, this.#n, ad, plaintext, out, at);
    this.#n++;
  }

  /**
   * Decrypt and advance the nonce. Never throws: tampered, truncated or oversized input
   * fails and leaves the nonce unchanged, so a forged packet cannot desynchronise the stream.
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Result<Uint8Array> {
    if (ciphertext.length > MAX_MESSAGE_LEN) return fail("message longer than 65535 bytes");
    if (this.#k === null) return ok(ciphertext.slice());
    if (ciphertext.length < TAG_LEN) return fail("message shorter than the authentication tag");
    if (this.#n >= MAX_NONCE) return fail("nonces exhausted");
    const out = aeadDecrypt(this.cipher, this.#k, this.#n, ad, ciphertext);
    if (out === null) return fail("authentication failed");
    this.#n++;
    return ok(out);
  }

  /** Replace the key with one derived from it (section 11.3); the nonce is kept. */
  rekey(): void {
    if (this.#k === null) throw new Error("Cannot rekey: no key set");
    this.#k = aeadEncrypt(this.cipher, this.#k, MAX_NONCE, EMPTY, new Uint8Array(32)).slice(0, 32);
  }

  /** An independent copy (key and nonce). */
  clone(): CipherState {
    const c = new CipherState(this.cipher, this.#k);
    c.#n = this.#n;
    return c;
  }
}

// ---------------------------------------------------------------------------------------------
// SymmetricState

/**
 * HKDF as Noise defines it (section 4.3): HMAC-SHA256 extract, then chained expand outputs.
 * That is RFC 5869 HKDF with the chaining key as salt and empty info, so one native call.
 */
function hkdf(chainingKey: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): Uint8Array[] {
  const okm = hkdfSha256(chainingKey, ikm, outputs * HASH_LEN);
  const out: Uint8Array[] = [];
  for (let i = 0; i < outputs; i++) out.push(okm.slice(i * HASH_LEN, (i + 1) * HASH_LEN));
  return out;
}

/** Chaining key, handshake hash and cipher state of a handshake (section 5.2). */
export class SymmetricState {
  #cs: CipherState;
  #ck: Uint8Array;
  #h: Uint8Array;

  /** Start from a protocol name: padded to 32 bytes if short, else hashed. */
  constructor(name: string, readonly cipher: CipherName) {
    const bytes = new TextEncoder().encode(name);
    this.#h = bytes.length <= HASH_LEN
      ? concat(bytes, new Uint8Array(HASH_LEN - bytes.length))
      : sha256(bytes);
    this.#ck = this.#h.slice();
    this.#cs = new CipherState(cipher);
  }

  /** Mix DH output (or other key material) into the chaining key and set a new cipher key. */
  mixKey(ikm: Uint8Array): void {
    const [ck, k] = hkdf(this.#ck, ikm, 2) as [Uint8Array, Uint8Array];
    this.#ck = ck;
    this.#cs.initializeKey(k);
  }

  /** Mix data into the handshake hash. */
  mixHash(data: Uint8Array): void {
    this.#h = sha256(this.#h, data);
  }

  /** Mix key material into both chaining key and hash (used by PSK patterns). */
  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, th, k] = hkdf(this.#ck, ikm, 3) as [Uint8Array, Uint8Array, Uint8Array];
    this.#ck = ck;
    this.mixHash(th);
    this.#cs.initializeKey(k);
  }

  /** Whether a cipher key has been set by a DH yet. */
  hasKey(): boolean {
    return this.#cs.hasKey();
  }

  /** The current handshake hash h (a copy). */
  getHandshakeHash(): Uint8Array {
    return this.#h.slice();
  }

  /** Encrypt with h as associated data, then mix the ciphertext into h. */
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ct = this.#cs.encryptWithAd(this.#h, plaintext);
    this.mixHash(ct);
    return ct;
  }

  /** Decrypt with h as associated data, then mix the ciphertext into h. Never throws. */
  decryptAndHash(ciphertext: Uint8Array): Result<Uint8Array> {
    const pt = this.#cs.decryptWithAd(this.#h, ciphertext);
    if (pt.ok) this.mixHash(ciphertext);
    return pt;
  }

  /** Derive the two transport cipher states: initiator-to-responder first. */
  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf(this.#ck, EMPTY, 2) as [Uint8Array, Uint8Array];
    return [new CipherState(this.cipher, k1), new CipherState(this.cipher, k2)];
  }

  /** An independent copy, so a handshake step can be attempted and discarded. */
  clone(): SymmetricState {
    const s = new SymmetricState("", this.cipher);
    s.#cs = this.#cs.clone();
    s.#ck = this.#ck;
    s.#h = this.#h;
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// HandshakeState

/** Options for {@link HandshakeState.initialize}. */
export interface HandshakeOptions {
  /** A built-in pattern name or a custom token list. */
  readonly pattern: PatternName | HandshakePattern;
  readonly cipher: CipherName;
  readonly initiator: boolean;
  /** Bytes both sides must agree on (e.g. app name and version); empty by default. */
  readonly prologue?: Uint8Array;
  /** Local static key pair; required when the pattern sends or pre-shares our static key. */
  readonly s?: KeyPair;
  /** Local ephemeral key pair; generated when needed if absent (inject only for test vectors). */
  readonly e?: KeyPair;
  /** Remote static public key, for patterns where we know it in advance (NK, KK, XK, IK...). */
  readonly rs?: Uint8Array;
  /** Remote ephemeral public key, only for patterns with an ephemeral pre-message. */
  readonly re?: Uint8Array;
  /** Pre-shared keys (32 bytes each), one per `psk` token in order; only for PSK patterns. */
  readonly psks?: readonly Uint8Array[];
  /** Random source for the ephemeral key. */
  readonly random?: RandomBytes;
}

/** What a finished handshake yields: directional cipher states and the channel binding. */
export interface HandshakeResult {
  /** Encrypts what we send. Unused by the responder of a one-way pattern. */
  readonly send: CipherState;
  /** Decrypts what we receive. */
  readonly receive: CipherState;
  /** Final handshake hash h: identifies this session, usable for channel binding. */
  readonly handshakeHash: Uint8Array;
  /** The peer's static public key, if the pattern transmitted or pre-shared it. */
  readonly remoteStatic: Uint8Array | null;
}

/** Whose move it is: write a message, read one, or split into transport ciphers. */
export type Turn = "write" | "read" | "done";

/** Keys a step may replace; kept together so a failed step can be dropped wholesale. */
interface Keys {
  e: KeyPair | null;
  re: Uint8Array | null;
  rs: Uint8Array | null;
}

/**
 * One side of a Noise handshake (section 5.3). `readMessage` never throws and leaves the state
 * untouched on failure, so a forged or corrupted datagram cannot abort a handshake in progress.
 */
export class HandshakeState {
  readonly pattern: HandshakePattern;
  readonly initiator: boolean;
  #ss: SymmetricState;
  #s: KeyPair | null;
  #keys: Keys;
  #index = 0;
  #split = false;
  readonly #random: RandomBytes;
  readonly #psks: readonly Uint8Array[];
  /** Whether `e` tokens also call MixKey (section 9.2). */
  readonly #psk: boolean;

  private constructor(o: HandshakeOptions, pattern: HandshakePattern) {
    this.pattern = pattern;
    this.initiator = o.initiator;
    this.#random = o.random ?? systemRandom;
    this.#psks = (o.psks ?? []).map((k) => k.slice());
    this.#psk = isPskPattern(pattern);
    this.#ss = new SymmetricState(protocolName(pattern, o.cipher), o.cipher);
    this.#s = o.s ?? null;
    this.#keys = { e: o.e ?? null, re: o.re?.slice() ?? null, rs: o.rs?.slice() ?? null };
  }

  /**
   * Start a handshake. Throws "Cannot start handshake: ..." when keys the pattern needs are
   * missing, malformed, or a remote key is given that the pattern would not use.
   * @example
   * const hs = HandshakeState.initialize({ pattern: "IK", cipher: "ChaChaPoly", initiator: true, s: me, rs: peerPublic });
   */
  static initialize(o: HandshakeOptions): HandshakeState {
    const pattern = typeof o.pattern === "string" ? PATTERNS[o.pattern] : o.pattern;
    if (pattern === undefined) {
      throw new Error(`Cannot start handshake: unknown pattern "${o.pattern}"`);
    }
    if (pattern.messages.length === 0) {
      throw new Error("Cannot start handshake: pattern has no messages");
    }
    const localPre = o.initiator ? pattern.initiatorPre : pattern.responderPre;
    const remotePre = o.initiator ? pattern.responderPre : pattern.initiatorPre;
    const sends = (t: Token) =>
      pattern.messages.some((m, i) => (i % 2 === 0) === o.initiator && m.includes(t));
    const why = (r: string) => new Error(`Cannot start handshake ${pattern.name}: ${r}`);

    if ((localPre.includes("s") || sends("s")) && o.s === undefined) {
      throw why("local static key required");
    }
    if (localPre.includes("e") && o.e === undefined) {
      throw why("local ephemeral key required by pre-message");
    }
    for (const [name, kp] of [["static", o.s], ["ephemeral", o.e]] as const) {
      if (kp && (kp.privateKey.length !== KEY_LEN || kp.publicKey.length !== KEY_LEN)) {
        throw why(`local ${name} key pair must be 32-byte keys`);
      }
    }
    for (const [token, key, name] of [["s", o.rs, "static"], ["e", o.re, "ephemeral"]] as const) {
      const needed = remotePre.includes(token);
      // A remote key the pattern never uses would silently not be authenticated: refuse it.
      if (needed && key === undefined) throw why(`remote ${name} key required`);
      if (!needed && key !== undefined) throw why(`pattern does not take a remote ${name} key`);
      if (key !== undefined && !isValidPublicKey(key)) throw why(`remote ${name} key is invalid`);
    }
    const psks = o.psks ?? [];
    if (psks.length !== pskCount(pattern)) {
      throw why(`pattern takes ${pskCount(pattern)} pre-shared keys, got ${psks.length}`);
    }
    if (psks.some((k) => k.length !== PSK_LEN)) throw why("pre-shared keys must be 32 bytes");

    const hs = new HandshakeState(o, pattern);
    hs.#ss.mixHash(o.prologue ?? EMPTY);
    // Pre-message keys are hashed initiator's first, whoever we are (section 5.3).
    for (
      const [pre, local] of [[pattern.initiatorPre, o.initiator], [
        pattern.responderPre,
        !o.initiator,
      ]] as const
    ) {
      for (const t of pre) {
        const key = t === "s"
          ? (local ? hs.#s?.publicKey : hs.#keys.rs)
          : (local ? hs.#keys.e?.publicKey : hs.#keys.re);
        hs.#ss.mixHash(key!);
        if (t === "e" && hs.#psk) hs.#ss.mixKey(key!);
      }
    }
    return hs;
  }

  /** Whose move it is. */
  get turn(): Turn {
    if (this.#index >= this.pattern.messages.length) return "done";
    return (this.#index % 2 === 0) === this.initiator ? "write" : "read";
  }

  /** Whether all handshake messages have been exchanged. */
  get complete(): boolean {
    return this.turn === "done";
  }

  /** The peer's static public key once known (pre-shared or received), else null. */
  getRemoteStatic(): Uint8Array | null {
    return this.#keys.rs?.slice() ?? null;
  }

  /** The current handshake hash h. */
  getHandshakeHash(): Uint8Array {
    return this.#ss.getHandshakeHash();
  }

  /** The pre-shared key for the `psk` tokens of the current message, from its first. */
  #pskAt(n: number): Uint8Array {
    const before = this.pattern.messages.slice(0, this.#index).reduce(
      (c, m) => c + m.filter((t) => t === "psk").length,
      0,
    );
    // initialize() checked there is one per token.
    return this.#psks[before + n]!;
  }

  /** The DH pair a token calls for, from our point of view (section 5.3). */
  #dhPair(t: "ee" | "es" | "se" | "ss", k: Keys): [KeyPair | null, Uint8Array | null] {
    const s = this.#s;
    switch (t) {
      case "ee":
        return [k.e, k.re];
      case "ss":
        return [s, k.rs];
      case "es":
        return this.initiator ? [k.e, k.rs] : [s, k.re];
      case "se":
        return this.initiator ? [s, k.re] : [k.e, k.rs];
    }
  }

  /**
   * Write the next handshake message carrying `payload` (encrypted once a DH has happened).
   * Throws "Cannot write handshake message: ..." when it is not our turn or the message would
   * exceed 65535 bytes; the state is unchanged then.
   */
  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    const why = (r: string) => new Error(`Cannot write handshake message: ${r}`);
    if (this.turn !== "write") {
      throw why(this.turn === "done" ? "handshake complete" : "it is the peer's turn");
    }
    if (payload.length > MAX_MESSAGE_LEN) {
      throw why(`payload of ${payload.length} bytes is too long`);
    }
    const ss = this.#ss.clone();
    const keys = { ...this.#keys };
    const parts: Uint8Array[] = [];
    let psks = 0;
    for (const t of this.pattern.messages[this.#index] ?? []) {
      if (t === "e") {
        keys.e ??= generateKeyPair(this.#random);
        parts.push(keys.e.publicKey);
        ss.mixHash(keys.e.publicKey);
        if (this.#psk) ss.mixKey(keys.e.publicKey);
      } else if (t === "psk") {
        ss.mixKeyAndHash(this.#pskAt(psks++));
      } else if (t === "s") {
        parts.push(ss.encryptAndHash(this.#s!.publicKey));
      } else {
        const [local, remote] = this.#dhPair(t, keys);
        const secret = local && remote ? dh(local.privateKey, remote) : null;
        // Unreachable for valid patterns: remote keys are validated when set or read.
        if (secret === null) throw why(`no valid key pair for token "${t}"`);
        ss.mixKey(secret);
      }
    }
    const total = parts.reduce((n, p) => n + p.length, 0) + payload.length +
      (ss.hasKey() ? TAG_LEN : 0);
    if (total > MAX_MESSAGE_LEN) throw why(`message of ${total} bytes exceeds ${MAX_MESSAGE_LEN}`);
    parts.push(ss.encryptAndHash(payload));
    this.#ss = ss;
    this.#keys = keys;
    this.#index++;
    return concat(...parts);
  }

  /**
   * Read the next handshake message and return its payload. Never throws: malformed,
   * truncated, tampered or unexpected input yields `{ ok: false, reason }` and leaves the
   * state as it was, so the caller may keep waiting for the genuine message.
   */
  readMessage(message: Uint8Array): Result<Uint8Array> {
    try {
      return this.#read(message);
    } catch (err) {
      // Defence in depth: no input may escape as an exception.
      return fail(`internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  #read(message: Uint8Array): Result<Uint8Array> {
    if (this.turn !== "read") {
      return fail(this.turn === "done" ? "handshake complete" : "not expecting a message");
    }
    if (message.length > MAX_MESSAGE_LEN) return fail("message longer than 65535 bytes");
    const ss = this.#ss.clone();
    const keys = { ...this.#keys };
    let pos = 0;
    let psks = 0;
    for (const t of this.pattern.messages[this.#index] ?? []) {
      if (t === "psk") {
        ss.mixKeyAndHash(this.#pskAt(psks++));
      } else if (t === "e" || t === "s") {
        const len = t === "s" && ss.hasKey() ? KEY_LEN + TAG_LEN : KEY_LEN;
        if (message.length - pos < len) {
          return fail(`truncated: missing remote ${t === "e" ? "ephemeral" : "static"} key`);
        }
        const field = message.subarray(pos, pos + len);
        pos += len;
        let key: Uint8Array;
        if (t === "e") {
          key = field.slice();
          ss.mixHash(key);
          if (this.#psk) ss.mixKey(key);
        } else {
          const r = ss.decryptAndHash(field);
          if (!r.ok) return fail(`remote static key: ${r.reason}`);
          key = r.value;
        }
        // Reject low-order keys now so that no later DH (even one in our reply) can fail.
        if (!isValidPublicKey(key)) {
          return fail(`invalid remote ${t === "e" ? "ephemeral" : "static"} key`);
        }
        if (t === "e") keys.re = key;
        else keys.rs = key;
      } else {
        const [local, remote] = this.#dhPair(t, keys);
        const secret = local && remote ? dh(local.privateKey, remote) : null;
        if (secret === null) return fail(`cannot compute DH for token "${t}"`);
        ss.mixKey(secret);
      }
    }
    const payload = ss.decryptAndHash(message.subarray(pos));
    if (!payload.ok) return fail(`payload: ${payload.reason}`);
    this.#ss = ss;
    this.#keys = keys;
    this.#index++;
    return payload;
  }

  /**
   * Finish: derive the transport cipher states. Allowed once, after the last message, since a
   * second pair of identical ciphers would invite nonce reuse.
   */
  split(): HandshakeResult {
    if (!this.complete) throw new Error("Cannot split handshake: messages still pending");
    if (this.#split) throw new Error("Cannot split handshake: already split");
    this.#split = true;
    const [c1, c2] = this.#ss.split();
    return {
      send: this.initiator ? c1 : c2,
      receive: this.initiator ? c2 : c1,
      handshakeHash: this.#ss.getHandshakeHash(),
      remoteStatic: this.getRemoteStatic(),
    };
  }
}
