/**
 * Where identities and known peers live on disk, and loading and saving them: the only module
 * in lib/identity/ that touches the file system or the environment.
 *
 * @example
 * const dir = configDir();
 * const { identity, created } = await loadOrCreateIdentity(join(dir, IDENTITY_FILE));
 * const known = await KnownPeersFile.open(join(dir, KNOWN_PEERS_FILE));
 * @module
 */
import { dirname, posix, resolve, win32 } from "node:path";
import { type RandomBytes, systemRandom } from "../crypto/keys.ts";
import { writeFileAtomic } from "./_atomic.ts";
import { decodeIdentityFile, encodeIdentityFile, type Identity, newIdentity } from "./identity.ts";
import { decodeKnownPeers, encodeKnownPeers, KnownPeers, type TrustStatus } from "./known_peers.ts";

/** File name of the identity inside `configDir()`. */
export const IDENTITY_FILE = "identity.json";
/** File name of the known-peers table inside `configDir()`. */
export const KNOWN_PEERS_FILE = "known_peers.json";

const APP = "p2pchat";
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/** Mode bits that make the identity unusable: any access by group or others. */
const IDENTITY_FORBIDDEN = 0o077;
/** Known peers are not secret, but whoever can write them chooses whom we trust. */
const KNOWN_PEERS_FORBIDDEN = 0o022;
/** Known-peers files bigger than this are refused: a table of pins is nowhere near it. */
export const MAX_KNOWN_PEERS_BYTES = 4 * 1024 * 1024;
/** Where `KnownPeersFile` keeps the table as it was before its last save. */
export const KNOWN_PEERS_BACKUP_SUFFIX = ".bak";

/** Reads an environment variable; `Deno.env.get` by default, a table in tests. */
export type EnvGet = (name: string) => string | undefined;

/**
 * The per-user config directory: `$XDG_CONFIG_HOME/p2pchat` (if set and absolute) or
 * `$HOME/.config/p2pchat` on Linux and other Unixes, `$HOME/Library/Application Support/p2pchat`
 * on macOS, `%APPDATA%\p2pchat` on Windows. Throws when the variables it needs are unset.
 * @example
 * configDir((n) => ({ HOME: "/home/ann" })[n], "linux"); // "/home/ann/.config/p2pchat"
 */
export function configDir(
  env: EnvGet = (name) => Deno.env.get(name),
  os: typeof Deno.build.os = Deno.build.os,
): string {
  const get = (name: string) => env(name) || undefined; // empty counts as unset
  if (os === "windows") {
    const appData = get("APPDATA");
    if (appData === undefined) throw new Error("Cannot find a config directory: set APPDATA");
    return win32.join(appData, APP);
  }
  const home = get("HOME");
  if (os === "darwin") {
    if (home === undefined) throw new Error("Cannot find a config directory: set HOME");
    return posix.join(home, "Library", "Application Support", APP);
  }
  // The XDG Base Directory spec says to ignore a relative XDG_CONFIG_HOME.
  const xdg = get("XDG_CONFIG_HOME");
  if (xdg !== undefined && posix.isAbsolute(xdg)) return posix.join(xdg, APP);
  if (home !== undefined) return posix.join(home, ".config", APP);
  throw new Error("Cannot find a config directory: set XDG_CONFIG_HOME or HOME");
}

/** What `loadOrCreateIdentity` found or made. */
export interface LoadedIdentity {
  identity: Identity;
  /** True when no file existed and a new identity was written. */
  created: boolean;
}

/**
 * Load the identity at `path`, or create one there if the file does not exist: the parent
 * directory is made with mode 0700, the file written atomically with mode 0600, and an
 * existing file is never replaced (if another process wins the race, its identity is used).
 * On Unix, refuses a file owned by another user or that group or others can read, write or
 * execute, and tightens the config directory (`configDir()`) to 0700 if we own it; Windows
 * reports no modes, so nothing is checked there. Refuses a file that does not decode.
 */
