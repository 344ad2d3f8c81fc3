/** What the lab test files share: skipping with a loud reason, and running a command in a node. */
import type { Lab } from "./lab.ts";

/** The p2pchat server's port in lab tests. */
export const PORT = 8848;

/** Prefix that runs a command inside a lab node's namespace. */
export const wrap = (lab: Lab, node: string) => ["ip", "netns", "exec", lab.nsOf(node)];

/**
 * A `Deno.test` maker for lab tests: when `reason` is set they are reported ignored with it (and
 * `what` is announced skipped loudly once), otherwise they run without the op/resource sanitizers
 * (lab processes outlive single awaits by design).
 */
export function labTests(reason: string | undefined, what: string) {
  if (reason) console.warn(`\n*** ${what} SKIPPED: ${reason} ***\n`);
  return (name: string, fn: () => Promise<void>) =>
    Deno.test({
      name: reason ? `natlab: ${name} (SKIPPED: ${reason})` : `natlab: ${name}`,
      ignore: reason !== undefined,
      sanitizeOps: false,
      sanitizeResources: false,
      fn,
    });
}

/** The command line of a small Deno agent script run inside a namespace (network access only). */
export function agentCommand(script: string, ...args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    "--no-config",
    "--allow-net",
    "--unstable-net",
    script,
    ...args,
  ];
}
