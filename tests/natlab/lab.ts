/**
 * NAT lab: builds a small internet out of Linux network namespaces, with nftables NAT routers
 * of every classic behaviour, a server with two public addresses, public hosts and double NAT.
 * Needs root, `ip` (iproute2), `nft` and `sysctl`. See README.md for topology and recipes.
 *
 * @example
 * const lab = await up({ sites: [{ name: "a", nat: "symmetric" }] });
 * try {
 *   const r = await lab.exec("a1", ["ping", "-c1", lab.server.addrs[0]]);
 * } finally {
 *   await lab.down();
 * }
 *
 * CLI: deno run -A tests/natlab/lab.ts up|down|list|exec|selftest (see `help`).
 */
import { firewall6Ruleset, lossRuleset, routerRuleset } from "./_nft.ts";
import { NAT_TYPES, nsName, parseNsName, planLab, PREFIX_RE } from "./_plan.ts";
import type { LabSpec, NsPlan, Plan } from "./_plan.ts";
import { must, onPath, run } from "./_sh.ts";
import type { RunResult } from "./_sh.ts";

export { NAT_TYPES } from "./_plan.ts";
export type { LabSpec, NatType, SiteSpec } from "./_plan.ts";

/** Result of {@link Lab.exec}. */
export type ExecResult = RunResult;

/** Options for {@link Lab.spawn}; stdio defaults to "piped". */
export interface SpawnOptions {
  stdin?: "piped" | "null" | "inherit";
  stdout?: "piped" | "null" | "inherit";
  stderr?: "piped" | "null" | "inherit";
  env?: Record<string, string>;
  cwd?: string;
}

/** A running lab. Node names: host names ("a1", "pub1"), "server", "internet", "router:<site>". */
export interface Lab {
  /** Namespace name prefix of this run, e.g. "nl4242abc"; every namespace is `<prefix>-...`. */
  prefix: string;
  /** `addrs6`: the server's IPv6 addresses, when the lab has IPv6. */
  server: { ns: string; addrs: [string, string]; addrs6?: [string, string] };
  /** `addr` is "" for an IPv6-only host; `addr6` when the host has IPv6. */
  hosts: Record<string, { ns: string; addr: string; addr6?: string; site?: string }>;
  routers: Record<string, { ns: string; publicAddr: string; publicAddr6?: string }>;
  /** Namespace of any node name. Throws for unknown nodes. */
  nsOf(node: string): string;
  /** Runs `cmd` inside a node's namespace and collects its output. */
  exec(node: string, cmd: string[], stdin?: string): Promise<ExecResult>;
  /** Starts `ip netns exec NS cmd...`; the lab kills it on {@link Lab.down} if still running. */
  spawn(node: string, cmd: string[], opts?: SpawnOptions): Deno.ChildProcess;
  /** Changes random loss (percent, each direction) on a site router's upstream link. */
  setLoss(site: string, pct: number): Promise<void>;
  /** Kills spawned processes and deletes every namespace of this lab. Idempotent. */
  down(): Promise<void>;
}

/** True when running as uid 0. */
export function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** The programs the lab runs, with the Debian package of each. */
export const LAB_TOOLS: Readonly<Record<string, string>> = {
  ip: "iproute2",
  nft: "nftables",
  sysctl: "procps",
};

/** Tools the lab needs that are not on PATH (empty when all are there). */
export function missingTools(): string[] {
  return Object.keys(LAB_TOOLS).filter((t) => !onPath(t));
}

/**
 * Why the lab cannot run here, or undefined when it can. `tool` is true when the reason is a
 * missing program (installable), false when it is the machine itself (not Linux, not root).
 */
