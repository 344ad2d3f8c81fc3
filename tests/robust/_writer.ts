/**
 * A child process for the kill-while-writing test: writes the known-peers file (one more pin
 * per save) or new identity files, through lib/identity/store.ts, as fast as it can until it is
 * killed. Before each write it prints "w N", after it "d N", so the parent can aim its SIGKILL
 * at the middle of a write.
 *
 *   deno run -A tests/robust/_writer.ts known DIR
 *   deno run -A tests/robust/_writer.ts identity DIR
 */
import { join } from "node:path";
import { KnownPeersFile, loadOrCreateIdentity } from "../../lib/identity/store.ts";

/** The fingerprint pinned for key i: i in hex, as the fingerprint shape wants it. */
export function fingerprintOf(i: number): string {
  return i.toString(16).padStart(16, "0").match(/.{4}/g)!.join("-");
}

export const KNOWN = "known_peers.json";
export const identityFile = (i: number) => `identity-${i}.json`;

if (import.meta.main) {
  const [mode, dir] = Deno.args;
  const say = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s + "\n"));
  if (mode === "known") {
    const f = await KnownPeersFile.open(join(dir!, KNOWN));
    for (let i = 0;; i++) {
      say(`w ${i}`);
      await f.pin(`peer-${i}`, fingerprintOf(i));
      say(`d ${i}`);
    }
  } else {
    for (let i = 0;; i++) {
      say(`w ${i}`);
      await loadOrCreateIdentity(join(dir!, identityFile(i)));
      say(`d ${i}`);
    }
  }
}
