/** Running host tools (ip, nft, sysctl, tc) for the NAT lab. */

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args...`, feeding `stdin` if given, and collects its output. Never throws on exit codes. */
export async function run(cmd: string, args: string[], stdin?: string): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    } catch {
      // The tool exited early; its status and stderr tell why.
    }
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Like {@link run} but throws `Cannot <action>: ...` unless the tool exits 0. */
export async function must(
  action: string,
  cmd: string,
  args: string[],
  stdin?: string,
): Promise<string> {
  const r = await run(cmd, args, stdin);
  if (r.code !== 0) {
    const why = (r.stderr.trim() || r.stdout.trim() || "no output").split("\n").slice(0, 6)
      .join(" | ");
    throw new Error(
      `Cannot ${action}: ${cmd} ${args.slice(0, 6).join(" ")} exited ${r.code}: ${why}`,
    );
  }
  return r.stdout;
}

/** True when `cmd` is found on PATH. */
export function onPath(cmd: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const st = Deno.statSync(`${dir}/${cmd}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
