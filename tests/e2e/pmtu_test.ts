/**
 * Path MTU probing between real processes on loopback, with the permissions `deno task join`
 * grants (not -A): datagrams to our own machine never leave it, so a whole 16 KiB message goes
 * in one DATA, direct and through the relay; every message still arrives once, in order.
 */
import assert from "node:assert/strict";
import { freePort, type Harness, isType, type Proc, withHarness } from "./harness.ts";

const SIZE = 16 * 1024;

function text(i: number): string {
  const head = `m${i}:`;
  return head + String.fromCharCode(97 + (i % 26)).repeat(SIZE - head.length);
}

async function pair(h: Harness, extra: string[]): Promise<{ alice: Proc; bob: Proc }> {
  const port = freePort();
  const server = h.spawn(["serve", "--host", "127.0.0.1", "--port", String(port)], {
    task: true,
  });
  await server.waitStderr(/listening on/);
  const addr = `127.0.0.1:${port}`;
  const join = (name: string) =>
    h.spawn(["join", "--json", "--name", name, "--server", addr, ...extra], { task: true });
  const alice = join("alice");
  await alice.waitFor(isType("ready", { name: "alice" }));
  const bob = join("bob");
  await bob.waitFor(isType("peer", { name: "alice" }));
  return { alice, bob };
}

async function peerOf(bob: Proc) {
  const n = bob.events.filter(isType("peers")).length;
  await bob.write("/peers");
  await bob.waitFor(() => bob.events.filter(isType("peers")).length > n, 10_000, "/peers");
  const list = bob.events.filter(isType("peers")).at(-1)!.peers as {
    name: string;
    path: string;
    data_frags: number;
  }[];
  return list.find((p) => p.name === "alice")!;
}

for (const relayed of [false, true]) {
  Deno.test(`pmtu: loopback, ${relayed ? "relayed" : "direct"}: one DATA per 16 KiB message`, async () => {
    await withHarness(async (h) => {
      const { alice, bob } = await pair(h, relayed ? ["--test-drop-direct"] : []);
      const n = 30;
      for (let i = 0; i < n; i++) await bob.write(text(i));
      await alice.waitFor(isType("message", { text: text(n - 1) }), 30_000, "the last message");
      const got = alice.events.filter(isType("message")).map((e) => e.text);
      assert.deepEqual(got, Array.from({ length: n }, (_, i) => text(i)));
      const p = await peerOf(bob);
      assert.equal(p.path, relayed ? "relay" : "lan");
      assert.equal(p.data_frags, 16);
      // /stats tells what the transport did: every fragment sent at least once, and the probe.
      const before = bob.events.length;
      await bob.write("/stats");
      const st = await bob.waitFor((e) => e.type === "stats" && bob.events.indexOf(e) >= before);
      const c = st.counters as Record<string, number>;
      assert.ok(
        c.data_sent! >= n * 16 && c.mtu_probes! >= 1 && c.mtu_acks! >= 1,
        JSON.stringify(c),
      );
      assert.equal(alice.stderr.some((l) => /Requires .* access/.test(l)), false);
    });
  });
}
