/**
 * NAT discovery interop with coturn on loopback (no NAT, no root): turnutils_natdiscovery
 * against `p2pchat serve --alt-host 127.0.0.2`, and `p2pchat nat --stun` against turnserver on
 * 127.0.0.1 and 127.0.0.2. The NAT behaviours themselves are tested in tests/natlab/nat_test.ts.
 */
import assert from "node:assert/strict";
import { freePort, type Harness, withHarness } from "./harness.ts";
import { missingTool, testsUnless } from "../natlab/_labtest.ts";

const test = testsUnless(
  missingTool({ turnutils_natdiscovery: "coturn", turnserver: "coturn" }),
  "NAT discovery interop tests (coturn)",
);

const EIM = "endpoint-independent";

test({
  name: "interop: turnutils_natdiscovery -m -f against p2pchat serve --alt-host",
  fn: async () => {
    await withHarness(async (h) => {
      const port = freePort();
      const s = h.server(port, ["--alt-port", String(freePort()), "--alt-host", "127.0.0.2"]);
      await s.waitStderr(/RFC 5780 NAT discovery/);
      const out = await new Deno.Command("turnutils_natdiscovery", {
        args: ["-m", "-f", "-L", "127.0.0.1", "-p", String(port), "127.0.0.1"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, text);
      assert.match(text, /RFC 5780 response/, "it sees OTHER-ADDRESS");
      assert.match(text, /NAT with Endpoint Independent Mapping!/);
      assert.match(text, /NAT with Endpoint Independent Filtering!/);
    });
  },
});

/** Runs turnserver (STUN only) on 127.0.0.1 and 127.0.0.2; returns its port and a stopper. */
async function turnserver(): Promise<{ port: number; stop: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "p2pchat-coturn-" });
  const port = freePort();
  const conf = [
    "listening-ip=127.0.0.1",
    "listening-ip=127.0.0.2",
    `listening-port=${port}`,
    `alt-listening-port=${port + 1}`,
    "stun-only",
    "no-tcp",
    "no-tls",
    "no-dtls",
    "no-cli",
    "log-file=stdout",
    "simple-log",
    `pidfile=${dir}/turnserver.pid`,
    `userdb=${dir}/turndb`,
  ].join("\n") + "\n";
  await Deno.writeTextFile(`${dir}/turnserver.conf`, conf);
  const child = new Deno.Command("turnserver", {
    args: ["-c", `${dir}/turnserver.conf`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  // It logs no line per listener: wait until a Binding request gets an answer.
  const probe = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const req = new Uint8Array([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, ...new Uint8Array(12)]);
    for (let i = 0; i < 50; i++) {
      await probe.send(req, { transport: "udp", hostname: "127.0.0.1", port });
      const got = await Promise.race([
        probe.receive().then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 200)),
      ]);
      if (got) return { port, stop };
    }
    await stop();
    throw new Error("Cannot start turnserver: no answer on its port within 10 s");
  } finally {
    probe.close();
  }
}

async function natJson(h: Harness, args: string[]): Promise<Record<string, unknown>> {
  const p = h.spawn(["nat", ...args, "--json"]);
  await p.closeStdin();
  assert.equal((await p.status).code, 0, p.stderr.join("\n"));
  return JSON.parse(p.lines[0]!);
}

test({
  name: "interop: p2pchat nat --stun against coturn's turnserver matches p2pchat serve",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const coturn = await turnserver();
    try {
      await withHarness(async (h) => {
        const port = freePort();
        const s = h.server(port, ["--alt-port", String(freePort()), "--alt-host", "127.0.0.2"]);
        await s.waitStderr(/RFC 5780 NAT discovery/);
        const theirs = await natJson(h, ["--stun", `127.0.0.1:${coturn.port}`]);
        const ours = await natJson(h, ["--server", `127.0.0.1:${port}`]);
        assert.equal(theirs.otherAddress, `127.0.0.2:${coturn.port + 1}`, "coturn is RFC 5780");
        const pick = (
          j: Record<string, unknown>,
        ) => [j.udp, j.natted, j.mapping, j.filtering, j.allocation, j.hairpin];
        assert.deepEqual(pick(theirs), [true, false, EIM, EIM, "preserving", true]);
        assert.deepEqual(pick(ours), pick(theirs));
      });
    } finally {
      await coturn.stop();
    }
  },
});
