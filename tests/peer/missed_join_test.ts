/**
 * A member that misses the server's PEER_JOINED (lost on a lossy link) still learns of the
 * newcomer: the newcomer's relayed handshake goes unanswered, so it sends a CONNECT every few
 * relayed hellos, and the server's CONNECT_FWD carries its member record.
 */
import assert from "node:assert/strict";
import { MemNet, SERVER } from "../_helpers/memnet.ts";
import { addrKey } from "../../lib/wire/addr.ts";
import { T } from "../../lib/wire/codec.ts";

for (const connects of [true, false]) {
  Deno.test(`missed PEER_JOINED: ${connects ? "learned through CONNECT_FWD" : "control"}`, () => {
    const net = new MemNet();
    net.add("a");
    net.advance(1000);
    let dropped = 0;
    let forwards = 0;
    // What would tell a of b: the PEER_JOINED, and the CONNECT_FWD of b's punch window (its
    // first CONNECT); in the control every CONNECT_FWD. Without the CONNECTs sent with relayed
    // hellos, the next CONNECT would come only with the next punch window (30 s later).
    net.filter = (p) => {
      if (addrKey(p.from) !== addrKey(SERVER) || addrKey(p.to) !== addrKey(net.hosts.get("a")!)) {
        return true;
      }
      const t = p.bytes[2];
      const first = t === T.CONNECT_FWD && forwards++ === 0;
      if (t === T.PEER_JOINED || first || (!connects && t === T.CONNECT_FWD)) {
        dropped++;
        return false;
      }
      return true;
    };
    // Direct paths fail too, so the handshake can only go through the relay.
    const inner = net.filter;
    net.filter = (p) =>
      inner(p) && (addrKey(p.to) === addrKey(SERVER) || addrKey(p.from) === addrKey(SERVER));
    net.add("b");
    net.advance(10_000);
    assert.ok(dropped >= 1, "a's PEER_JOINED was dropped");
    const knows = net.events.get("a")!.some((e) => e.type === "peer" && e.name === "b");
    assert.equal(knows, connects);
    if (!connects) return;
    net.say("b", "you missed me joining");
    net.advance(3000);
    assert.deepEqual(net.texts("a"), ["you missed me joining"]);
  });
}