export async function loadOrCreateIdentity(
  path: string,
  random: RandomBytes = systemRandom,
): Promise<LoadedIdentity> {
  await tightenConfigDir(dirname(path));
  const existing = await readIdentity(path);
  if (existing !== null) return { identity: existing, created: false };
  const identity = newIdentity(random);
  let written: boolean;
  try {
    await Deno.mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
    written = await writeFileAtomic(path, encodeIdentityFile(identity), {
      mode: FILE_MODE,
      overwrite: false,
    });
  } catch (e) {
    throw new Error(`Cannot create identity ${path}: ${messageOf(e)}`, { cause: e });
  }
  if (written) return { identity, created: true };
  const raced = await readIdentity(path);
  if (raced === null) {
    throw new Error(`Cannot create identity ${path}: something else is in the way`);
  }
  return { identity: raced, created: false };
}

/** The identity at `path`, or null if there is no such file; throws on anything else. */
async function readIdentity(path: string): Promise<Identity | null> {
  const cannotRead = (reason: string, cause?: unknown) =>
    new Error(`Cannot read identity ${path}: ${reason}`, { cause });
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw cannotRead(messageOf(e), e);
  }
  if (!info.isFile) throw cannotRead("not a regular file");
  const unsafe = unsafeFile(info, IDENTITY_FORBIDDEN);
  if (unsafe !== null) throw new Error(`Cannot use identity ${path}: ${unsafe}`);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw cannotRead(messageOf(e), e);
  }
  const decoded = decodeIdentityFile(text);
  if (!decoded.ok) throw cannotRead(decoded.reason);
  return decoded.value;
}

/**
 * The known-peers table backed by a file. Reads once at `open`; each `pin` merges into what
 * is on disk now (so two running chats do not drop each other's pins) and saves atomically
 * with mode 0600, first copying the table it replaces to `<path>.bak`. A file that does not
 * decode, is too big, or (on Unix) is owned by another user or writable by others is an
 * error, never replaced.
 */
export class KnownPeersFile {
  readonly path: string;
  #peers: KnownPeers;
  /** Pins not yet on disk, in the order they were made. */
  readonly #pending = new Map<string, string>();
  #saving: Promise<void> = Promise.resolve();

  private constructor(path: string, peers: KnownPeers) {
    this.path = path;
    this.#peers = peers;
  }

  /** Open the table at `path`; a missing file is an empty table, a corrupt one an error. */
  static async open(path: string): Promise<KnownPeersFile> {
    await tightenConfigDir(dirname(path));
    return new KnownPeersFile(path, (await readKnownPeers(path))?.peers ?? new KnownPeers());
  }

  /** "new", "match" or "changed": see `KnownPeers.check`. */
  check(key: string, fingerprint: string): TrustStatus {
    return this.#peers.check(key, fingerprint);
  }

  /** The fingerprint pinned for `key`, if any. */
  get(key: string): string | undefined {
    return this.#peers.get(key);
  }

