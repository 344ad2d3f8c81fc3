/**
 * The README's commands: the `serve` and `join` tasks' command lines from deno.json, with exactly
 * the permissions they grant (the other tests run with -A), on fresh config directories.
 */
import assert from "node:assert/strict";
import { freePort, isType, withHarness } from "./harness.ts";

Deno.test("tasks: deno task serve and deno task join work with their own permissions", async () => {
  await withHarness(async (h) => {
    const port = freePort();
    const server = h.spawn(["serve", "--host", "127.0.0.1", "--port", String(port)], {
      task: true,
    });
    await server.waitStderr(/listening on/);
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
