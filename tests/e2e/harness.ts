/**
 * Test harness: spawns the real CLI (`deno run main.ts ...`) and talks to it over real
 * sockets and pipes. Every process started is killed by `cleanup()`, even after a failure.
 */
import assert from "node:assert/strict";

export const ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The command line of a deno.json task, with `deno` replaced by this Deno. */
export function taskCommand(name: string): string[] {
  const cfg = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const line = cfg.tasks?.[name];
  if (typeof line !== "string") throw new Error(`Cannot find task "${name}" in deno.json`);
  const [cmd, ...rest] = line.split(/\s+/);
  if (cmd !== "deno") throw new Error(`Task "${name}" does not start with deno: ${line}`);
  return [Deno.execPath(), ...rest];
}

/**
 * `deno run` with the permissions and runtime flags `deno task compile` builds the binary with:
 * how the shipped binary runs, where `deno compile` itself cannot (it downloads its runtime).
 */
export function binaryCommand(): string[] {
  const flags = taskCommand("compile").slice(2).filter((f) =>
    f.startsWith("--allow") || f.startsWith("--unstable") || f.startsWith("--v8-flags")
  );
  return [Deno.execPath(), "run", ...flags, MAIN];
}

/** A UDP port that was free a moment ago (the kernel picks it). */
export function freePort(): number {
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

export interface Proc {
  /** The XDG_CONFIG_HOME it runs with (its identity and known peers are below, in p2pchat/). */
  configHome: string;
  child: Deno.ChildProcess;
  lines: string[];
  stderr: string[];
  events: Record<string, unknown>[];
  write(line: string): Promise<void>;
  closeStdin(): Promise<void>;
  waitFor(
    pred: (e: Record<string, unknown>) => boolean,
    ms?: number,
    what?: string,
  ): Promise<Record<string, unknown>>;
  waitStderr(re: RegExp, ms?: number): Promise<void>;
  status: Promise<Deno.CommandStatus>;
  kill(sig?: Deno.Signal): void;
}

export class Harness {
  procs: Proc[] = [];
  private dirs: string[] = [];

  /** A fresh config directory, so each process has its own identity and known peers. */
  configDir(): string {
    const d = Deno.makeTempDirSync({ prefix: "p2pchat-test-" });
    this.dirs.push(d);
    return d;
  }

  /** Runs `p2pchat ARGS...`; `wrap` prefixes the command (e.g. `ip netns exec NS`). */
  spawn(
    args: string[],
    opts: {
      wrap?: string[];
      env?: Record<string, string>;
      task?: boolean;
      /** Run as the compiled binary would (binaryCommand), for ARGS. */
      binary?: boolean;
    } = {},
  ): Proc {
    const deno = Deno.execPath();
    // Outside a lab namespace there is no gateway of ours: a peer must never send port-mapping
    // requests to the real network's.
    if (
      (args[0] === "join" || args[0] === "nat") && !opts.wrap && !args.includes("--no-portmap")
    ) {
      args = [args[0], "--no-portmap", ...args.slice(1)];
    }
    // `task`: run ARGS[0]'s task command line from deno.json (as `deno task` would, with only
    // the permissions it grants) without `deno task` in between, so kill() reaches the peer.
    const run = opts.task
      ? [...taskCommand(args[0]!), ...args.slice(1)]
      : opts.binary
      ? [...binaryCommand(), ...args]
      : [deno, "run", "-A", MAIN, ...args];
    const argv = [...(opts.wrap ?? []), ...run];
    const config = this.configDir();
    const child = new Deno.Command(argv[0]!, {
      cwd: ROOT,
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", XDG_CONFIG_HOME: config, ...opts.env },
    }).spawn();
    const lines: string[] = [];
    const stderr: string[] = [];
    const events: Record<string, unknown>[] = [];
    const waiters = new Set<() => void>();
    const wake = () => waiters.forEach((w) => w());
    const pump = async (s: ReadableStream<Uint8Array>, into: string[], json: boolean) => {
      let buf = "";
      const dec = new TextDecoder();
      try {
        for await (const chunk of s) {
          buf += dec.decode(chunk, { stream: true });
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            into.push(line);
            if (json) {
              try {
                events.push(JSON.parse(line));
              } catch {
                events.push({ type: "__not_json__", line });
              }
            }
            wake();
          }
        }
      } catch { /* process killed */ }
      wake();
    };
    const outDone = pump(child.stdout, lines, true);
    const errDone = pump(child.stderr, stderr, false);
    const writer = child.stdin.getWriter();
    const status = child.status.then(async (s) => {
      await Promise.all([outDone, errDone]);
      return s;
    });
    let exited = false;
    status.then(() => {
      exited = true;
      wake();
    });
    const waitUntil = async (check: () => boolean, ms: number, what: string) => {
      const deadline = Date.now() + ms;
      while (!check()) {
        if (Date.now() > deadline) {
          throw new Error(
            `timed out after ${ms} ms waiting for ${what}\nstdout:\n${lines.join("\n")}\nstderr:\n${
              stderr.join("\n")
            }`,
          );
        }
        if (exited && !check()) {
          throw new Error(
            `process exited while waiting for ${what}\nstdout:\n${lines.join("\n")}\nstderr:\n${
              stderr.join("\n")
            }`,
          );
        }
        await new Promise<void>((r) => {
          const t = setTimeout(done, 100);
          function done() {
            clearTimeout(t);
            waiters.delete(done);
            r();
          }
          waiters.add(done);
        });
      }
    };
    const p: Proc = {
      configHome: config,
      child,
      lines,
      stderr,
      events,
      status,
      async write(line) {
        await writer.write(new TextEncoder().encode(line + "\n"));
      },
      async closeStdin() {
        try {
          await writer.close();
        } catch { /* already closed */ }
      },
      async waitFor(pred, ms = 15000, what = "event") {
        let found: Record<string, unknown> | undefined;
        await waitUntil(() => (found = events.find(pred)) !== undefined, ms, what);
        return found!;
      },
      async waitStderr(re, ms = 15000) {
        await waitUntil(() => stderr.some((l) => re.test(l)), ms, `stderr ${re}`);
      },
      kill(sig = "SIGKILL") {
        try {
          child.kill(sig);
        } catch { /* gone */ }
      },
    };
    this.procs.push(p);
    return p;
  }

  server(port: number, extra: string[] = [], wrap?: string[]): Proc {
    return this.spawn([
      "serve",
      "--host",
      wrap ? "0.0.0.0" : "127.0.0.1",
      "--port",
      String(port),
      ...extra,
    ], { wrap });
  }

  peer(name: string, server: string, extra: string[] = [], wrap?: string[]): Proc {
    return this.spawn(["join", "--json", "--name", name, "--server", server, ...extra], { wrap });
  }

  async cleanup(): Promise<void> {
    for (const p of this.procs) p.kill("SIGKILL");
    await Promise.allSettled(this.procs.map((p) => p.status));
    for (const p of this.procs) {
      try {
        await p.closeStdin();
      } catch { /* ignore */ }
    }
    for (const d of this.dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
}

/** Runs `fn` with a fresh harness and always cleans up. */
export async function withHarness(fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = new Harness();
  try {
    await fn(h);
  } finally {
    await h.cleanup();
  }
}

export const isType =
  (t: string, extra: Record<string, unknown> = {}) => (e: Record<string, unknown>) =>
    e.type === t && Object.entries(extra).every(([k, v]) => e[k] === v);

export function count(p: Proc, pred: (e: Record<string, unknown>) => boolean): number {
  return p.events.filter(pred).length;
}

export function assertJsonOnly(p: Proc): void {
  assert.deepEqual(
    p.events.filter((e) => e.type === "__not_json__"),
    [],
    "stdout carries only JSON",
  );
}
