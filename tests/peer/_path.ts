/** What the path machine tests share: a machine towards bob, and filters of its actions. */
import { DEFAULT_PATH_CONFIG, type PathAction, PathMachine } from "../../lib/peer/path.ts";
import type { Addr } from "../../lib/wire/addr.ts";

export const cfg = { ...DEFAULT_PATH_CONFIG, keepaliveMs: 1000, retryDirectMs: 10_000 };
export const lan: Addr = { host: "192.168.1.20", port: 5000 };
export const pub: Addr = { host: "203.0.113.9", port: 41000 };

/** Bob, the remote member: at `pub`, announcing `locals`. */
export function bob(locals: Addr[] = [lan]) {
  return { id: "b".repeat(16), name: "bob", public: pub, locals, key: new Uint8Array(32) };
}

/** A path machine towards `remote`; its nonces count up from 1. */
export function machine(remote = bob()): PathMachine {
  let n = 0;
  return new PathMachine(remote, cfg, () => (++n).toString(16).padStart(16, "0"));
}

export const hellos = (a: PathAction[]) =>
  a.filter((x) => x.type === "hello") as Extract<PathAction, { type: "hello" }>[];
export const paths = (a: PathAction[]) => a.filter((x) => x.type === "path");
