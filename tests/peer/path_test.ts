import assert from "node:assert/strict";
import type { PathAction } from "../../lib/peer/path.ts";
import type { Addr } from "../../lib/wire/addr.ts";
import { bob, cfg, hellos, lan, machine, paths, pub } from "./_path.ts";

const remote = bob([lan]);

Deno.test("path: LAN-first hello, ACK from the LAN address gives `lan`", () => {
  const m = machine();
  const a = m.start(0);
  const toLan = hellos(a).find((h) => h.to.host === lan.host)!;
  assert.ok(toLan, "a hello goes to the LAN address");
  assert.ok(hellos(a).some((h) => h.to.host === pub.host), "and to the public address");
  const r = m.onAck(lan, toLan.nonce, 3);
  assert.deepEqual(paths(r), [{ type: "path", kind: "lan", addr: lan, rttMs: 3 }]);
  assert.equal(m.kind, "lan");
  assert.deepEqual(m.sendAddr, lan);
  // No server help is asked for once the LAN answered.
  assert.equal(m.tick(1000).some((x) => x.type === "connect"), false);
});

Deno.test("path: no ACK -> ask the server, punch, ACK on public gives `direct`", () => {
  const m = machine();
  m.start(0);
  assert.equal(m.tick(cfg.ackTimeoutMs - 1).some((x) => x.type === "connect"), false);
  const t = m.tick(cfg.ackTimeoutMs);
  assert.equal(t.filter((x) => x.type === "connect").length, 1, "one relayed handshake");
  // Punching probes all candidates, including predicted ports, repeatedly.
  const probes = hellos(m.tick(cfg.ackTimeoutMs + cfg.probeIntervalMs));
  assert.ok(probes.some((h) => h.to.port === pub.port + 1), "predicted port probed");
  const toPub = probes.find((h) => h.to.host === pub.host && h.to.port === pub.port)!;
  const r = m.onAck(pub, toPub.nonce, 700);
  assert.deepEqual(paths(r), [{ type: "path", kind: "direct", addr: pub, rttMs: 700 - 600 }]);
  assert.equal(m.kind, "direct");
});

Deno.test("path: ACK from another address than probed is ignored (no look-alike paths)", () => {
  const m = machine();
  const h = hellos(m.start(0))[0]!;
  assert.deepEqual(m.onAck({ host: "10.9.9.9", port: 1 }, h.nonce, 1), []);
  assert.deepEqual(m.onAck(h.to, "ffffffffffffffff", 1), [], "unknown nonce ignored");
  assert.equal(m.kind, "connecting");
});

Deno.test("path: nothing answers -> `relay` after the punch window, retried later", () => {
  const m = machine();
  m.start(0);
  let out: PathAction[] = [];
  for (let t = 0; t <= cfg.ackTimeoutMs + cfg.punchWindowMs; t += 50) out.push(...m.tick(t));
  assert.deepEqual(paths(out), [{ type: "path", kind: "relay", addr: null, rttMs: null }]);
  assert.equal(m.sendAddr, null);
  out = [];
  const t0 = cfg.ackTimeoutMs + cfg.punchWindowMs;
  for (let t = t0; t <= t0 + cfg.retryDirectMs; t += 50) out.push(...m.tick(t));
  assert.equal(out.filter((x) => x.type === "connect").length, 1, "tries direct again");
});

Deno.test("path: a hello from the peer is answered where it came from and probed back", () => {
  const m = machine();
  const seen: Addr = { host: "198.51.100.77", port: 61000 }; // peer-reflexive
  const r = m.onHello(seen, "0000000000000abc", 5);
  assert.deepEqual(r[0], { type: "ack", to: seen, nonce: "0000000000000abc", via: 0 });
  const back = hellos(r).find((h) => h.to.port === seen.port)!;
  assert.ok(back, "triggered check towards the reflexive address");
  m.onAck(seen, back.nonce, 9);
  assert.equal(m.kind, "direct");
  assert.deepEqual(m.sendAddr, seen);
});

