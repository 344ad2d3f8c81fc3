/**
 * Every size and limit of the p2pchat wire format, defined once: the codec frames datagrams
 * with them and the encryption layer (lib/peer/secure.ts) builds its bodies to them, so the
 * two cannot disagree. docs/PROTOCOL.md shows the same numbers as byte tables.
 * @module
 */

/** magic u8 · version u8 · type u8. */
export const HEADER_LEN = 3;
/** Largest datagram we send: fits the IPv6 minimum MTU with room for tunnels. */
export const MAX_SEND = 1200;
/** Decoders refuse anything bigger: a bound on decoding work, and nobody sends more. */
export const MAX_DATAGRAM = 1500;
/**
 * Except SEALED, RELAY and RELAYED, which may carry a DATA of several fragments where the path
 * was probed to carry it (lib/peer/pmtu.ts): up to a whole MAX_MESSAGE in one datagram, plus
 * room for the sealing and the relay's wrapping.
 */
export const MAX_LARGE_DATAGRAM = 16 * 1024 + 512;

/** Session ids, tokens and nonces are 8 random bytes each, 16 hex chars in memory. */
export const ID_LEN = 8;
export const TOKEN_LEN = 8;
export const NONCE_LEN = 8;
/** A member's Ed25519 identity key and a REGISTER's Ed25519 signature. */
export const KEY_LEN = 32;
export const SIG_LEN = 64;
/** HELLO's mac1: a truncated HMAC-SHA256 keyed by the responder's static key (lib/peer/mac1.ts). */
export const MAC1_LEN = 16;
/** A locked room's proof in REGISTER: the room verifier (Ed25519 key) and its signature. */
export const ROOM_PROOF_LEN = KEY_LEN + SIG_LEN;
/** The server's address cookie: a truncated HMAC-SHA256 (lib/server/cookie.ts). */
export const COOKIE_LEN = 16;
/** An address: family u8, 4 or 16 address bytes, port u16. */
export const ADDR4_LEN = 1 + 4 + 2;
export const ADDR6_LEN = 1 + 16 + 2;

/** The most a length or count byte (str8, var8, addrs, members) can say. */
export const MAX_LEN8 = 255;
/** Local addresses a member announces: bounds the size of a member entry. */
export const MAX_LOCALS = 4;
/** Names and rooms, in bytes (lib/wire/names.ts allows 1-32 ASCII characters). */
export const MAX_NAME = 32;
/** ERROR text we send is cut to this many bytes; receivers accept up to MAX_LEN8. */
export const MAX_TEXT = 200;
/** A DATA fragment's chunk, at most; a DATA carrying several fragments carries n of them. */
export const FRAG_SIZE = 1024;
/** Fragments per DATA message (lib/peer/delivery.ts: 16 KiB in 1 KiB chunks needs 16). */
export const MAX_FRAGS = 32;
/**
 * Message blocks in one DATA_ACK (each `seq u32` and a `mask u32` of fragments, so MAX_FRAGS
 * fits): a receiver acknowledges every few fragments, so a handful is all it ever needs; 32
 * bound a DATA_ACK at 285 bytes (343 sealed and wrapped for the relay).
 */
export const MAX_ACK_BLOCKS = 32;

/** What an encoded DATA adds to its chunk: header, two ids, seq, floor, msg_no, frag, frags, kind. */
export const DATA_OVERHEAD = HEADER_LEN + 2 * ID_LEN + 4 + 4 + 4 + 1 + 1 + 1;
/** An MTU_PROBE before its padding: header, two ids, probe id. */
export const MTU_PROBE_MIN = HEADER_LEN + 2 * ID_LEN + 4;

/** Noise_IK_25519_ChaChaPoly: X25519 keys and ChaChaPoly tags. */
export const DH_LEN = 32;
export const TAG_LEN = 16;
/** Session indexes are u32, transport counters u64, handshake timestamps u64. */
export const INDEX_LEN = 4;
export const COUNTER_LEN = 8;
export const TIMESTAMP_LEN = 8;
/** The init's plaintext payload: the initiator's session id and a timestamp. */
export const HS_PAYLOAD_LEN = ID_LEN + TIMESTAMP_LEN;
/** HELLO's init: sender index · e · encrypted s · encrypted payload. */
export const HS_INIT_LEN = INDEX_LEN + DH_LEN + (DH_LEN + TAG_LEN) + (HS_PAYLOAD_LEN + TAG_LEN);
/** HELLO_ACK's resp: sender index · receiver index · e · encrypted empty payload. */
export const HS_RESP_LEN = INDEX_LEN + INDEX_LEN + DH_LEN + TAG_LEN;
/** What precedes a sealed body's ciphertext, and is authenticated with it: index · counter. */
export const SEALED_PREFIX_LEN = INDEX_LEN + COUNTER_LEN;
/** Smallest sealed body: the prefix and the tag of an empty plaintext. */
export const SEALED_MIN = SEALED_PREFIX_LEN + TAG_LEN;
