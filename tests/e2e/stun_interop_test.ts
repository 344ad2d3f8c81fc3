/** Interop: coturn's turnutils_stunclient (Debian package `coturn`) against `p2pchat serve`. */
import assert from "node:assert/strict";
import { freePort, withHarness } from "./harness.ts";
import { missingTool, testsUnless } from "../natlab/_labtest.ts";

const test = testsUnless(missingTool({ turnutils_stunclient: "coturn" }), "STUN interop test");

test({
  name: "interop: turnutils_stunclient gets the right mapped address from p2pchat serve",
  fn: async () => {
    await withHarness(async (h) => {
      const port = freePort();
      const server = h.server(port);
      await server.waitStderr(/listening on/);
      const out = await new Deno.Command("turnutils_stunclient", {
        args: ["-p", String(port), "-L", "127.0.0.1", "127.0.0.1"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, text);
      // coturn prints e.g. "UDP reflexive addr: 127.0.0.1:40001".
      const m = /UDP reflexive addr: ([\d.]+):(\d+)/.exec(text);
      assert.ok(m, `no reflexive address in:\n${text}`);
      assert.equal(m[1], "127.0.0.1");
      assert.ok(Number(m[2]) > 0 && Number(m[2]) < 65536);
    });
  },
});
