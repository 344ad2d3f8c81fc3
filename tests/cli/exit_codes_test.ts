/** The real CLI's exit codes and one-line errors for user mistakes and network failures. */
import assert from "node:assert/strict";
import { freePort, isType, withHarness } from "../e2e/harness.ts";

const cases: { name: string; args: string[]; code: number; err: RegExp }[] = [
  {
    name: "unknown flag",
    args: ["join", "--name", "a", "--bogus"],
    code: 2,
    err: /unknown option '--bogus'/,
  },
  {
    name: "bad server address",
    args: ["join", "--name", "a", "--server", "300.1.1.1:1"],
    code: 2,
    err: /not HOST:PORT/,
  },
  {
    name: "missing name without a terminal",
    args: ["join", "--server", "127.0.0.1:9"],
    code: 2,
    err: /--name is required/,
  },
  { name: "no command", args: [], code: 2, err: /Usage: p2pchat/ },
  {
    name: "unresolvable host",
    args: ["join", "--name", "a", "--server", "no-such-host.invalid:1"],
    code: 1,
    err: /Cannot resolve server host/,
  },
];

for (const c of cases) {
  Deno.test(`cli exit: ${c.name} -> status ${c.code}`, async () => {
    await withHarness(async (h) => {
      const p = h.spawn(c.args);
      await p.closeStdin();
      const st = await p.status;
      assert.equal(st.code, c.code, p.stderr.join("\n"));
      const text = p.stderr.join("\n");
      assert.match(text, c.err);
      assert.doesNotMatch(text, /^\s+at /m, "no stack trace");
    });
  });
}

Deno.test("cli exit: unreachable server -> status 1 with one line", async () => {
  await withHarness(async (h) => {
    const port = freePort(); // nobody listens there
    const p = h.spawn(["join", "--name", "a", "--server", `127.0.0.1:${port}`]);
    const st = await p.status;
    assert.equal(st.code, 1);
    assert.deepEqual(p.stderr.filter((l) => l.trim()), [
      `p2pchat: Cannot reach server 127.0.0.1:${port}: no answer within 5 s (over UDP, nor ` +
      `over its WebSocket ws://127.0.0.1:${port}/p2pchat)`,
    ]);
  });
});

Deno.test("cli exit: unreachable ws:// server -> status 1, the line names the WebSocket", async () => {
  await withHarness(async (h) => {
    const port = freePort(); // nobody listens there
    const p = h.spawn(["join", "--name", "a", "--server", `ws://127.0.0.1:${port}`]);
    assert.equal((await p.status).code, 1);
    assert.deepEqual(p.stderr.filter((l) => l.trim()), [
      `p2pchat: Cannot reach server 127.0.0.1:${port}: no answer within 5 s (over its ` +
      `WebSocket ws://127.0.0.1:${port}/p2pchat)`,
    ]);
  });
});

Deno.test("cli exit: an IPv6 server is tried (not refused); unreachable -> status 1", async () => {
  await withHarness(async (h) => {
    const port = freePort(); // nobody listens there
    const p = h.spawn(["join", "--name", "a", "--server", `[0:0::1]:${port}`]);
    const st = await p.status;
    assert.equal(st.code, 1);
    // The literal is written the canonical way (as datagrams from it are reported).
    assert.deepEqual(p.stderr.filter((l) => l.trim()), [
      `p2pchat: Cannot reach server [::1]:${port}: no answer within 5 s (over UDP, nor over ` +
      `its WebSocket ws://[::1]:${port}/p2pchat)`,
    ]);
  });
});

Deno.test("cli exit: a name taken in the room -> status 2", async () => {
  await withHarness(async (h) => {
    const port = freePort();
    const s = h.server(port);
    await s.waitStderr(/listening on/);
    const first = h.peer("alice", `127.0.0.1:${port}`);
    await first.waitFor(isType("ready"));
    const second = h.peer("alice", `127.0.0.1:${port}`);
    const st = await second.status;
    assert.equal(st.code, 2);
    assert.match(second.stderr.join("\n"), /Cannot join room "lobby": name "alice" is taken/);
    assert.ok(second.events.some((e) => e.type === "error"), "--json also reports the error");
    // Another room is fine.
    const third = h.peer("alice", `127.0.0.1:${port}`, ["--room", "other"]);
    await third.waitFor(isType("ready", { room: "other" }));
  });
});

Deno.test("cli exit: serve on a port in use -> status 1", async () => {
  await withHarness(async (h) => {
    const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    try {
      const port = (sock.addr as Deno.NetAddr).port;
      const p = h.server(port);
      const st = await p.status;
      assert.equal(st.code, 1);
      assert.match(p.stderr.join("\n"), /Cannot listen on 127\.0\.0\.1:\d+/);
    } finally {
      sock.close();
    }
  });
});
