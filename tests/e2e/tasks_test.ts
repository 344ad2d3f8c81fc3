/**
 * The README's commands: the `serve` and `join` tasks' command lines from deno.json, with exactly
 * the permissions they grant (the other tests run with -A), on fresh config directories.
 */
import assert from "node:assert/strict";
import { freePort, isType, taskCommand, withHarness } from "./harness.ts";

Deno.test("tasks: deno task serve and deno task join work with their own permissions", async () => {
  await withHarness(async (h) => {
    const port = freePort();
    const server = h.spawn(["serve", "--host", "127.0.0.1", "--port", String(port)], {
      task: true,
    });
    // The task grants FFI, so on Linux the server batches its system calls (lib/net/mmsg.ts).
    const linux = Deno.build.os === "linux" && ["x86_64", "aarch64"].includes(Deno.build.arch);
    await server.waitStderr(linux ? /listening on .*batched system calls/ : /listening on/);
    const addr = `127.0.0.1:${port}`;
    const join = (name: string) =>
      h.spawn(["join", "--json", "--name", name, "--server", addr], { task: true });
    const alice = join("alice");
    await alice.waitFor(isType("ready", { name: "alice" }));
    const bob = join("bob");
    await bob.waitFor((e) => e.type === "path" && e.peer === "alice");
    await bob.write("hi alice");
    await alice.waitFor(isType("message", { from: "bob", text: "hi alice" }));
    assert.equal(alice.stderr.some((l) => /Requires .* access/.test(l)), false);
  });
});

Deno.test("tasks: the compiled binary gets the join and serve tasks' permissions (and the release build's)", () => {
  // `deno compile` cannot run here (it downloads its runtime); check its flags instead.
  const flags = (line: string) => new Set(line.split(/\s+/).filter((w) => w.startsWith("--allow")));
  const join = new Set([
    ...flags(taskCommand("join").join(" ")),
    ...flags(taskCommand("serve").join(" ")),
  ]);
  const compile = flags(taskCommand("compile").join(" "));
  const release = Deno.readTextFileSync(
    new URL("../../.github/workflows/release.yml", import.meta.url),
  )
    .split("\n").find((l) => l.trim().startsWith("- run: deno compile"))!;
  for (const f of join) {
    assert.ok(compile.has(f), `deno task compile lacks ${f}`);
    assert.ok(flags(release).has(f), `the release build lacks ${f}`);
  }
});
