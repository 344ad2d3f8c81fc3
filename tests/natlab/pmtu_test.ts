/**
 * Path MTU probing on a real LAN: two `p2pchat join` processes on one lab LAN segment, with
 * the kernel's own MTUs. At Ethernet's 1500 every DATA carries one fragment; with jumbo frames
 * (MTU 9000 on every veth of the segment) the probe confirms 8 fragments per DATA; and when the
 * path starts dropping big datagrams mid-transfer (nftables, no ICMP), the sender falls back to
 * one fragment and every message still arrives once, in order.
 */
import assert from "node:assert/strict";
import { type Lab, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "path MTU tests");

const SIZE = 16 * 1024;

function text(i: number): string {
  const head = `m${i}:`;
  return head + String.fromCharCode(97 + (i % 26)).repeat(SIZE - head.length);
}

/** Two peers on site a's LAN (a1, a2) and a server; `mtu` on every veth of the LAN first. */
async function withLan(
  mtu: number,
  fn: (lab: Lab, alice: Proc, bob: Proc) => Promise<void>,
  /** -A (the tests' way), the compiled binary's permissions, or the join task's. */
  perms: "all" | "binary" | "task" = "all",
): Promise<void> {
  const lab = await up({ sites: [{ name: "a", nat: "port-restricted", hosts: 2 }] });
  const h = new Harness();
  try {
    if (mtu !== 1500) {
      const sh = async (node: string, cmd: string[]) => {
        const r = await lab.exec(node, cmd);
        assert.equal(r.code, 0, `${node}: ${cmd.join(" ")}: ${r.stderr}`);
      };
      for (const hostIf of ["h1", "h2"]) {
        await sh("router:a", ["ip", "link", "set", hostIf, "mtu", String(mtu)]);
      }
      await sh("a1", ["ip", "link", "set", "eth0", "mtu", String(mtu)]);
      await sh("a2", ["ip", "link", "set", "eth0", "mtu", String(mtu)]);
    }
    const server = h.server(PORT, [], wrap(lab, "server"));
    await server.waitStderr(/listening on/);
    const addr = `${lab.server.addrs[0]}:${PORT}`;
    const join = (name: string, node: string) =>
      h.spawn(["join", "--json", "--name", name, "--server", addr, "--no-portmap"], {
        wrap: wrap(lab, node),
        binary: perms === "binary",
        task: perms === "task",
      });
    const alice = join("alice", "a1");
    await alice.waitFor(isType("ready"), 15_000);
    const bob = join("bob", "a2");
    assert.equal((await bob.waitFor(isType("path", { peer: "alice" }), 15_000)).path, "lan");
    await fn(lab, alice, bob);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

/** bob sends messages from..to-1 to the room; alice must show each once, in order. */
async function transfer(alice: Proc, bob: Proc, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) await bob.write(text(i));
  await alice.waitFor(isType("message", { text: text(to - 1) }), 60_000, `message ${to - 1}`);
  const got = alice.events.filter((e) => e.type === "message").map((e) => e.text);
  assert.deepEqual(got, Array.from({ length: to }, (_, i) => text(i)), "each once, in order");
}

async function fragsToAlice(bob: Proc): Promise<number> {
  const n = bob.events.filter(isType("peers")).length;
  await bob.write("/peers");
  await bob.waitFor(() => bob.events.filter(isType("peers")).length > n, 10_000, "/peers");
  const list = bob.events.filter(isType("peers")).at(-1)!.peers as {
    name: string;
    data_frags: number;
  }[];
  return list.find((p) => p.name === "alice")!.data_frags;
}

async function counters(p: Proc): Promise<Record<string, number>> {
  const n = p.events.filter(isType("stats")).length;
  await p.write("/stats");
  await p.waitFor(() => p.events.filter(isType("stats")).length > n, 10_000, "/stats");
  return p.events.filter(isType("stats")).at(-1)!.counters as Record<string, number>;
}

labTest("pmtu: an Ethernet LAN (MTU 1500) carries one fragment per DATA", async () => {
  await withLan(1500, async (_lab, alice, bob) => {
    await transfer(alice, bob, 0, 20);
    assert.equal(await fragsToAlice(bob), 1);
  });
});

labTest(
  "pmtu: jumbo frames (MTU 9000): 8 fragments per DATA; a black hole mid-transfer loses nothing",
  async () => {
    await withLan(9000, async (lab, alice, bob) => {
      await transfer(alice, bob, 0, 20);
      // 9000 - 28 (IPv4, UDP) - 31 (sealing) - 34 (DATA framing) = 8907: 8 KiB of fragments.
      assert.equal(await fragsToAlice(bob), 8);
      // From now on bob's datagrams over 3000 bytes vanish, and nothing tells bob why.
      const rules = [
        "table inet pmtu_hole {",
        "  chain out { type filter hook output priority 0; meta length > 3000 drop; }",
        "}",
      ].join("\n");
      const r = await lab.exec("a2", ["nft", "-f", "-"], rules);
      assert.equal(r.code, 0, r.stderr);
      await transfer(alice, bob, 20, 60);
      // 1 at once; 2 (2113 bytes) if the search that restarts a minute later already ran.
      const after = await fragsToAlice(bob);
      assert.ok(after === 1 || after === 2, `${after} fragments per DATA after the hole`);
      assert.equal((await counters(bob)).mtu_black_holes, 1);
      assert.equal(bob.events.filter(isType("undelivered")).length, 0);
    });
  },
);

labTest(
  "pmtu: jumbo frames with the compiled binary's permissions (no /sys): the kernel's MTU, 8 fragments per DATA",
  async () => {
    await withLan(9000, async (_lab, alice, bob) => {
      await transfer(alice, bob, 0, 20);
      assert.equal(await fragsToAlice(bob), 8);
    }, "binary");
  },
);

labTest(
  "pmtu: jumbo frames with the join task's permissions (no /sys, no FFI): one fragment per DATA",
  async () => {
    await withLan(9000, async (_lab, alice, bob) => {
      await transfer(alice, bob, 0, 10);
      assert.equal(await fragsToAlice(bob), 1);
    }, "task");
  },
);
