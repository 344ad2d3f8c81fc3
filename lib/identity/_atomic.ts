/**
 * Atomic file replacement: write a temp file beside the target, flush it, move it into place,
 * then flush the directory, so readers see the old file or the new one and never a torn write,
 * and the new name survives a crash.
 * @module
 */
import { basename, dirname, join } from "node:path";
import { toHex } from "../wire/bytes.ts";

/** Options for `writeFileAtomic`. */
export interface AtomicWriteOptions {
  /** Permission bits of the new file (ignored on Windows). */
  mode: number;
  /** Replace an existing file (true), or leave it alone and return false (false). */
  overwrite: boolean;
}

/**
 * Write `text` to `path` atomically. The parent directory must exist. Returns false, writing
 * nothing, when `overwrite` is false and `path` already exists (even if it appeared while we
 * wrote: the final step is a hard link, which refuses to replace anything).
 */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: AtomicWriteOptions,
): Promise<boolean> {
  await sweepStale(path);
  const suffix = toHex(crypto.getRandomValues(new Uint8Array(6)));
  const tmp = join(dirname(path), `.${basename(path)}.${suffix}.tmp`);
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: options.mode });
  try {
    try {
      const data = new TextEncoder().encode(text);
      for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
      await file.sync();
    } finally {
      file.close();
    }
    // The umask may have cleared bits of `mode`; set exactly what was asked.
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, options.mode);
    if (options.overwrite) {
      await Deno.rename(tmp, path);
      await syncDir(dirname(path));
      return true;
    }
    try {
      await Deno.link(tmp, path);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return false;
      // A file system without hard links: check, then rename (a small race, but no clobber
      // of a file that was there before we started).
      if (await exists(path)) return false;
      await Deno.rename(tmp, path);
    }
    await syncDir(dirname(path));
    return true;
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/** A temp file older than this was left by a write that was killed: nobody finishes it. */
export const STALE_TMP_MS = 60_000;

/**
 * Removes temp files of `path` that a killed write left behind (they may hold a copy of a
 * secret key). Only names this module makes, only when older than STALE_TMP_MS, so a write
 * in progress in another process is left alone. Failures are ignored: it is housekeeping.
 */
async function sweepStale(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  const ours = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[0-9a-f]{12}\\.tmp$`);
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !ours.test(e.name)) continue;
      const full = join(dir, e.name);
      const st = await Deno.lstat(full).catch(() => null);
      const age = st?.mtime ? Date.now() - st.mtime.getTime() : 0;
      if (age > STALE_TMP_MS) await Deno.remove(full).catch(() => {});
    }
  } catch {
    // No permission to list the directory, or it is gone: nothing to sweep.
  }
}

/**
 * Flushes a directory, so a rename or link in it is on disk. Where that is not supported
 * (Windows cannot open a directory this way; some file systems refuse to sync one) it is
 * skipped: the file itself was already flushed.
 */
async function syncDir(dir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  let d: Deno.FsFile;
  try {
    d = await Deno.open(dir, { read: true });
  } catch {
    return;
  }
  try {
    await d.sync();
  } catch {
    // Not supported here (EINVAL on some file systems): nothing more we can do.
  } finally {
    d.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