  /**
   * Pin `fingerprint` for `key` and save. `check` sees the pin at once; the promise settles
   * when it is on disk. Saves run one at a time, in call order.
   */
  pin(key: string, fingerprint: string): Promise<void> {
    try {
      this.#peers.pin(key, fingerprint);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#pending.delete(key); // re-insert, so the newest pin of a key is applied last
    this.#pending.set(key, fingerprint);
    const saved = this.#saving.then(() => this.#save());
    this.#saving = saved.catch(() => {});
    return saved;
  }

  async #save(): Promise<void> {
    if (this.#pending.size === 0) return; // an earlier save already wrote this pin
    const batch = [...this.#pending];
    const onDisk = await readKnownPeers(this.path);
    const merged = onDisk?.peers ?? new KnownPeers();
    for (const [key, fp] of batch) merged.pin(key, fp);
    try {
      await Deno.mkdir(dirname(this.path), { recursive: true, mode: DIR_MODE });
      if (onDisk) {
        await writeFileAtomic(this.path + KNOWN_PEERS_BACKUP_SUFFIX, onDisk.text, {
          mode: FILE_MODE,
          overwrite: true,
        });
      }
      await writeFileAtomic(this.path, encodeKnownPeers(merged), {
        mode: FILE_MODE,
        overwrite: true,
      });
    } catch (e) {
      throw new Error(`Cannot save known peers ${this.path}: ${messageOf(e)}`, { cause: e });
    }
    for (const [key, fp] of batch) {
      if (this.#pending.get(key) === fp) this.#pending.delete(key);
    }
    // Disk now holds every other process's pins too; keep the ones still waiting to be saved.
    for (const [key, fp] of this.#pending) merged.pin(key, fp);
    this.#peers = merged;
  }
}

/**
 * The table at `path` and its text, or null if there is no such file; throws "Cannot read
 * known peers ..." or "Cannot use known peers ..." on anything else, naming the backup if
 * there is one.
 */
async function readKnownPeers(path: string): Promise<{ peers: KnownPeers; text: string } | null> {
  const fail = async (reason: string, cause?: unknown) => {
    const bak = path + KNOWN_PEERS_BACKUP_SUFFIX;
    const hint = (await isFile(bak)) ? ` (the table before the last save is in ${bak})` : "";
    return new Error(`Cannot read known peers ${path}: ${reason}${hint}`, { cause });
  };
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw await fail(messageOf(e), e);
  }
  if (!info.isFile) throw await fail("not a regular file");
  const unsafe = unsafeFile(info, KNOWN_PEERS_FORBIDDEN);
  if (unsafe !== null) throw new Error(`Cannot use known peers ${path}: ${unsafe}`);
  if (info.size > MAX_KNOWN_PEERS_BYTES) {
    throw await fail(`${info.size} bytes is more than the ${MAX_KNOWN_PEERS_BYTES} allowed`);
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw await fail(messageOf(e), e);
  }
  const decoded = decodeKnownPeers(text);
  if (!decoded.ok) throw await fail(decoded.reason);
  return { peers: decoded.value, text };
}

/**
 * Why a file only we should control must not be used, or null: owned by another user, or
 * `forbidden` mode bits set. Unix only: on Windows `Deno.stat` gives no mode (null) and
 * nothing is checked. Without permission to ask for our uid (`--allow-sys`) the owner is not
 * checked.
 */
function unsafeFile(info: Deno.FileInfo, forbidden: number): string | null {
  if (Deno.build.os === "windows" || info.mode === null) return null;
  const me = ourUid();
  if (me !== null && info.uid !== null && info.uid !== me) {
    return `it is owned by another user (uid ${info.uid}, we are ${me})`;
  }
  const open = info.mode & forbidden;
  if (open === 0) return null;
  const how = [open & 0o044 ? "readable" : "", open & 0o022 ? "writable" : ""]
    .filter((w) => w !== "").join(" and ") || "accessible";
  return `it is ${how} by others (chmod 600 it)`;
}

/**
 * Closes the config directory (`configDir()`) to others: mode 0700 if we own it and it is
 * anything looser. Other directories (say the parent of an `--identity` file) are left alone,
 * and so is a directory we do not own. A no-op on Windows and when it does not exist yet.
 */
async function tightenConfigDir(dir: string): Promise<void> {
  if (Deno.build.os === "windows" || !isConfigDir(dir)) return;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new Error(`Cannot use config directory ${dir}: ${messageOf(e)}`, { cause: e });
  }
  if (!info.isDirectory || info.mode === null || (info.mode & 0o077) === 0) return;
  const me = ourUid();
  if (me === null || info.uid !== me) return;
  try {
    await Deno.chmod(dir, DIR_MODE);
  } catch (e) {
    throw new Error(`Cannot make config directory ${dir} private: ${messageOf(e)}`, { cause: e });
  }
}

function isConfigDir(dir: string): boolean {
  try {
    return resolve(dir) === resolve(configDir());
  } catch {
    return false; // no config directory (or no permission to read the environment)
  }
}

function ourUid(): number | null {
  try {
    return Deno.uid();
  } catch {
    return null; // no --allow-sys
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