export function unsupported(): { reason: string; tool: boolean } | undefined {
  if (Deno.build.os !== "linux") {
    return { reason: `NAT lab needs Linux, this is ${Deno.build.os}`, tool: false };
  }
  if (!isRoot()) {
    return { reason: "NAT lab needs root (uid 0) to create network namespaces", tool: false };
  }
  const missing = missingTools();
  if (missing.length === 0) return undefined;
  const what = missing.map((t) => `${t} (Debian package ${LAB_TOOLS[t]})`).join(", ");
  return { reason: `NAT lab needs ${what} on PATH`, tool: true };
}

/** Why the lab cannot run here, or undefined when it can (see {@link unsupported}). */
export function unsupportedReason(): string | undefined {
  return unsupported()?.reason;
}

/** A fresh namespace prefix `nl<pid><3 letters>`; detached labs use pid 0 (never stale). */
export function newPrefix(detached = false): string {
  const letters = Array.from(
    crypto.getRandomValues(new Uint8Array(3)),
    (b) => String.fromCharCode(97 + (b % 26)),
  ).join("");
  return `nl${detached ? 0 : Deno.pid}${letters}`;
}

/** Lab namespaces on this machine, grouped by prefix. */
export async function listLabs(): Promise<Map<string, string[]>> {
  const out = await must("list network namespaces", "ip", ["netns", "list"]);
  const labs = new Map<string, string[]>();
  for (const line of out.split("\n")) {
    const ns = line.trim().split(/\s+/)[0];
    if (!ns) continue;
    const p = parseNsName(ns);
    if (!p) continue;
    labs.set(p.prefix, [...(labs.get(p.prefix) ?? []), ns]);
  }
  return labs;
}

async function deleteNamespaces(namespaces: string[]): Promise<void> {
  if (namespaces.length === 0) return;
  // -force: keep going past namespaces that are already gone.
  await run("ip", ["-force", "-batch", "-"], namespaces.map((ns) => `netns del ${ns}\n`).join(""));
}

/** Deletes every namespace of lab `prefix`; returns the names it found. */
export async function downPrefix(prefix: string): Promise<string[]> {
  if (!PREFIX_RE.test(prefix)) throw new Error(`Cannot remove lab "${prefix}": not a lab prefix`);
  const found = (await listLabs()).get(prefix) ?? [];
  await deleteNamespaces(found);
  return found;
}

function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes namespaces left by crashed runs: labs whose creating process is gone. Detached labs
 * (pid 0) and labs of live processes are kept unless `all` is set. Returns the prefixes removed.
 */
export async function cleanupStale(opts: { all?: boolean } = {}): Promise<string[]> {
  const removed: string[] = [];
  for (const [prefix, namespaces] of await listLabs()) {
    const pid = Number(PREFIX_RE.exec(prefix)![1]);
    const mine = [...live].some((l) => l.prefix === prefix);
    if (!opts.all && (pid === 0 || pidAlive(pid))) continue;
    if (mine && !opts.all) continue;
    await deleteNamespaces(namespaces);
    removed.push(prefix);
  }
  return removed;
}

let netemCache: Promise<boolean> | undefined;

/** Whether `tc qdisc ... netem` works in this kernel (probed once in a throwaway namespace). */
export function netemSupported(): Promise<boolean> {
  netemCache ??= (async () => {
    if (!onPath("tc") || unsupportedReason() !== undefined) return false;
    const ns = nsName(newPrefix(), "netem");
    const add = await run("ip", ["netns", "add", ns]);
    if (add.code !== 0) return false;
    try {
      const r = await run("tc", [
        "-n",
        ns,
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "netem",
        "delay",
        "1ms",
      ]);
      return r.code === 0;
    } finally {
      await deleteNamespaces([ns]);
    }
  })();
  return netemCache;
}

// ---- live labs and emergency cleanup ------------------------------------------------------

interface LiveLab {
  prefix: string;
  namespaces: string[];
  children: Set<Deno.ChildProcess>;
}

const live = new Set<LiveLab>();
let hooked = false;

