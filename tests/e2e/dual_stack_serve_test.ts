/**
 * `serve --host ::` with the serve task's own permissions: one dual-stack socket, on batched
 * system calls where the task's FFI permission allows (Linux), carries a peer that came over
 * IPv4 and one that came over IPv6.
 */
import assert from "node:assert/strict";
import { freePort, isType, withHarness } from "./harness.ts";
import { hasIpv6Loopback } from "../_helpers/ipv6.ts";

Deno.test({
  name: "serve --host ::: IPv4 and IPv6 peers on one batched dual-stack socket",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    await withHarness(async (h) => {
      const port = freePort();
      const server = h.spawn(["serve", "--host", "::", "--port", String(port), "--no-tcp"], {
        task: true,
      });
      const linux = Deno.build.os === "linux" && ["x86_64", "aarch64"].includes(Deno.build.arch);
      await server.waitStderr(linux ? /listening on .*batched system calls/ : /listening on/);
      const join = (name: string, addr: string) =>
        h.spawn(["join", "--json", "--name", name, "--server", addr, "--no-websocket"], {
          task: true,
        });
      const alice = join("alice", `127.0.0.1:${port}`);
      const ra = await alice.waitFor(isType("ready", { name: "alice" }));
      assert.match(String(ra.public), /^127\.0\.0\.1:/, "an IPv4 peer is seen as IPv4");
      const bob = join("bob", `[::1]:${port}`);
      const rb = await bob.waitFor(isType("ready", { name: "bob" }));
      assert.match(String(rb.public), /^\[::1\]:/);
      await bob.waitFor(isType("peer", { name: "alice" }));
      await bob.write("hi alice, from IPv6");
      await alice.waitFor(isType("message", { from: "bob", text: "hi alice, from IPv6" }));
      await alice.write("hi bob, from IPv4");
      await bob.waitFor(isType("message", { from: "alice", text: "hi bob, from IPv4" }));
    });
  },
});
