/** IPv6 candidates in the path finder: global IPv6 locals give `direct`, and are dropped unanswered. */
import assert from "node:assert/strict";
import type { PathAction } from "../../lib/peer/path.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { bob, cfg, hellos, lan, machine as towards, paths, pub } from "./_path.ts";

const ula: Addr = { host: "fd00:1::20", port: 5000 };
const v6: Addr = { host: "2001:db8:2::10", port: 5000 };
const remote = bob([lan, ula, v6]);
const machine = () => towards(remote);
const to = (a: Addr) => (h: { to: Addr }) => h.to.host === a.host && h.to.port === a.port;

Deno.test("path v6: global IPv6 locals are probed at once beside IPv4; ULA is `lan`", () => {
  const m = machine();
  const first = hellos(m.start(0));
  for (const a of [lan, ula, v6, pub]) assert.ok(first.some(to(a)), `${a.host} probed first`);
  assert.equal(m.classify(ula), "lan");
  assert.equal(m.classify(lan), "lan");
  assert.equal(m.classify(v6), "direct", "a global IPv6 address is on the internet");
});

Deno.test("path v6: an answer from a global IPv6 local is `direct` and beats the relay", () => {
  const m = machine();
  m.start(0);
  m.tick(cfg.ackTimeoutMs); // punch window
  assert.deepEqual(paths(m.relayed()), [{ type: "path", kind: "relay", addr: null, rttMs: null }]);
  const h = hellos(m.tick(cfg.ackTimeoutMs + cfg.probeIntervalMs)).find(to(v6))!;
  assert.ok(h, "probed during the punch window");
  const r = m.onAck(v6, h.nonce, 650);
  assert.deepEqual(paths(r), [{ type: "path", kind: "direct", addr: v6, rttMs: 50 }]);
  assert.deepEqual(m.sendAddr, v6);
});

Deno.test("path v6: a direct IPv4 path found first is kept over a later IPv6 one", () => {
  const m = machine();
  const start = hellos(m.start(0));
  m.onAck(pub, start.find(to(pub))!.nonce, 10);
  assert.equal(m.kind, "direct");
  assert.deepEqual(paths(m.onAck(v6, start.find(to(v6))!.nonce, 12)), [], "direct ties: no change");
  assert.deepEqual(m.sendAddr, pub);
});

Deno.test("path v6: an unanswered global IPv6 local is dropped after a window, even when re-announced", () => {
  const m = machine();
  m.start(0);
  const end = cfg.ackTimeoutMs + cfg.punchWindowMs;
  let n = 0;
  for (let t = 0; t <= end; t += 50) n += hellos(m.tick(t)).filter(to(v6)).length;
  assert.ok(n > 5, `probed through the window (${n})`);
  // Announced again (the member moved, or asked to connect): still not probed.
  m.setMember({ ...remote });
  const later: PathAction[] = [...m.onConnectFwd({ ...remote }, end + 3 * cfg.punchWindowMs)];
  for (let t = end; t <= end + cfg.retryDirectMs + cfg.punchWindowMs; t += 50) {
    later.push(...m.tick(t));
  }
  assert.equal(hellos(later).filter(to(v6)).length, 0, "never again");
  assert.ok(hellos(later).some(to(lan)), "the IPv4 LAN address is still tried (cold)");
});