function cleanupSync(): void {
  for (const l of live) {
    for (const c of l.children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const ns of l.namespaces) {
      try {
        new Deno.Command("ip", { args: ["netns", "del", ns], stdout: "null", stderr: "null" })
          .outputSync();
      } catch {
        // best effort while exiting
      }
    }
  }
  live.clear();
}

function onSigint() {
  cleanupSync();
  Deno.exit(130);
}
function onSigterm() {
  cleanupSync();
  Deno.exit(143);
}

function track(l: LiveLab): void {
  live.add(l);
  if (hooked) return;
  hooked = true;
  globalThis.addEventListener("unload", cleanupSync);
  try {
    Deno.addSignalListener("SIGINT", onSigint);
    Deno.addSignalListener("SIGTERM", onSigterm);
  } catch {
    // signals unsupported here; unload still cleans up on normal exit
  }
}

function untrack(l: LiveLab): void {
  live.delete(l);
  if (live.size > 0 || !hooked) return;
  hooked = false;
  globalThis.removeEventListener("unload", cleanupSync);
  try {
    Deno.removeSignalListener("SIGINT", onSigint);
    Deno.removeSignalListener("SIGTERM", onSigterm);
  } catch {
    // never added
  }
}

// ---- building -----------------------------------------------------------------------------

function ipBatch(ns: string, what: string, lines: string[]): Promise<unknown> {
  if (lines.length === 0) return Promise.resolve();
  return must(what, "ip", ["-n", ns, "-batch", "-"], lines.join("\n") + "\n");
}

/**
 * `ip addr add` for a CIDR address, maybe followed by options; `nodad` on IPv6 addresses, so
 * they are usable at once, not after duplicate address detection.
 */
function addrLine(a: string, dev: string): string {
  const [cidr, ...opts] = a.split(" ");
  return [`addr add ${cidr} dev ${dev}`, ...opts, ...(a.includes(":") ? ["nodad"] : [])].join(" ");
}

function linkLines(p: NsPlan): string[] {
  const lines: string[] = [];
  for (const b of p.bridges) {
    lines.push(`link add ${b.name} type bridge`);
    for (const a of b.addrs) lines.push(addrLine(a, b.name));
    lines.push(`link set ${b.name} up`);
  }
  for (const l of p.links) {
    lines.push(`link add ${l.parentIf} type veth peer name ${l.childIf} netns ${l.childNs}`);
    lines.push(`link set ${l.parentIf} master ${l.bridge}`);
    lines.push(`link set ${l.parentIf} up`);
  }
  return lines;
}

function addressLines(p: NsPlan): string[] {
  const lines = ["link set lo up"];
  if (p.uplink) {
    const u = p.uplink;
    for (const a of [...u.addrs, ...(u.addrs6 ?? [])]) lines.push(addrLine(a, u.ifname));
    lines.push(`link set ${u.ifname} up`);
    if (u.gateway) lines.push(`route add default via ${u.gateway}`);
    if (u.gateway6) lines.push(`route add ::/0 via ${u.gateway6}`);
  }
  for (const r of p.routes) lines.push(`route add ${r.dst} via ${r.via}`);
  return lines;
}

async function configureRouter(p: NsPlan): Promise<void> {
  const r = p.router!;
  const where = `router of site "${r.site}"`;
  await must(`load nftables NAT rules into ${where}`, "ip", [
    "netns",
    "exec",
    p.ns,
    "nft",
    "-f",
    "-",
  ], routerRuleset(r));
  if (r.lan6) {
    await must(`load the IPv6 firewall into ${where}`, "ip", [
      "netns",
      "exec",
      p.ns,
      "nft",
      "-f",
      "-",
    ], firewall6Ruleset());
  }
  if (r.lossPct > 0) {
    await must(
      `set loss on ${where}`,
      "ip",
      ["netns", "exec", p.ns, "nft", "-f", "-"],
      lossRuleset(r.lossPct),
    );
  }
  if (r.delayMs > 0) {
    for (const [ns, dev] of [[p.ns, "wan"], [r.upstreamNs, r.upstreamIf]] as const) {
      await must(`add ${r.delayMs} ms delay to ${where}`, "tc", [
        "-n",
        ns,
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "netem",
        "delay",
        `${r.delayMs}ms`,
      ]);
    }
  }
}

