/**
 * Networks that drop UDP, behind real kernel NATs: a router that forwards no UDP at all (as
 * hotel, office and school networks do) leaves its peers the server's WebSocket. They register
 * over it, the relay carries their chat (end to end encrypted as ever), and a peer that loses UDP
 * in the middle of a chat moves to the WebSocket without losing a message, and back to UDP
 * when UDP works again.
 */
import assert from "node:assert/strict";
import { type Lab, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "NAT lab UDP-blocked tests");

/** Makes site `site`'s router drop (or again forward) every UDP datagram, both ways. */
async function blockUdp(lab: Lab, site: string, on: boolean): Promise<void> {
  const script = on
    ? "table inet udpblock {\n  chain forward_udp {\n    type filter hook forward priority -10; " +
      "policy accept;\n    meta l4proto udp drop\n  }\n}\n"
    : "delete table inet udpblock\n";
  const r = await lab.exec(`router:${site}`, ["nft", "-f", "-"], script);
  assert.equal(r.code, 0, `nft on router ${site}: ${r.stderr}`);
}

function messages(p: Proc, from: string): string[] {
  return p.events.filter(isType("message", { from })).map((e) => String(e.text));
}

async function chatBothWays(a: Proc, b: Proc): Promise<void> {
  await a.write("from a, over whatever gets through");
  await b.write("from b, over whatever gets through");
  await b.waitFor(isType("message", { from: "a" }), 20000, "b hears a");
  await a.waitFor(isType("message", { from: "b" }), 20000, "a hears b");
  await a.waitFor(isType("delivered", { to: "b" }), 20000, "a's message acknowledged");
  await b.waitFor(isType("delivered", { to: "a" }), 20000, "b's message acknowledged");
}

async function withLab(
  sites: { name: string; nat: "full-cone" | "port-restricted" | "symmetric" }[],
  fn: (lab: Lab, h: Harness, server: string) => Promise<void>,
): Promise<void> {
  const lab = await up({ sites });
  const h = new Harness();
  try {
    const s = h.server(PORT, ["--log-level", "info"], wrap(lab, "server"));
    await s.waitStderr(/listening on .*TCP/);
    await fn(lab, h, `${lab.server.addrs[0]}:${PORT}`);
  } finally {
    await h.cleanup();
    await lab.down();
  }
}

labTest("UDP blocked at one site: it registers over WebSocket and chats both ways", async () => {
  await withLab([{ name: "a", nat: "port-restricted" }, { name: "b", nat: "full-cone" }], async (
    lab,
    h,
    server,
  ) => {
    await blockUdp(lab, "a", true);
    const t0 = Date.now();
    const a = h.peer("a", server, [], wrap(lab, "a1"));
    const b = h.peer("b", server, [], wrap(lab, "b1"));
    const ra = await a.waitFor(isType("ready"), 20000, "a ready");
    console.log(`UDP-blocked peer ready over WebSocket ${(Date.now() - t0) / 1000} s after start`);
    const rb = await b.waitFor(isType("ready"), 20000, "b ready");
    assert.equal(ra.transport, "ws");
    assert.equal(rb.transport, "udp");
    const t = await a.waitFor(isType("transport"), 1000, "a's transport event");
    assert.equal(t.transport, "ws");
    const t1 = Date.now();
    await chatBothWays(a, b);
    console.log(`chat both ways and acknowledged in ${(Date.now() - t1) / 1000} s`);
    const path = a.events.filter(isType("path", { peer: "b" })).at(-1);
    assert.equal(path?.path, "relay");
    assert.equal(path?.transport, "ws");
  });
});

labTest("UDP blocked at both sites: both on WebSocket, chat delivered both ways", async () => {
  await withLab([{ name: "a", nat: "symmetric" }, { name: "b", nat: "full-cone" }], async (
    lab,
    h,
    server,
  ) => {
    await blockUdp(lab, "a", true);
    await blockUdp(lab, "b", true);
    const a = h.peer("a", server, [], wrap(lab, "a1"));
    const b = h.peer("b", server, [], wrap(lab, "b1"));
    for (const p of [a, b]) {
      assert.equal((await p.waitFor(isType("ready"), 20000)).transport, "ws");
    }
    await chatBothWays(a, b);
  });
});

labTest("a ws:// --server uses the WebSocket from the start", async () => {
  await withLab([{ name: "a", nat: "full-cone" }, { name: "b", nat: "full-cone" }], async (
    lab,
    h,
    server,
  ) => {
    const a = h.peer("a", `ws://${server}`, [], wrap(lab, "a1"));
    const b = h.peer("b", server, [], wrap(lab, "b1"));
    assert.equal((await a.waitFor(isType("ready"), 20000)).transport, "ws");
    assert.equal((await b.waitFor(isType("ready"), 20000)).transport, "udp");
    await chatBothWays(a, b);
  });
});

