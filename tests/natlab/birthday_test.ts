/**
 * Birthday punching behind real kernel NAT: a port-restricted NAT and a symmetric one with
 * random ports, where classic punching fails (see the matrix), end up `direct`. Both peers find
 * out their NAT's behaviour themselves (RFC 5780 tests against the server's second port).
 */
import assert from "node:assert/strict";
import { type SiteSpec, unsupported, up } from "./lab.ts";
import { labTests, PORT, wrap } from "./_labtest.ts";
import { Harness, isType, type Proc } from "../e2e/harness.ts";

const labTest = labTests(unsupported(), "birthday punching tests");

const texts = (p: Proc, from: string) =>
  p.events.filter((e) => e.type === "message" && e.from === from).map((e) => e.text as string);

labTest(
  "birthday: port-restricted <-> symmetric goes direct, chat intact across the switch",
  async () => {
    const sites: SiteSpec[] = [
      { name: "a", nat: "port-restricted" },
      { name: "b", nat: "symmetric" },
    ];
    const lab = await up({ sites });
    const h = new Harness();
    try {
      const server = h.server(PORT, ["--log-level", "info"], wrap(lab, "server"));
      await server.waitStderr(/listening on/);
      const addr = `${lab.server.addrs[0]}:${PORT}`;
      const a = h.peer("a", addr, ["--log-level", "info"], wrap(lab, "a1"));
      await a.waitFor(isType("ready"), 20000);
      const t0 = Date.now();
      const b = h.peer("b", addr, ["--log-level", "info"], wrap(lab, "b1"));
      await a.waitFor(isType("peer", { name: "b", state: "joined" }), 20000);
      // Messages every 250 ms from the start, through the relay, the attempt and the switch.
      let sent = 0;
      let direct = false;
      const sending = (async () => {
        while (!direct || sent < 5) {
          await a.write(`m${sent++}`);
          await new Promise((r) => setTimeout(r, 250));
          if (sent > 400) break;
        }
      })();
      const first = await b.waitFor(isType("message", { from: "a", text: "m0" }), 10000);
      const firstS = (Date.now() - t0) / 1000;
      const pathA = await a.waitFor(
        isType("path", { peer: "b", path: "direct" }),
        60000,
        "a direct",
      );
      const directS = (Date.now() - t0) / 1000;
      await b.waitFor(isType("path", { peer: "a", path: "direct" }), 20000, "b direct");
      direct = true;
      await sending;
      await b.waitFor(isType("message", { from: "a", text: `m${sent - 1}` }), 30000);
      assert.deepEqual(
        texts(b, "a"),
        Array.from({ length: sent }, (_, i) => `m${i}`),
        "exactly once, in order",
      );
      const natA = await a.waitFor(isType("nat"), 20000, "a's NAT report");
      const natB = await b.waitFor(isType("nat"), 20000, "b's NAT report");
      // One server address, a second port: a port-restricted NAT keeps its port towards both,
      // which RFC 5780 alone cannot tell from address-dependent mapping.
      assert.equal(natA.mapping, "unknown", JSON.stringify(natA));
      assert.equal(natB.mapping, "address-and-port-dependent", JSON.stringify(natB));
      assert.ok(first);
      console.log(
        `birthday: first message ${firstS.toFixed(2)} s, direct after ${directS.toFixed(2)} s ` +
          `at ${pathA.addr}; ${sent} messages across the switch`,
      );
    } finally {
      await h.cleanup();
      await lab.down();
    }
  },
);
