/**
 * Locked rooms with real processes on loopback: `p2pchat invite`, members joining with the
 * code (from the environment and from a file), and strangers refused with status 2.
 */
import assert from "node:assert/strict";
import { assertJsonOnly, count, freePort, type Harness, isType, withHarness } from "./harness.ts";

const FAST = ["--keepalive", "0.5", "--ack-timeout", "300", "--punch-window", "1500"];

async function startServer(h: Harness) {
  const port = freePort();
  const server = h.server(port, ["--keepalive", "0.5"]);
  await server.waitStderr(/listening on/);
  return { server, addr: `127.0.0.1:${port}` };
}

Deno.test("e2e: an invite lets two members chat in a locked room; strangers get status 2", async () => {
  await withHarness(async (h) => {
    const { server, addr } = await startServer(h);
    const invite = h.spawn(["invite", "--room", "family", "--server", addr]);
    assert.equal((await invite.status).code, 0, invite.stderr.join("\n"));
    assert.equal(invite.lines.length, 1, "one line on stdout: the code");
    const code = invite.lines[0]!;
    assert.match(code, /^p2pchat:[A-Za-z0-9_-]+$/);
    assert.match(invite.stderr.join("\n"), /p2pchat join --invite --name NAME/);

    // Alice takes the code from the environment, bob from a file: never the command line.
    const alice = h.spawn(["join", "--json", "--name", "alice", ...FAST], {
      env: { P2PCHAT_INVITE: code },
    });
    const file = `${h.configDir()}/invite.txt`;
    await Deno.writeTextFile(file, code + "\n", { mode: 0o600 });
    const bob = h.spawn(["join", "--json", "--name", "bob", "--invite-file", file, ...FAST]);
    for (const [p, n] of [[alice, "alice"], [bob, "bob"]] as const) {
      const ready = await p.waitFor(isType("ready", { name: n }), 15000, `${n} ready`);
      assert.equal(ready.room, "family");
      assert.equal(ready.locked, true);
    }
    await alice.waitFor(isType("peer", { name: "bob", state: "joined" }));
    await bob.waitFor((e) => e.type === "path" && e.peer === "alice", 15000, "bob's path");
    await alice.waitFor((e) => e.type === "path" && e.peer === "bob", 15000, "alice's path");
    await alice.write("hello family");
    await bob.waitFor(isType("message", { from: "alice", text: "hello family" }));
    await bob.write("/peers");
    const peers = await bob.waitFor(isType("peers"));
    assert.equal(peers.locked, true);
    assert.deepEqual(
      (peers.peers as { name: string; encrypted: boolean }[]).map((p) => [p.name, p.encrypted]),
      [["alice", true]],
    );

    // Carol knows the room's name only; dave guesses a secret.
    const carol = h.peer("carol", addr, ["--room", "family", ...FAST]);
    const dave = h.spawn(
      ["join", "--json", "--name", "dave", "--room", "family", "--server", addr, ...FAST],
      { env: { P2PCHAT_ROOM_SECRET: "family2024!" } },
    );
    assert.equal((await carol.status).code, 2);
    assert.equal((await dave.status).code, 2);
    assert.match(carol.stderr.join("\n"), /Cannot join room "family": room "family" is locked/);
    assert.match(dave.stderr.join("\n"), /Cannot join room "family": wrong room secret/);
    for (const p of [carol, dave]) {
      assert.equal(count(p, isType("ready")), 0);
      assert.equal(count(p, isType("peer")), 0, "no member learned");
      assertJsonOnly(p);
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const p of [alice, bob]) {
      for (const n of ["carol", "dave"]) assert.equal(count(p, isType("peer", { name: n })), 0);
      assertJsonOnly(p);
    }
    await server.waitStderr(/wrong room secret from 127\.0\.0\.1/);
  });
});

Deno.test("e2e: a room secret on the command line is refused, without repeating it", async () => {
  await withHarness(async (h) => {
    const p = h.spawn(["join", "--name", "a", "--secret", "hunter2hunter2"]);
    await p.closeStdin();
    assert.equal((await p.status).code, 2);
    const err = p.stderr.join("\n");
    assert.match(err, /Cannot take a room secret on the command line/);
    assert.doesNotMatch(err, /hunter2/);
  });
});

Deno.test("e2e: one room name on two servers: open on one, locked on the other, neither affected", async () => {
  await withHarness(async (h) => {
    const one = await startServer(h);
    const two = await startServer(h);
    const alice = h.peer("alice", one.addr, ["--room", "family", ...FAST]);
    // alice holds it open (once she is in: started together, bob could lock it first)...
    await alice.waitFor(isType("ready"));
    const bob = h.spawn([
      "join",
      "--json",
      "--name",
      "bob",
      "--room",
      "family",
      "--server",
      one.addr,
      ...FAST,
    ], {
      env: { P2PCHAT_ROOM_SECRET: "a long family secret" },
    });
    // ...so bob cannot lock it while she is in.
    assert.equal((await bob.status).code, 2);
    assert.match(bob.stderr.join("\n"), /is open: it cannot be locked while it has members/);
    // ...and on the second, the same name with the secret is a locked room of its own.
    const carol = h.spawn(
      ["join", "--json", "--name", "carol", "--room", "family", "--server", two.addr, ...FAST],
      { env: { P2PCHAT_ROOM_SECRET: "a long family secret" } },
    );
    const ready = await carol.waitFor(isType("ready"));
    assert.equal(ready.locked, true);
    const open = await alice.waitFor(isType("ready"));
    assert.equal(open.locked, false);
  });
});
