/** The UDP/WebSocket choice towards the server, driven by a clock, without sockets. */
import assert from "node:assert/strict";
import {
  DEFAULT_SERVER_LINK_CONFIG,
  type LinkAction,
  type ServerLinkConfig,
  ServerLinkMachine,
} from "../../lib/peer/server_link.ts";

function make(cfg: Partial<ServerLinkConfig> = {}) {
  const out: LinkAction[] = [];
  const m = new ServerLinkMachine({ ...DEFAULT_SERVER_LINK_CONFIG, ...cfg }, 0, out);
  return { m, out };
}

/** Ticks at every deadline up to `until`, collecting actions. */
function runTo(m: ServerLinkMachine, from: number, until: number, pending = false): LinkAction[] {
  const acts: LinkAction[] = [];
  let now = from;
  for (let i = 0; i < 1000; i++) {
    const at = m.nextDeadline(pending);
    if (at === null || at > until) break;
    assert.ok(at >= now, `deadline ${at} is in the past (now ${now})`);
    now = at;
    m.tick(now, pending, acts);
    assert.notEqual(m.nextDeadline(pending), now, "a deadline the machine does not move past");
  }
  return acts;
}

const types = (a: LinkAction[]) => a.map((x) => x.type);

Deno.test("auto: UDP that answers keeps us on UDP; no WebSocket is opened", () => {
  const { m, out } = make();
  assert.deepEqual(out, []);
  m.onUdpRequest(10);
  m.onUdpFromServer(30, true, out);
  assert.deepEqual(runTo(m, 30, 60_000), []);
  assert.equal(m.transport, "udp");
});

Deno.test("auto: no UDP answer within fallbackMs opens the WebSocket, then switches once open", () => {
  const { m } = make();
  m.onUdpRequest(0);
  assert.deepEqual(runTo(m, 0, 1499), []);
  const acts = runTo(m, 0, 1500);
  assert.deepEqual(types(acts), ["open_ws"]);
  assert.equal(m.transport, "ws");
  assert.equal(m.wsOpen, false);
  const open: LinkAction[] = [];
  m.onWsOpen(1600, open);
  assert.deepEqual(open, [{
    type: "switched",
    to: "ws",
    lost: false,
    why: "no answer from the server over UDP",
  }]);
});

Deno.test("auto: on the WebSocket, UDP is probed every udpRetryMs; two answers move us back", () => {
  const { m } = make();
  runTo(m, 0, 1500);
  m.onWsOpen(1600, []);
  const probes = runTo(m, 1600, 1500 + 35_000);
  assert.deepEqual(types(probes), ["udp_probe", "udp_probe", "udp_probe"]);
  const again: LinkAction[] = [];
  m.onUdpFromServer(39_990, false, again);
  assert.deepEqual(types(again), ["udp_probe"], "one answer: ask once more at once");
  assert.equal(m.transport, "ws");
  const back: LinkAction[] = [];
  m.onUdpFromServer(40_000, false, back);
  assert.equal(m.transport, "udp");
  assert.deepEqual(back, [{ type: "switched", to: "udp", lost: false, why: "UDP answers again" }]);
  // The WebSocket stays a while for what is still on its way, then closes.
  assert.deepEqual(runTo(m, 40_000, 40_000 + 2999), []);
  assert.deepEqual(types(runTo(m, 40_000, 43_000)), ["close_ws"]);
});

Deno.test("auto: a keepalive unanswered starts probes; all unanswered means UDP is lost", () => {
  const { m } = make();
  m.onUdpFromServer(100, true, []);
  m.onUdpRequest(15_000);
  // answerMs later: the first probe; five more, probeGapMs apart; then the move, 3.1 s after
  // the keepalive.
  assert.deepEqual(types(runTo(m, 15_000, 18_099)), Array(6).fill("udp_probe"));
  assert.deepEqual(types(runTo(m, 18_099, 18_100)), ["open_ws"]);
  const open: LinkAction[] = [];
  m.onWsOpen(18_200, open);
  assert.deepEqual(open, [{
    type: "switched",
    to: "ws",
    lost: true,
    why: "the server stopped answering over UDP",
  }]);
});

Deno.test("auto: an answer to a probe ends the probes and keeps UDP", () => {
  const { m } = make();
  m.onUdpFromServer(100, true, []);
  m.onUdpRequest(15_000);
  assert.deepEqual(types(runTo(m, 15_000, 16_000)), ["udp_probe"]);
  m.onUdpFromServer(16_050, false, []);
  assert.deepEqual(runTo(m, 16_050, 60_000), []);
  assert.equal(m.transport, "udp");
});

Deno.test("auto: messages in flight and UDP silent for silenceMs also start probes", () => {
  const { m } = make();
  m.onUdpFromServer(100, true, []);
  m.onUdpAny(5000);
  // Nothing pending: silence is normal for an idle peer.
  assert.deepEqual(runTo(m, 5000, 20_000, false), []);
  const acts = runTo(m, 5000, 7000, true);
  assert.deepEqual(types(acts), ["udp_probe"]);
});