labTest("UDP lost mid-chat: onto the WebSocket, nothing lost, back to UDP after", async () => {
  await withLab([{ name: "a", nat: "full-cone" }, { name: "b", nat: "port-restricted" }], async (
    lab,
    h,
    server,
  ) => {
    const a = h.peer("a", server, [], wrap(lab, "a1"));
    const b = h.peer("b", server, [], wrap(lab, "b1"));
    for (const p of [a, b]) {
      assert.equal((await p.waitFor(isType("ready"), 20000)).transport, "udp");
    }
    await a.waitFor(isType("path", { peer: "b", path: "direct" }), 20000, "a direct to b");
    const sent: string[] = [];
    let n = 0;
    const send = async () => {
      const text = `m${++n}`;
      sent.push(text);
      await a.write(text);
    };
    // A message every 300 ms: before, while and after the router starts dropping UDP.
    for (let i = 0; i < 5; i++) {
      await send();
      await new Promise((r) => setTimeout(r, 300));
    }
    await blockUdp(lab, "a", true);
    const blockedAt = Date.now();
    const until = Date.now() + 8000;
    while (Date.now() < until && a.events.filter(isType("transport")).length === 0) {
      await send();
      await new Promise((r) => setTimeout(r, 300));
    }
    const moved = await a.waitFor(isType("transport", { transport: "ws" }), 15000, "a on ws");
    assert.match(String(moved.why), /stopped answering/);
    const movedS = (Date.now() - blockedAt) / 1000;
    for (let i = 0; i < 5; i++) {
      await send();
      await new Promise((r) => setTimeout(r, 300));
    }
    const last = sent.at(-1)!;
    await b.waitFor(isType("message", { from: "a", text: last }), 40000, "b has a's last");
    assert.deepEqual(messages(b, "a"), sent, "every message once, in order");
    console.log(
      `UDP dropped mid-chat: on the WebSocket within ${movedS} s, ${sent.length} messages ` +
        `(one every 300 ms) all arrived once and in order`,
    );
    await b.write("b after the move");
    await a.waitFor(isType("message", { from: "b" }), 20000, "a hears b over the relay");

    // UDP comes back: a moves back (after a loss it probes every 20 s, and needs two answers).
    await blockUdp(lab, "a", false);
    const freedAt = Date.now();
    await a.waitFor(isType("transport", { transport: "udp" }), 45000, "a back on UDP");
    console.log(`UDP back: on UDP again ${(Date.now() - freedAt) / 1000} s later`);
    await a.write("back on UDP");
    await b.waitFor(isType("message", { from: "a", text: "back on UDP" }), 20000);
  });
});

labTest(
  "only STUN gets through at one site: the peer settles on the WebSocket, not on a UDP that carries nothing",
  async () => {
    await withLab([{ name: "a", nat: "port-restricted" }, { name: "b", nat: "full-cone" }], async (
      lab,
      h,
      server,
    ) => {
      // Forward UDP only when it carries STUN's magic cookie (payload bytes 4-7), as firewalls
      // that allow STUN for calls and drop the rest do.
      const script = "table inet stunonly {\n  chain forward_udp {\n    type filter hook forward " +
        "priority -10; policy accept;\n    meta l4proto udp @th,96,32 != 0x2112a442 drop\n  }\n}\n";
      const r = await lab.exec("router:a", ["nft", "-f", "-"], script);
      assert.equal(r.code, 0, r.stderr);
      const a = h.peer("a", server, [], wrap(lab, "a1"));
      const b = h.peer("b", server, [], wrap(lab, "b1"));
      assert.equal((await a.waitFor(isType("ready"), 20000, "a ready")).transport, "ws");
      await b.waitFor(isType("ready"), 20000, "b ready");
      // Its UDP probes are answered, so it tries UDP again, registers there in vain, and goes
      // back to the WebSocket, saying why.
      await a.waitFor(isType("transport", { transport: "udp" }), 30000, "a tries UDP again");
      const back = await a.waitFor(
        (e) => e.type === "transport" && e.transport === "ws" && /STUN/.test(String(e.why)),
        15000,
        "a back on the WebSocket",
      );
      assert.match(String(back.why), /answers STUN over UDP but nothing else/);
      await chatBothWays(a, b);
      const path = a.events.filter(isType("path", { peer: "b" })).at(-1);
      // Relayed over the WebSocket, or direct over TCP once TCP punching got through (TCP
      // passes this router): never over UDP.
      assert.ok(["ws", "tcp"].includes(String(path?.transport)), JSON.stringify(path));
    });
  },
);
