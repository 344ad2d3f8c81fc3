/**
 * Trust on first use: remembers which identity fingerprint was seen under a caller-chosen key
 * (such as "server:port/room/name") and reports whether a later one is new, the same, or
 * changed. Also the known-peers file codec. Pure: no I/O.
 *
 * @example
 * const peers = new KnownPeers();
 * peers.check("example.org:7777/lobby/bob", fp); // "new"
 * peers.pin("example.org:7777/lobby/bob", fp);
 * peers.check("example.org:7777/lobby/bob", fp); // "match"
 * peers.check("example.org:7777/lobby/bob", other); // "changed"
 * @module
 */
import { type Decoded, isFingerprint } from "./identity.ts";

/** Version written to, and required in, known-peers files. */
export const KNOWN_PEERS_FILE_VERSION = 1;

/** How a fingerprint compares with what is pinned for its key. */
export type TrustStatus = "new" | "match" | "changed";

/** Pins peer keys by name (trust on first use); the CLI backs it with the known-peers file. */
export interface TrustStore {
  check(name: string, fingerprint: string): TrustStatus;
  pin(name: string, fingerprint: string): void;
}

/** An in-memory TrustStore, for tests and as the default. */
export function memoryTrust(): TrustStore {
  const k = new KnownPeers();
  return { check: (n, fp) => k.check(n, fp), pin: (n, fp) => k.pin(n, fp) };
}

/** A table from caller-chosen keys to pinned identity fingerprints. */
export class KnownPeers {
  readonly #pins = new Map<string, string>();

  /** Start from `entries` (key -> fingerprint); throws if a value is not a fingerprint. */
  constructor(entries: Record<string, string> = {}) {
    for (const [key, fp] of Object.entries(entries)) this.pin(key, fp);
  }

  /** "new" if nothing is pinned for `key`, "match" if `fingerprint` is pinned, else "changed". */
  check(key: string, fingerprint: string): TrustStatus {
    const pinned = this.#pins.get(key);
    if (pinned === undefined) return "new";
    return pinned === fingerprint ? "match" : "changed";
  }

  /** Remember `fingerprint` for `key`, replacing any earlier pin. Throws on a malformed one. */
  pin(key: string, fingerprint: string): void {
    if (!isFingerprint(fingerprint)) {
      throw new Error(
        `Cannot pin ${JSON.stringify(key)}: ${JSON.stringify(fingerprint)} is not a fingerprint`,
      );
    }
    this.#pins.set(key, fingerprint);
  }

  /** The fingerprint pinned for `key`, if any. */
  get(key: string): string | undefined {
    return this.#pins.get(key);
  }

  /** All pins as a plain object with keys in sorted order (stable files, small diffs). */
  toJSON(): Record<string, string> {
    const keys = [...this.#pins.keys()].sort();
    // fromEntries defines own properties, so a key such as "__proto__" stays plain data.
    return Object.fromEntries(keys.map((k) => [k, this.#pins.get(k)!]));
  }
}

/** The known-peers file: `{"version":1,"peers":{key: fingerprint}}`, indented, one newline. */
export function encodeKnownPeers(peers: KnownPeers): string {
  return JSON.stringify({ version: KNOWN_PEERS_FILE_VERSION, peers: peers.toJSON() }, null, 2) +
    "\n";
}

/** Parse a known-peers file; never throws. */
export function decodeKnownPeers(text: string): Decoded<KnownPeers> {
  const fail = (reason: string): Decoded<KnownPeers> => ({ ok: false, reason });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return fail("not valid JSON");
  }
  if (!isPlainObject(data)) return fail("not a JSON object");
  if (data.version !== KNOWN_PEERS_FILE_VERSION) {
    return fail(`unsupported version ${JSON.stringify(data.version) ?? "(missing)"}`);
  }
  const peers = data.peers;
  if (!isPlainObject(peers)) return fail("peers is not a JSON object");
  const entries: Record<string, string> = {};
  for (const [key, fp] of Object.entries(peers)) {
    if (typeof fp !== "string" || !isFingerprint(fp)) {
      return fail(`peer ${JSON.stringify(key)} has no valid fingerprint`);
    }
    Object.defineProperty(entries, key, { value: fp, enumerable: true });
  }
  return { ok: true, value: new KnownPeers(entries) };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