async function build(plan: Plan): Promise<void> {
  await must(
    "create network namespaces",
    "ip",
    ["-batch", "-"],
    plan.namespaces.map((p) => `netns add ${p.ns}\n`).join(""),
  );
  await Promise.all(plan.namespaces.map((p) =>
    must(
      `set sysctls in ${p.ns}`,
      "ip",
      ["netns", "exec", p.ns, "sysctl", "-q", "-w", ...p.sysctls.map(([k, v]) => `${k}=${v}`)],
    )
  ));
  await Promise.all(
    plan.namespaces.map((p) => ipBatch(p.ns, `create links in ${p.ns}`, linkLines(p))),
  );
  await Promise.all(
    plan.namespaces.map((p) => ipBatch(p.ns, `configure addresses in ${p.ns}`, addressLines(p))),
  );
  await Promise.all(plan.namespaces.filter((p) => p.router).map(configureRouter));
}

/**
 * Builds the lab described by `spec`. On any failure it deletes what it made, then throws.
 * `detached` labs get a pid-0 prefix and no exit hooks: they outlive this process.
 *
 * @example
 * const lab = await up({
 *   sites: [
 *     { name: "a", nat: "port-restricted", subnet: "192.168.1.0/24" },
 *     { name: "b", nat: "port-restricted", subnet: "192.168.1.0/24" }, // a1 and b1 share 192.168.1.10
 *     { name: "c", nat: "full-cone", behind: "a" }, // double NAT
 *   ],
 *   publicHosts: 1,
 * });
 */
export async function up(
  spec: LabSpec,
  opts: { detached?: boolean; prefix?: string } = {},
): Promise<Lab> {
  const reason = unsupportedReason();
  if (reason) throw new Error(`Cannot build NAT lab: ${reason}`);
  // A caller-chosen prefix lets a test find exactly its own namespaces among parallel labs.
  const prefix = opts.prefix ?? newPrefix(opts.detached ?? false);
  const plan = planLab(spec, prefix);
  const slow = plan.namespaces.find((p) => (p.router?.delayMs ?? 0) > 0);
  if (slow && !(await netemSupported())) {
    throw new Error(
      `Cannot add ${slow.router!.delayMs} ms delay to site "${slow.router!.site}": this kernel ` +
        `has no tc netem qdisc (CONFIG_NET_SCH_NETEM); leave delayMs unset or check netemSupported()`,
    );
  }
  const state: LiveLab = {
    prefix,
    namespaces: plan.namespaces.map((p) => p.ns),
    children: new Set(),
  };
  if (!opts.detached) track(state);
  try {
    await build(plan);
  } catch (e) {
    await deleteNamespaces(state.namespaces);
    untrack(state);
    throw e;
  }
  return makeLab(plan, state, opts.detached ?? false);
}

