/**
 * Which port-mapping protocol the gateway speaks, found the only sure way: a mapping of a
 * throwaway port for 60 s, deleted at once (what `p2pchat nat` reports).
 */
import { type Mapping, PortMapper } from "./mod.ts";

/** Maps a random dynamic port for 60 s and deletes the mapping; null when nothing answered. */
export async function probePortmap(): Promise<Mapping | null> {
  // A random dynamic port: nothing listens on it, the mapping only proves itself.
  const port = 49152 + (crypto.getRandomValues(new Uint16Array(1))[0]! % 16384);
  const mapper = new PortMapper({ internalPort: port, leaseSec: 60 });
  const m = await mapper.start();
  await mapper.stop();
  return m;
}