Deno.test("auto: a WebSocket that fails to open is retried with growing pauses", () => {
  const { m } = make();
  assert.deepEqual(types(runTo(m, 0, 1500)), ["open_ws"]);
  m.onWsClosed(1600);
  assert.deepEqual(types(runTo(m, 1600, 2600)), ["open_ws"]);
  m.onWsClosed(2700);
  assert.deepEqual(runTo(m, 2700, 4699), []);
  assert.deepEqual(types(runTo(m, 2700, 4700)), ["open_ws"]);
});

Deno.test("ws: the WebSocket from the start, UDP never probed", () => {
  const { m, out } = make({ mode: "ws" });
  assert.deepEqual(types(out), ["open_ws"]);
  assert.equal(m.transport, "ws");
  const open: LinkAction[] = [];
  m.onWsOpen(50, open);
  assert.deepEqual(types(open), ["switched"]);
  assert.deepEqual(runTo(m, 50, 120_000), []);
  // A WebSocket that closes is reopened; the reopened one needs a new registration too.
  m.onWsClosed(200);
  assert.deepEqual(types(runTo(m, 200, 1200)), ["open_ws"]);
  const again: LinkAction[] = [];
  m.onWsOpen(1300, again);
  assert.deepEqual(types(again), ["switched"]);
});

Deno.test("auto: a WebSocket that never opens leaves UDP in use and probed, never stranded", () => {
  const { m } = make();
  assert.deepEqual(types(runTo(m, 0, 1500)), ["open_ws"]);
  assert.equal(m.transport, "ws");
  assert.equal(m.sendOver, "udp", "until the WebSocket is open, server traffic goes over UDP");
  // It hangs while connecting: given up at openTimeoutMs, reopened later; UDP probed meanwhile.
  const acts = runTo(m, 1500, 1500 + 12_000);
  assert.ok(types(acts).includes("udp_probe"), JSON.stringify(acts));
  assert.deepEqual(types(acts).filter((t) => t !== "udp_probe"), ["close_ws", "open_ws"]);
  // An authentic server message over UDP moves us back at once.
  const back: LinkAction[] = [];
  m.onUdpFromServer(14_000, true, back);
  assert.equal(m.transport, "udp");
  assert.deepEqual(types(back), ["switched"]);
  // The opening WebSocket is not needed any more.
  assert.deepEqual(types(runTo(m, 14_000, 18_000)), ["close_ws"]);
});

Deno.test("auto: a WebSocket that opens and drops at once is reopened with growing pauses", () => {
  const { m } = make();
  runTo(m, 0, 1500);
  let now = 1500;
  const pauses: number[] = [];
  for (let i = 0; i < 4; i++) {
    m.onWsOpen(now + 10, []);
    m.onWsClosed(now + 20);
    const acts: LinkAction[] = [];
    let t = now + 20;
    while (!acts.some((a) => a.type === "open_ws")) {
      t = m.nextDeadline(false)!;
      m.tick(t, false, acts);
    }
    pauses.push(t - (now + 20));
    now = t;
  }
  assert.deepEqual(pauses, [1000, 2000, 4000, 8000], "never heard over it: no reset");
  // Once the server answers over it, the next drop is reopened after the shortest pause.
  m.onWsOpen(now + 10, []);
  m.onWsHeard();
  m.onWsClosed(now + 20);
  assert.equal(m.nextDeadline(false), now + 20 + 1000);
});

Deno.test("auto: each time UDP is lost again, the WebSocket waits longer before probing it", () => {
  const { m } = make();
  m.onUdpFromServer(0, true, []);
  let now = 0;
  const gaps: number[] = [];
  for (let i = 0; i < 3; i++) {
    // UDP lost: a keepalive unanswered, every probe unanswered (3.1 s in all).
    m.onUdpRequest(now + 100);
    runTo(m, now + 100, now + 3200);
    assert.equal(m.transport, "ws");
    m.onWsOpen(now + 3300, []);
    const probe: LinkAction[] = [];
    const at = m.nextDeadline(false)!;
    m.tick(at, false, probe);
    assert.deepEqual(types(probe), ["udp_probe"]);
    gaps.push(at - (now + 3200));
    // Two answers: back on UDP (the WebSocket closes after its grace).
    m.onUdpFromServer(at + 10, false, []);
    m.onUdpFromServer(at + 20, false, []);
    assert.equal(m.transport, "udp");
    now = at + 20;
    runTo(m, now, now + 3000);
    now += 3000;
  }
  assert.deepEqual(gaps, [20_000, 40_000, 80_000]);
});

/** On the WebSocket (open), then moved back to UDP by two probe answers at `at`. */
function backOnUdp(at: number) {
  const { m } = make();
  runTo(m, 0, 1500);
  m.onWsOpen(1600, []);
  m.onUdpFromServer(at, false, []);
  m.onUdpFromServer(at + 10, false, []);
  assert.equal(m.transport, "udp");
  return m;
}

