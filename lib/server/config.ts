/** The server's settings (the `serve` flags) and the fixed intervals and limits beside them. */

export interface ServerConfig {
  /** Interval peers are told to send keepalives at; a peer silent for 3 of them is dropped. */
  keepaliveMs: number;
  maxMembersPerRoom: number;
  maxRooms: number;
  maxPeers: number;
  /** How long a name stays bound to its key after its owner left. */
  nameTtlMs: number;
  /** Registration attempts per source IP per minute. */
  registrationsPerMinute: number;
  /** Relayed payload bytes per second per peer (bursts of 4 s allowed). */
  relayBytesPerSec: number;
  /**
   * Names bound to keys (held, or released and within their TTL). When full, new names are
   * refused until one expires: a bound name is never forgotten early, so it cannot be stolen.
   */
  maxNameBindings: number;
  /** Names bound per source IP (IPv4 address or IPv6 /64) that first registered them. */
  maxNamesPerIp: number;
  /**
   * Live registrations per source IP (IPv4 address or IPv6 /64): fewer than a room holds, so
   * one address can fill neither a room nor the server.
   */
  maxPeersPerIp: number;
  /** Live registrations per key (one identity in several rooms at once). */
  maxPeersPerKey: number;
}

export const DEFAULT_SERVER_CONFIG: ServerConfig = {
  keepaliveMs: 15_000,
  maxMembersPerRoom: 64,
  maxRooms: 1024,
  // What one server process holds within 200 MB (bench/scale_bench.ts: 100,000 peers held
  // with keepalives); --max-rooms must allow that many too (1024 rooms of 64 hold 65,536).
  maxPeers: 100_000,
  nameTtlMs: 24 * 3600_000,
  registrationsPerMinute: 30,
  relayBytesPerSec: 128 * 1024,
  maxNameBindings: 100_000,
  maxNamesPerIp: 64,
  maxPeersPerIp: 16,
  maxPeersPerKey: 8,
};

/** Silence after which a member is dropped: 3 keepalive intervals, plus 1 s for jitter. */
export const silenceMs = (cfg: ServerConfig): number => 3 * cfg.keepaliveMs + 1000;

/** Relay bursts: this many seconds of `relayBytesPerSec` (a handshake plus a long message). */
export const RELAY_BURST_S = 4;

/** CONNECTs per second per member, and the burst (a newcomer asks for a whole room at once). */
export const CONNECT_RATE = 10;
export const CONNECT_BURST = 128;

/**
 * The least a relayed packet is charged against `relayBytesPerSec`, whatever its size: tiny
 * packets are limited in number too (at most relayBytesPerSec / 256 a second).
 */
export const RELAY_MIN_CHARGE = 256;
