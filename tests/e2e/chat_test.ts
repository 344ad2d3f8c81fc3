/** Real processes on loopback: a server and --json peers talking over real UDP sockets. */
import assert from "node:assert/strict";
import {
  assertJsonOnly,
  count,
  freePort,
  type Harness,
  isType,
  type Proc,
  withHarness,
} from "./harness.ts";

const FAST = ["--keepalive", "0.5", "--ack-timeout", "300", "--punch-window", "1500"];

async function room(h: Harness, names: string[], extra: string[] = []) {
  const port = freePort();
  const server = h.server(port, ["--keepalive", "0.5"]);
  await server.waitStderr(/listening on/);
  const addr = `127.0.0.1:${port}`;
  const peers: Record<string, Proc> = {};
  for (const n of names) {
    peers[n] = h.peer(n, addr, [...FAST, ...extra]);
    await peers[n].waitFor(isType("ready", { name: n }), 15000, `${n} ready`);
  }
  return { server, port, addr, peers };
}

async function allSee(peers: Record<string, Proc>, kinds = ["lan", "direct", "relay"]) {
  for (const [n, p] of Object.entries(peers)) {
    for (const other of Object.keys(peers)) {
      if (other === n) continue;
      await p.waitFor(
        isType("peer", { name: other, state: "joined" }),
        15000,
        `${n} sees ${other}`,
      );
      await p.waitFor(
        (e) => e.type === "path" && e.peer === other && kinds.includes(e.path as string),
        15000,
        `${n} has a path to ${other}`,
      );
    }
  }
}

Deno.test("e2e: three peers see each other; room and direct messages arrive exactly once", async () => {
  await withHarness(async (h) => {
    const { peers } = await room(h, ["alice", "bob", "carol"]);
    await allSee(peers);
    const { alice, bob, carol } = peers as Record<string, Proc>;
    // Same host: the LAN-first handshake finds the local address.
    assert.ok(alice!.events.some((e) => e.type === "path" && e.peer === "bob" && e.path === "lan"));

    await alice!.write("hello room");
    await bob!.write("/msg alice psst");
    await carol!.write("x".repeat(16 * 1024));
    for (const p of [bob!, carol!]) {
      await p.waitFor(isType("message", { from: "alice", to: "room", text: "hello room" }));
    }
    const d = await alice!.waitFor(isType("message", { from: "bob", to: "alice", text: "psst" }));
    assert.equal(typeof d.id, "string");
    for (const p of [alice!, bob!]) {
      await p.waitFor((e) =>
        e.type === "message" && e.from === "carol" && e.text === "x".repeat(16 * 1024)
      );
    }
    await alice!.waitFor(isType("delivered", { to: "bob" }));
    await alice!.waitFor(isType("delivered", { to: "carol" }));
    await bob!.waitFor(isType("delivered", { to: "alice" }));
    // Give retransmissions a chance to show up as duplicates (they must not).
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(count(bob!, isType("message", { from: "alice", text: "hello room" })), 1);
    assert.equal(count(carol!, isType("message", { from: "alice", text: "hello room" })), 1);
    assert.equal(
      count(carol!, isType("message", { from: "bob" })),
      0,
      "direct message stays private",
    );
    assert.equal(count(alice!, isType("message", { from: "bob", text: "psst" })), 1);
    for (const p of Object.values(peers)) assertJsonOnly(p);
  });
});

Deno.test("e2e: a peer killed with SIGKILL is reported gone within the keepalive deadline", async () => {
  await withHarness(async (h) => {
    const { peers } = await room(h, ["alice", "bob"]);
    await allSee(peers);
    const t0 = Date.now();
    peers.bob!.kill("SIGKILL");
    // keepalive 0.5 s: 3 missed plus the server's 1 s tick and grace.
    await peers.alice!.waitFor(isType("peer", { name: "bob", state: "left" }), 8000, "bob left");
    const took = Date.now() - t0;
    assert.ok(took < 8000, `reported after ${took} ms`);
  });
});

Deno.test("e2e: the server restarts and peers recover by themselves", async () => {
  await withHarness(async (h) => {
    const { peers, port, server } = await room(h, ["alice", "bob"]);
    await allSee(peers);
    server.kill("SIGKILL");
    await server.status;
    await new Promise((r) => setTimeout(r, 500));
    // Direct paths keep working while the server is gone.
    await peers.alice!.write("while the server is down");
    await peers.bob!.waitFor(isType("message", { text: "while the server is down" }));
    const again = h.server(port, ["--keepalive", "0.5"]);
    await again.waitStderr(/listening on/);
    // Both re-register on their own; a newcomer then sees them.
    await again.waitStderr(/alice joined/, 10000);
    await again.waitStderr(/bob joined/, 10000);
    const carol = h.peer("carol", `127.0.0.1:${port}`, FAST);
    // A room line reaches the members its sender knows when it is typed, so bob must have
    // learned of carol (and carol of bob) before he writes.
    await allSee({ ...peers, carol });
    await peers.bob!.write("after restart");
    await carol.waitFor(isType("message", { from: "bob", text: "after restart" }));
    await peers.alice!.waitFor(isType("message", { from: "bob", text: "after restart" }));
  });
});

Deno.test("e2e: forced relay still delivers messages both ways", async () => {
  await withHarness(async (h) => {
    const { peers } = await room(h, ["alice", "bob"], ["--test-drop-direct"]);
    await allSee(peers, ["relay"]);
    assert.equal(count(peers.alice!, (e) => e.type === "path" && e.path !== "relay"), 0);
    await peers.alice!.write("via relay");
    await peers.bob!.write("/msg alice back via relay");
    await peers.bob!.waitFor(isType("message", { from: "alice", text: "via relay" }));
    await peers.alice!.waitFor(isType("message", { from: "bob", text: "back via relay" }));
    await peers.alice!.waitFor(isType("delivered", { to: "bob" }));
  });
});

Deno.test("e2e: scripted stdin is sent, acknowledged, then the peer leaves with status 0", async () => {
  await withHarness(async (h) => {
    const { peers, addr } = await room(h, ["bob"]);
    const a = h.peer("alice", addr, FAST);
    await peers.bob!.waitFor(isType("peer", { name: "alice", state: "joined" }));
    await a.write("one");
    await a.write("two");
    await a.closeStdin();
    const st = await a.status;
    assert.equal(st.code, 0);
    await peers.bob!.waitFor(isType("message", { text: "two" }));
    assert.deepEqual(
      peers.bob!.events.filter((e) => e.type === "message").map((e) => e.text),
      ["one", "two"],
    );
    assert.equal(count(a, isType("delivered", { to: "bob" })), 2);
    await peers.bob!.waitFor(isType("peer", { name: "alice", state: "left" }), 5000, "leave told");
  });
});

Deno.test("e2e: /peers lists each peer with its path", async () => {
  await withHarness(async (h) => {
    const { peers } = await room(h, ["alice", "bob"]);
    await allSee(peers);
    await peers.alice!.write("/peers");
    const e = await peers.alice!.waitFor(isType("peers"));
    const list = e.peers as { name: string; path: string; addr: string; rtt_ms: number }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]!.name, "bob");
    assert.ok(["lan", "direct"].includes(list[0]!.path));
    assert.match(list[0]!.addr, /^\d+\.\d+\.\d+\.\d+:\d+$/);
  });
});
