/**
 * What the lab test files share: skipping with a loud reason (or failing, when CI demands the
 * tools), and running a command in a node. The interop tests use the skipping part too.
 */
import type { Lab } from "./lab.ts";
import { onPath } from "./_sh.ts";

/** The p2pchat server's port in lab tests. */
export const PORT = 8848;

/**
 * CI sets this to "1" when it runs as root, after installing the Debian packages: a test that
 * cannot run for want of a program then fails instead of skipping, so a failed install cannot
 * pass for green. A machine that lacks something else (not Linux, not root, a kernel feature)
 * still skips.
 */
export const REQUIRE_TOOLS_ENV = "P2PCHAT_REQUIRE_LAB";

/**
 * Why tests cannot run here. `tool`: a program is missing, which an install fixes; otherwise
 * the machine itself lacks something and skipping is fair.
 */
export interface Skip {
  reason: string;
  tool: boolean;
}

/** Whether a missing program must fail tests rather than skip them (see {@link REQUIRE_TOOLS_ENV}). */
export function toolsRequired(): boolean {
  return Deno.env.get(REQUIRE_TOOLS_ENV) === "1";
}

/** A {@link Skip} naming those of `tools` (program -> Debian package) that are not on PATH. */
export function missingTool(tools: Record<string, string>): Skip | undefined {
  const gone = Object.entries(tools).filter(([cmd]) => !onPath(cmd));
  if (gone.length === 0) return undefined;
  const what = gone.map(([cmd, pkg]) => `${cmd} (Debian package ${pkg})`).join(", ");
  return { reason: `needs ${what} on PATH`, tool: true };
}

/**
 * A `Deno.test` maker for tests that may not be able to run here. With `skip` unset it registers
 * them as they are. Otherwise it says so once, loudly, on stderr (`what` names the group), and
 * reports each test ignored with the reason in its name — except for a missing program while
 * {@link toolsRequired}: then each test is reported failed, saying what is missing.
 *
 * @example
 * const test = testsUnless(missingTool({ tshark: "tshark" }), "capture tests");
 * test({ name: "capture: ...", fn: async () => {} });
 */
export function testsUnless(
  skip: Skip | undefined,
  what: string,
): (def: Deno.TestDefinition) => void {
  if (!skip) return (def) => Deno.test(def);
  const fail = skip.tool && toolsRequired();
  console.warn(`\n*** ${what} ${fail ? "FAIL" : "SKIPPED"}: ${skip.reason} ***\n`);
  if (!fail) {
    return (def) =>
      Deno.test({ ...def, name: `${def.name} (SKIPPED: ${skip.reason})`, ignore: true });
  }
  return (def) =>
    Deno.test({
      ...def,
      name: `${def.name} (MISSING: ${skip.reason})`,
      fn: () => {
        throw new Error(
          `Cannot run "${def.name}": ${skip.reason}, and ${REQUIRE_TOOLS_ENV}=1 makes a ` +
            `missing program a failure, not a skip`,
        );
      },
    });
}

/**
 * A `Deno.test` maker for lab tests (named `natlab: ...`), skipped or failed as
 * {@link testsUnless} says. They run without the op/resource sanitizers (lab processes outlive
 * single awaits by design) unless `sanitize` is set.
 */
export function labTests(skip: Skip | undefined, what: string, opts: { sanitize?: boolean } = {}) {
  const test = testsUnless(skip, what);
  const sanitize = opts.sanitize ?? false;
  return (name: string, fn: () => Promise<void>) =>
    test({
      name: `natlab: ${name}`,
      sanitizeOps: sanitize,
      sanitizeResources: sanitize,
      fn,
    });
}

/** Prefix that runs a command inside a lab node's namespace. */
export const wrap = (lab: Lab, node: string) => ["ip", "netns", "exec", lab.nsOf(node)];

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
