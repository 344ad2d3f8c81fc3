/**
 * `p2pchat nat` against a real `p2pchat serve` on loopback (no NAT here: the answers are the
 * open-internet ones), and its exit codes.
 */
import assert from "node:assert/strict";
import { freePort, type Harness, withHarness } from "./harness.ts";

/** Runs `p2pchat nat ARGS` to the end; stdout lines and stderr lines. */
async function nat(h: Harness, args: string[]) {
  const p = h.spawn(["nat", ...args]);
  await p.closeStdin();
  const st = await p.status;
  return { code: st.code, out: p.lines, err: p.stderr.filter((l) => l.trim()) };
}

/** A server on 127.0.0.1 (and 127.0.0.2 with `alt`); resolves to its port and second port. */
async function server(h: Harness, extra: string[]): Promise<{ port: number; alt: number }> {
  const port = freePort();
  const alt = freePort();
  const s = h.server(port, ["--alt-port", String(alt), ...extra]);
  await s.waitStderr(/STUN also on/);
  return { port, alt };
}

Deno.test("nat --json against serve --alt-host: every test decided, no NAT", async () => {
  await withHarness(async (h) => {
    const { port, alt } = await server(h, ["--alt-host", "127.0.0.2"]);
    for (const flag of ["--server", "--stun"]) {
      const r = await nat(h, [flag, `127.0.0.1:${port}`, "--json"]);
      assert.equal(r.code, 0, r.err.join("\n"));
      assert.equal(r.out.length, 1, "one JSON object");
      const j = JSON.parse(r.out[0]!);
      assert.equal(j.udp, true);
      assert.match(j.public, /^127\.0\.0\.1:\d+$/);
      assert.equal(j.natted, false);
      assert.equal(j.mapping, "endpoint-independent");
      assert.equal(j.filtering, "endpoint-independent");
      assert.equal(j.allocation, "preserving");
      assert.equal(j.hairpin, true);
      assert.deepEqual(j.portmap, []);
      assert.equal(j.otherAddress, `127.0.0.2:${alt}`);
      assert.deepEqual(j.notes, []);
      assert.ok(j.rttMs >= 0 && j.rttMs < 1000);
    }
  });
});

Deno.test("nat against serve without --alt-host: the second port decides what it can", async () => {
  await withHarness(async (h) => {
    const port = freePort();
    const s = h.server(port);
    await s.waitStderr(/listening on/);
    await new Promise((r) => setTimeout(r, 100));
    // port + 1 is opened when free (it usually is; if not, the server says so and goes on).
    const second = s.stderr.some((l) => l.includes(`STUN also on 127.0.0.1:${port + 1}`));
    const r = await nat(h, ["--server", `127.0.0.1:${port}`, "--json"]);
    assert.equal(r.code, 0, r.err.join("\n"));
    const j = JSON.parse(r.out[0]!);
    assert.equal(j.mapping, "endpoint-independent", "no NAT at all");
    assert.equal(j.filtering, "unknown", "no second address: EIF and ADF look alike");
    assert.equal(j.otherAddress, null);
    assert.equal(j.secondPort, second ? port + 1 : null);
    assert.ok(j.notes.length > 0);
  });
});

Deno.test("nat prints a readable report", async () => {
  await withHarness(async (h) => {
    const { port } = await server(h, ["--alt-host", "127.0.0.2"]);
    const r = await nat(h, ["--server", `127.0.0.1:${port}`]);
    assert.equal(r.code, 0);
    const text = r.out.join("\n");
    for (
      const k of [
        "UDP",
        "public",
        "mapping",
        "filtering",
        "allocation",
        "hairpin",
        "port mapping",
        "RTT",
      ]
    ) {
      assert.match(text, new RegExp(`^  ${k} +\\S`, "m"), `${k} in\n${text}`);
    }
    assert.match(text, /^verdict: no NAT and no filtering: direct with everyone$/m);
  });
});

Deno.test("nat: unreachable server -> exit 1 with one line; bad flags -> exit 2", async () => {
  await withHarness(async (h) => {
    const port = freePort(); // nobody listens there
    const r = await nat(h, ["--server", `127.0.0.1:${port}`, "--timeout", "0.3"]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.err, [
      `p2pchat: Cannot reach server 127.0.0.1:${port}: no answer within 0.3 s over UDP (if this network blocks UDP, \`p2pchat join\` still gets through over the server's WebSocket)`,
    ]);
    const j = await nat(h, ["--stun", `127.0.0.1:${port}`, "--timeout", "0.3", "--json"]);
    assert.equal(j.code, 1);
    assert.equal(JSON.parse(j.out[0]!).udp, false);
    assert.match(j.err.join("\n"), /Cannot reach STUN server/);
    const bad = await nat(h, ["--timeout", "zero"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err.at(-1)!, /^p2pchat: .*--timeout/);
    assert.doesNotMatch(bad.err.join("\n"), /^\s+at /m, "no stack trace");
  });
});
