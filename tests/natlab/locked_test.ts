/**
 * A locked room behind real kernel NATs: members from an invite reach each other through the
 * relay (symmetric <-> port-restricted cannot punch), so the psk handshake crosses the server;
 * a stranger behind a third NAT who knows only the room's name is refused with status 2.
 */
import assert from "node:assert/strict";
import { unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { count, Harness, isType } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "NAT lab locked-room test");

labTest("locked room: invited members chat through the relay; a stranger is refused", async () => {
  const lab = await up({
    sites: [
      { name: "a", nat: "symmetric" },
      { name: "b", nat: "port-restricted" },
      { name: "c", nat: "full-cone" },
    ],
  });
  const h = new Harness();
  try {
    const server = h.server(PORT, ["--log-level", "info"], wrap(lab, "server"));
    await server.waitStderr(/listening on/);
    const addr = `${lab.server.addrs[0]}:${PORT}`;
    // The invite is made offline, anywhere.
    const invite = h.spawn(["invite", "--room", "family", "--server", addr]);
    assert.equal((await invite.status).code, 0);
    const env = { P2PCHAT_INVITE: invite.lines[0]! };
    const join = (name: string, node: string) =>
      h.spawn(["join", "--json", "--name", name], { env, wrap: wrap(lab, node) });
    const a = join("a", "a1");
    const b = join("b", "b1");
    for (const p of [a, b]) assert.equal((await p.waitFor(isType("ready"), 20000)).locked, true);
    const path = await a.waitFor(isType("path", { peer: "b" }), 30000, "a's path to b");
    assert.equal(path.path, "relay");
    await a.write("through the relay, sealed with the room's psk");
    await b.waitFor(isType("message", { from: "a" }), 20000);
    await a.waitFor(isType("delivered", { to: "b" }), 20000);

    const c = h.peer("c", addr, ["--room", "family"], wrap(lab, "c1"));
    assert.equal((await c.status).code, 2);
    assert.match(c.stderr.join("\n"), /room "family" is locked/);
    assert.equal(count(c, isType("peer")), 0);
    for (const p of [a, b]) assert.equal(count(p, isType("peer", { name: "c" })), 0);
  } finally {
    await h.cleanup();
    await lab.down();
  }
});
