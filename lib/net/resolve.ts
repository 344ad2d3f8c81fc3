/** Host name resolution for the server address the user typed. */
import { lookup } from "node:dns/promises";
import { type Addr, ipv4Bytes } from "../wire/addr.ts";

/** Resolves to an IPv4 address; throws an Error with a user-facing message on failure. */
export async function resolveAddr(a: Addr): Promise<Addr> {
  if (ipv4Bytes(a.host) || a.host.includes(":")) return a;
  try {
    const r = await lookup(a.host, { family: 4 });
    return { host: r.address, port: a.port };
  } catch {
    throw new Error(`Cannot resolve server host "${a.host}"`);
  }
}