Deno.test("path: a better path found later replaces the current one", () => {
  const m = machine();
  const a = hellos(m.start(0));
  const toPub = a.find((h) => h.to.host === pub.host)!;
  const toLan = a.find((h) => h.to.host === lan.host)!;
  m.onAck(pub, toPub.nonce, 5);
  assert.equal(m.kind, "direct");
  const r = m.onAck(lan, toLan.nonce, 6);
  assert.equal(m.kind, "lan");
  assert.equal(paths(r).length, 1);
  // A worse one later does not replace it.
  m.onAck(pub, toPub.nonce, 7);
  assert.equal(m.kind, "lan");
});

Deno.test("path: keepalives hold the path; 3 missed -> relay and re-handshake", () => {
  const m = machine();
  const h = hellos(m.start(0)).find((x) => x.to.host === lan.host)!;
  m.onAck(lan, h.nonce, 1);
  // Answer keepalives for a while: the path stays.
  for (let t = 1; t < 5000; t += 50) {
    for (const k of hellos(m.tick(t))) m.onAck(k.to, k.nonce, t + 1);
  }
  assert.equal(m.kind, "lan");
  // Then silence.
  const out: PathAction[] = [];
  for (let t = 5000; t < 5000 + 3 * cfg.keepaliveMs + 1200; t += 50) out.push(...m.tick(t));
  assert.deepEqual(paths(out)[0], { type: "path", kind: "relay", addr: null, rttMs: null });
  assert.ok(hellos(out).some((x) => x.to.host === lan.host), "re-handshakes LAN-first");
  assert.equal(m.sendAddr, null);
});

Deno.test("path: the server-forwarded handshake makes us punch at once", () => {
  const m = machine();
  const r = m.onConnectFwd(remote, 0);
  assert.ok(hellos(r).length >= 3);
  assert.equal(r.some((x) => x.type === "connect"), false, "no connect echo");
});

Deno.test("path: a candidate that never answered a whole window is probed once per later window", () => {
  const m = machine();
  m.start(0);
  const count = (from: number, to: number) => {
    let n = 0;
    for (let t = from; t < to; t += 50) {
      n += hellos(m.tick(t)).filter((h) => h.to.host === lan.host).length;
    }
    return n;
  };
  const first = count(0, cfg.ackTimeoutMs + cfg.punchWindowMs + 50);
  assert.ok(first >= 20, `the first window probes the LAN address steadily (${first})`);
  const t0 = cfg.ackTimeoutMs + cfg.punchWindowMs + 50;
  const second = count(t0, t0 + cfg.retryDirectMs + cfg.punchWindowMs + 50);
  assert.equal(second, 1, "the next window probes it once");
  // It answers after all: it is probed as usual again.
  const h = hellos(m.onHello(lan, "0000000000000def", t0 + 20_000)).find((x) =>
    x.to.host === lan.host
  )!;
  m.onAck(lan, h.nonce, t0 + 20_001);
  assert.equal(m.kind, "lan");
});

Deno.test("path: suspect() probes at once; unanswered within the check, the path goes", () => {
  const m = machine();
  const toLan = hellos(m.start(0)).find((h) => h.to.host === lan.host)!;
  m.onAck(lan, toLan.nonce, 4);
  const probe = hellos(m.suspect(100));
  assert.equal(probe.length, 1, "one probe now");
  assert.deepEqual(probe[0]!.to, lan);
  assert.deepEqual(m.suspect(200), [], "one check at a time");
  assert.ok(m.nextDeadline()! <= 1100, "the check ends after a second (rtt is small)");
  assert.deepEqual(paths(m.tick(1099)), []);
  assert.deepEqual(paths(m.tick(1100)), [{ type: "path", kind: "relay", addr: null, rttMs: null }]);
  assert.equal(m.sendAddr, null);
});

Deno.test("path: suspect() answered keeps the path; lost() drops it at once", () => {
  const m = machine();
  const toLan = hellos(m.start(0)).find((h) => h.to.host === lan.host)!;
  m.onAck(lan, toLan.nonce, 4);
  const probe = hellos(m.suspect(100))[0]!;
  m.onAck(lan, probe.nonce, 110);
  assert.deepEqual(paths(m.tick(1100)), []);
  assert.equal(m.kind, "lan");
  const gone = m.lost(1200);
  assert.deepEqual(paths(gone), [{ type: "path", kind: "relay", addr: null, rttMs: null }]);
  assert.ok(hellos(gone).length > 0, "and probes again");
  assert.deepEqual(m.lost(1300), [], "nothing to lose twice");
});
