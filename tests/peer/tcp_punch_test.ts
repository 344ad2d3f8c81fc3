/** TCP hole punching's schedule (lib/peer/tcp_punch.ts), driven by a fake clock. */
import assert from "node:assert/strict";
import {
  DEFAULT_TCP_PUNCH_CONFIG,
  TcpPunch,
  type TcpPunchAction,
  type TcpPunchConfig,
  tcpTargets,
} from "../../lib/peer/tcp_punch.ts";
import type { Member } from "../../lib/wire/codec.ts";

const member = (pub: number, locals: number[]): Member => ({
  id: "0011223344556677",
  name: "b",
  key: new Uint8Array(32),
  public: { host: "203.0.113.11", port: pub },
  locals: locals.map((port) => ({ host: "10.0.2.10", port })),
});

const cases: { name: string; m: Member; max: number; want: number[] }[] = [
  { name: "cone NAT: one port (UDP port kept)", m: member(40000, [40000]), max: 2, want: [40000] },
  {
    name: "UDP port changed: local port first, then public",
    m: member(20001, [40000, 40000]),
    max: 2,
    want: [40000, 20001],
  },
  { name: "capped", m: member(20001, [40000]), max: 1, want: [40000] },
  { name: "no locals: the public port", m: member(40000, []), max: 2, want: [40000] },
];
for (const c of cases) {
  Deno.test(`tcpTargets: ${c.name}`, () => {
    const t = tcpTargets(c.m, c.max);
    assert.deepEqual(t, c.want.map((port) => ({ host: "203.0.113.11", port, tcp: true })));
  });
}

const CFG: TcpPunchConfig = { ...DEFAULT_TCP_PUNCH_CONFIG, maxConnects: 4 };
const T1 = { host: "203.0.113.11", port: 40000, tcp: true as const };
const T2 = { host: "203.0.113.11", port: 20001, tcp: true as const };

function attempt(targets = [T1], cfg = CFG, now = 0) {
  let via = 100;
  const t = new TcpPunch(targets, 40000, cfg, now, () => ++via);
  const out: TcpPunchAction[] = [];
  t.start(out);
  return { t, out };
}

Deno.test("tcp punch: connects to every target from our port at once", () => {
  const { t, out } = attempt([T1, T2]);
  assert.deepEqual(out, [
    { type: "open", via: 101, localPort: 40000, to: T1 },
    { type: "open", via: 102, localPort: 40000, to: T2 },
  ]);
  assert.ok(t.owns(101) && t.owns(102) && !t.owns(0) && !t.owns(103));
  assert.equal(t.nextDeadline(), CFG.windowMs, "nothing due before the window ends");
});

Deno.test("tcp punch: an open connection is checked at once, then every checkMs", () => {
  const { t } = attempt();
  const out: TcpPunchAction[] = [];
  t.onOpen(101, 500, out);
  assert.deepEqual(out, [{ type: "check", via: 101, to: T1 }]);
  t.onOpen(101, 600, out);
  assert.equal(out.length, 1, "a second open report changes nothing");
  assert.equal(t.nextDeadline(), 500 + CFG.checkMs);
  out.length = 0;
  t.tick(500 + CFG.checkMs - 1, out);
  assert.deepEqual(out, []);
  t.tick(500 + CFG.checkMs, out);
  assert.deepEqual(out, [{ type: "check", via: 101, to: T1 }]);
});

Deno.test("tcp punch: a failed connect is retried after retryMs, within the budget", () => {
  const { t } = attempt();
  const out: TcpPunchAction[] = [];
  let now = 0;
  let via = 101;
  for (let i = 1; i < CFG.maxConnects; i++) {
    now += 100;
    t.onClosed(via, now);
    assert.equal(t.nextDeadline(), now + CFG.retryMs);
    t.tick(now + CFG.retryMs - 1, out);
    assert.deepEqual(out, []);
    now += CFG.retryMs;
    t.tick(now, out);
    assert.deepEqual(out, [{ type: "open", via: ++via, localPort: 40000, to: T1 }]);
    out.length = 0;
  }
  assert.equal(t.tries, CFG.maxConnects);
  t.onClosed(via, now);
  assert.equal(t.nextDeadline(), CFG.windowMs, "budget spent: only the window's end is left");
  t.tick(CFG.windowMs - 1, out);
  assert.deepEqual(out, []);
});

Deno.test("tcp punch: no retry that would start after the window", () => {
  const { t } = attempt();
  t.onClosed(101, CFG.windowMs - CFG.retryMs);
  assert.equal(t.nextDeadline(), CFG.windowMs);
});

Deno.test("tcp punch: the window's end closes every connection and the attempt", () => {
  const { t } = attempt([T1, T2]);
  const out: TcpPunchAction[] = [];
  t.onOpen(102, 10, out);
  out.length = 0;
  t.tick(CFG.windowMs, out);
  assert.deepEqual(out, [{ type: "close", via: 101 }, { type: "close", via: 102 }]);
  assert.equal(t.active, false);
  assert.equal(t.nextDeadline(), null);
  out.length = 0;
  t.tick(CFG.windowMs + 5000, out);
  t.onOpen(101, CFG.windowMs + 5000, out);
  assert.deepEqual(out, [], "nothing after the end");
});

Deno.test("tcp punch: the winner is kept, the others close; release closes the winner", () => {
  const { t } = attempt([T1, T2]);
  const out: TcpPunchAction[] = [];
  t.onOpen(102, 10, out);
  out.length = 0;
  t.won(102, out);
  assert.deepEqual(out, [{ type: "close", via: 101 }]);
  assert.equal(t.active, false);
  assert.equal(t.keptVia, 102);
  assert.ok(t.owns(102) && !t.owns(101));
  assert.equal(t.nextDeadline(), null, "a won attempt sets no deadline");
  out.length = 0;
  t.release(out);
  assert.deepEqual(out, [{ type: "close", via: 102 }]);
  assert.equal(t.keptVia, 0);
  assert.ok(!t.owns(102));
  out.length = 0;
  t.release(out);
  assert.deepEqual(out, [], "released once");
});

Deno.test("tcp punch: the winner closing by itself leaves nothing to release", () => {
  const { t } = attempt();
  const out: TcpPunchAction[] = [];
  t.onOpen(101, 10, out);
  t.won(101, out);
  t.onClosed(101, 20);
  out.length = 0;
  t.release(out);
  assert.deepEqual(out, []);
  assert.equal(t.nextDeadline(), null, "no retry once over");
});

Deno.test("tcp punch: stop closes what is open and ends the attempt", () => {
  const { t } = attempt([T1, T2]);
  const out: TcpPunchAction[] = [];
  t.onClosed(101, 10);
  t.stop(out);
  assert.deepEqual(out, [{ type: "close", via: 102 }]);
  assert.equal(t.nextDeadline(), null, "the pending retry is dropped");
});

Deno.test("tcp punch: no targets at a loopback, unspecified or multicast public address", () => {
  const m = (host: string) => ({
    id: "b".repeat(16),
    name: "b",
    public: { host, port: 5000 },
    locals: [{ host: "10.0.0.2", port: 4000 }],
    key: new Uint8Array(32),
  });
  for (const host of ["127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "::", "ff02::1"]) {
    assert.deepEqual(tcpTargets(m(host), 2), [], host);
  }
  assert.equal(tcpTargets(m("203.0.113.5"), 2).length, 2);
  assert.equal(tcpTargets(m("2001:db8::5"), 2).length, 2);
});