function makeLab(plan: Plan, state: LiveLab, detached: boolean): Lab {
  const nodes = new Map(plan.namespaces.map((p) => [p.node, p]));
  const nsOf = (node: string): string => {
    const p = nodes.get(node);
    if (!p) {
      throw new Error(
        `Cannot find lab node "${node}": known nodes are ${[...nodes.keys()].join(", ")}`,
      );
    }
    return p.ns;
  };
  let downed: Promise<void> | undefined;
  return {
    prefix: plan.prefix,
    server: plan.server,
    hosts: plan.hosts,
    routers: plan.routers,
    nsOf,
    exec: (node, cmd, stdin) => run("ip", ["netns", "exec", nsOf(node), ...cmd], stdin),
    spawn(node, cmd, opts = {}) {
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", nsOf(node), ...cmd],
        stdin: opts.stdin ?? "piped",
        stdout: opts.stdout ?? "piped",
        stderr: opts.stderr ?? "piped",
        env: opts.env,
        cwd: opts.cwd,
      }).spawn();
      state.children.add(child);
      child.status.then(() => state.children.delete(child), () => state.children.delete(child));
      return child;
    },
    async setLoss(site, pct) {
      const r = plan.routers[site];
      if (!r) throw new Error(`Cannot set loss on site "${site}": no such site`);
      if (!Number.isFinite(pct) || pct < 0 || pct > 100) {
        throw new Error(`Cannot set loss on site "${site}": ${pct} is not a percentage 0..100`);
      }
      await must(
        `set loss on site "${site}"`,
        "ip",
        ["netns", "exec", r.ns, "nft", "-f", "-"],
        lossRuleset(pct),
      );
    },
    down() {
      downed ??= (async () => {
        for (const c of [...state.children]) {
          try {
            c.kill("SIGKILL");
          } catch {
            // already exited
          }
          for (const pick of [() => c.stdout, () => c.stderr]) {
            try {
              // The getter itself throws for a stream that is not piped.
              const s = pick();
              if (!s.locked) await s.cancel();
            } catch {
              // not piped
            }
          }
          await c.status.catch(() => undefined);
        }
        // Anything else still running inside (started through exec) was started by this lab.
        for (const ns of state.namespaces) {
          const pids = await run("ip", ["netns", "pids", ns]);
          for (const pid of pids.stdout.split(/\s+/).filter(Boolean).map(Number)) {
            try {
              Deno.kill(pid, "SIGKILL");
            } catch {
              // gone meanwhile
            }
          }
        }
        await deleteNamespaces(state.namespaces);
        if (!detached) untrack(state);
      })();
      return downed;
    },
  };
}

// ---- CLI ----------------------------------------------------------------------------------

/** A user mistake on the command line: exit status 2. */
export class UsageError extends Error {}

/** The spec `up` builds without --spec: one EIM and one symmetric site plus a public host. */
export const DEFAULT_SPEC: LabSpec = {
  sites: [{ name: "a", nat: "port-restricted" }, { name: "b", nat: "symmetric" }],
  publicHosts: 1,
};

export const USAGE = `Usage: deno run -A tests/natlab/lab.ts <command>
  up [--spec FILE.json] [--detach]   build a lab (default: ${JSON.stringify(DEFAULT_SPEC)});
                                     without --detach it stays up until Ctrl-C
  down [PREFIX | --all]              delete lab PREFIX, all labs (--all), or stale labs
  list                               show lab namespaces by prefix
  exec [--prefix P] NODE CMD...      run CMD in NODE (a1, pub1, server, internet, router:a)
  selftest                           prove every NAT type's mapping and filtering
NAT types: ${NAT_TYPES.join(", ")}`;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

function summary(lab: Lab): string {
  return JSON.stringify(
    { prefix: lab.prefix, server: lab.server, routers: lab.routers, hosts: lab.hosts },
    null,
    2,
  );
}

async function waitForSignal(): Promise<void> {
  await new Promise<void>((resolve) => {
    // Signal listeners do not keep the process alive; a timer does.
    const keepAlive = setInterval(() => {}, 1 << 30);
    const done = () => {
      clearInterval(keepAlive);
      Deno.removeSignalListener("SIGINT", done);
      Deno.removeSignalListener("SIGTERM", done);
      resolve();
    };
    Deno.addSignalListener("SIGINT", done);
    Deno.addSignalListener("SIGTERM", done);
  });
}

