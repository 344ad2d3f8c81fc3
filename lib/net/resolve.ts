/** Host name resolution for the server address the user typed. */
import { lookup } from "node:dns/promises";
import { type Addr, ipv4Bytes } from "../wire/addr.ts";

/** Resolves to an IPv4 address; throws an Error with a user-facing message on failure. */
export async function resolveAddr(a: Addr): Promise<Addr> {
  if (ipv4Bytes(a.host)) return a;
  // Peers bind IPv4 sockets; say so now rather than time out talking to an IPv6 server.
  if (a.host.includes(":")) {
    throw new Error(`Cannot use server ${a.host}: p2pchat speaks IPv4 only for now`);
  }
  try {
    const r = await lookup(a.host, { family: 4 });
    return { host: r.address, port: a.port };
  } catch {
    throw new Error(`Cannot resolve server host "${a.host}"`);
  }
}