Deno.test("auto: a network that lets only STUN through: back on the WebSocket within stuckMs", () => {
  const m = backOnUdp(12_000);
  const acts: LinkAction[] = [];
  // Registering again over UDP: a REGISTER every 300 ms, none answered.
  let now = 12_010;
  for (; now <= 12_010 + 3000; now += 300) {
    m.onUdpRequest(now);
    acts.push(...runTo(m, now - 300, now));
    // Whenever a probe goes out, the server answers it (STUN gets through).
    if (acts.at(-1)?.type === "udp_probe") m.onUdpFromServer(now + 5, false, acts);
  }
  acts.push(...runTo(m, now - 300, now + 1000));
  assert.equal(m.transport, "ws");
  assert.deepEqual(acts.filter((a) => a.type === "switched"), [{
    type: "switched",
    to: "ws",
    lost: true,
    why: "the server answers STUN over UDP but nothing else gets through",
  }]);
  // Lost again: the next try of UDP waits twice as long (20 s, not 10 s).
  const t = now + 1000;
  assert.deepEqual(types(runTo(m, t, t + 18_000)), []);
  assert.deepEqual(types(runTo(m, t, t + 21_000)), ["udp_probe"]);
});

Deno.test("auto: requests lost on a lossy link, but one answered within stuckMs: UDP stays", () => {
  const m = backOnUdp(12_000);
  const acts: LinkAction[] = [];
  let now = 12_010;
  for (let i = 0; i < 9; i++, now += 300) {
    m.onUdpRequest(now);
    acts.push(...runTo(m, now - 300, now));
    if (acts.at(-1)?.type === "udp_probe") m.onUdpFromServer(now + 5, false, acts);
  }
  m.onUdpFromServer(now, true, acts); // the 9th REGISTER is answered
  acts.push(...runTo(m, now, now + 60_000));
  assert.equal(m.transport, "udp");
  assert.equal(acts.filter((a) => a.type === "switched").length, 0);
});

Deno.test("auto: one keepalive lost while STUN probes are answered is not 'only STUN'", () => {
  const { m } = make();
  m.onUdpFromServer(100, true, []);
  const acts: LinkAction[] = [];
  for (let t = 15_000; t <= 60_000; t += 15_000) {
    m.onUdpRequest(t); // keepalives; the first is lost, the rest answered
    acts.push(...runTo(m, t, t + 1000));
    if (acts.at(-1)?.type === "udp_probe") m.onUdpFromServer(t + 1005, false, acts);
    if (t > 15_000) m.onUdpFromServer(t + 20, true, acts);
    acts.push(...runTo(m, t + 1005, t + 14_999));
  }
  assert.equal(m.transport, "udp");
  assert.equal(acts.filter((a) => a.type === "switched").length, 0);
});

Deno.test("auto: messages pending while a probe was answered and a request waits: no deadline left behind", () => {
  const { m } = make();
  m.onUdpFromServer(100, true, []);
  m.onUdpAny(14_000);
  m.onUdpRequest(15_000);
  const acts = runTo(m, 15_000, 16_000, true);
  assert.deepEqual(types(acts), ["udp_probe"]);
  m.onUdpFromServer(16_010, false, acts);
  // runTo fails on a deadline the machine does not move past. Nothing more is heard: the
  // silence (messages pending) starts probes again, and their silence moves us on.
  const later = runTo(m, 16_010, 30_000, true);
  assert.deepEqual(types(later), [...Array(6).fill("udp_probe"), "open_ws"]);
});

Deno.test("auto: UDP that dies after one probe was answered is found out by the next request's probes", () => {
  const { m } = make();
  m.onUdpFromServer(100, true, []);
  m.onUdpRequest(15_000); // lost
  const acts = runTo(m, 15_000, 16_000);
  m.onUdpFromServer(16_010, false, acts); // the probe answered: UDP still works
  // UDP dies now. The next keepalive goes unanswered, and so do the probes it starts.
  m.onUdpRequest(30_000);
  acts.push(...runTo(m, 16_010, 34_000));
  const open: LinkAction[] = [];
  m.onWsOpen(34_000, open);
  assert.equal(m.transport, "ws");
  assert.deepEqual(open, [{
    type: "switched",
    to: "ws",
    lost: true,
    why: "the server stopped answering over UDP",
  }]);
});

Deno.test("auto: requests sent while on the WebSocket do not count against UDP once back", () => {
  const { m } = make();
  runTo(m, 0, 1500); // on the WebSocket, not open yet: server traffic still goes over UDP
  for (let t = 1500; t < 11_000; t += 300) m.onUdpRequest(t);
  m.onWsOpen(11_000, []);
  m.onUdpFromServer(11_600, false, []);
  m.onUdpFromServer(11_610, false, []);
  assert.equal(m.transport, "udp");
  m.onUdpRequest(11_620); // the REGISTER from UDP, answered a moment later
  const acts = runTo(m, 11_610, 11_700);
  assert.deepEqual(acts.filter((a) => a.type === "switched"), []);
  m.onUdpFromServer(11_700, true, acts);
  acts.push(...runTo(m, 11_700, 60_000));
  assert.equal(m.transport, "udp");
});