/** Runs the CLI; returns the exit status. Throws {@link UsageError} for bad arguments. */
export async function runCli(args: string[], io: CliIo): Promise<number> {
  const [cmd, ...rest] = args;
  switch (cmd) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      io.out(USAGE);
      return cmd === undefined ? 2 : 0;
    case "up": {
      let spec = DEFAULT_SPEC;
      let detached = false;
      for (let i = 0; i < rest.length; i++) {
        const a = rest[i];
        if (a === "--detach") detached = true;
        else if (a === "--spec") {
          const file = rest[++i];
          if (!file) throw new UsageError("Cannot read spec: --spec needs a file name");
          try {
            spec = JSON.parse(await Deno.readTextFile(file)) as LabSpec;
          } catch (e) {
            throw new UsageError(`Cannot read spec "${file}": ${(e as Error).message}`);
          }
        } else throw new UsageError(`Cannot start lab: unknown option "${a}"`);
      }
      let lab: Lab;
      try {
        lab = await up(spec, { detached });
      } catch (e) {
        const msg = (e as Error).message;
        if (msg.startsWith("Cannot plan")) throw new UsageError(msg);
        throw e;
      }
      io.out(summary(lab));
      if (detached) {
        io.err(`lab ${lab.prefix} left running; remove it with: lab.ts down ${lab.prefix}`);
        return 0;
      }
      io.err(`lab ${lab.prefix} is up; press Ctrl-C to tear it down`);
      await waitForSignal();
      await lab.down();
      io.err(`lab ${lab.prefix} removed`);
      return 0;
    }
    case "down": {
      const [target] = rest;
      if (rest.length > 1) {
        throw new UsageError("Cannot remove labs: down takes at most one argument");
      }
      if (target === undefined || target === "--all") {
        const removed = await cleanupStale({ all: target === "--all" });
        io.out(removed.length ? `removed ${removed.join(" ")}` : "no labs to remove");
        return 0;
      }
      if (!PREFIX_RE.test(target)) {
        throw new UsageError(`Cannot remove lab "${target}": not a lab prefix`);
      }
      const found = await downPrefix(target);
      io.out(
        found.length
          ? `removed ${found.length} namespaces of ${target}`
          : `no namespaces of ${target}`,
      );
      return 0;
    }
    case "list": {
      const labs = await listLabs();
      if (labs.size === 0) io.out("no labs");
      for (const [prefix, namespaces] of labs) io.out(`${prefix}: ${namespaces.join(" ")}`);
      return 0;
    }
    case "exec": {
      let prefix: string | undefined;
      let i = 0;
      if (rest[0] === "--prefix") {
        prefix = rest[1];
        i = 2;
      }
      const node = rest[i];
      const command = rest.slice(i + 1);
      if (!node || command.length === 0) throw new UsageError("Cannot exec: need NODE and CMD");
      const labs = await listLabs();
      const candidates = [...labs.entries()].filter(([p, nss]) =>
        (prefix === undefined || p === prefix) && nss.includes(nsName(p, node))
      );
      if (candidates.length !== 1) {
        throw new UsageError(
          candidates.length === 0
            ? `Cannot exec in "${node}": no running lab has that node`
            : `Cannot exec in "${node}": several labs have it, pass --prefix (${
              candidates.map(([p]) => p).join(", ")
            })`,
        );
      }
      const ns = nsName(candidates[0]![0], node);
      const st = await new Deno.Command("ip", {
        args: ["netns", "exec", ns, ...command],
        stdin: "inherit",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn().status;
      return st.code;
    }
    case "selftest": {
      const { selftest, formatChecks } = await import("./selftest.ts");
      const result = await selftest({ log: io.err });
      for (const line of formatChecks(result.checks)) io.out(line);
      const bad = result.checks.filter((c) => !c.ok).length;
      io.out(
        `${result.checks.length - bad}/${result.checks.length} checks passed in ${result.ms} ms`,
      );
      return bad === 0 ? 0 : 1;
    }
    default:
      throw new UsageError(`Cannot run "${cmd}": unknown command (try help)`);
  }
}

if (import.meta.main) {
  // No top-level await: selftest.ts imports this module, which must finish evaluating first.
  const io: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l) };
  runCli(Deno.args, io).then(
    (code) => Deno.exit(code),
    (e) => {
      io.err((e as Error).message);
      Deno.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
