/**
 * The UDP/WebSocket choice on a lossy but working UDP: hours of simulated time (seeded, so the
 * same every run) with a registration's resends, keepalives every 15 s, messages always
 * pending, and each datagram lost at random each way. A move to the WebSocket there is a false
 * alarm; the defaults must make them rare, where the earlier two probes 1 s apart did not.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_SERVER_LINK_CONFIG,
  type LinkAction,
  type ServerLinkConfig,
  ServerLinkMachine,
} from "../../lib/peer/server_link.ts";

/** Linear congruential generator: the same sequence for the same seed. */
function rng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
}

/** Moves to the WebSocket in `hours` of a link losing `loss` each way (RTT 80 ms). */
function falseMoves(cfg: Partial<ServerLinkConfig>, loss: number, hours: number, seed = 1) {
  const rnd = rng(seed);
  const m = new ServerLinkMachine({ ...DEFAULT_SERVER_LINK_CONFIG, ...cfg }, 0, []);
  const queue: { at: number; f: (now: number) => void }[] = [];
  const later = (at: number, f: (now: number) => void) => queue.push({ at, f });
  const through = () => rnd() >= loss && rnd() >= loss; // there and back
  let registered = false, nextSend = 0, lastAck = 0, moves = 0;
  const act = (out: LinkAction[], now: number) => {
    for (const a of out) {
      if (a.type === "udp_probe" && through()) {
        later(now + 80, (t) => {
          const o: LinkAction[] = [];
          m.onUdpFromServer(t, false, o);
          act(o, t);
        });
      } else if (a.type === "open_ws") {
        later(now + 200, (t) => {
          const o: LinkAction[] = [];
          m.onWsOpen(t, o);
          act(o, t);
        });
      } else if (a.type === "switched") {
        if (a.to === "ws") moves++;
        registered = false; // a new transport: register again
        nextSend = now;
      }
    }
  };
  const send = (now: number) => {
    if (m.sendOver === "ws") {
      later(now + 80, (t) => {
        lastAck = t;
        registered = true;
      });
      return;
    }
    m.onUdpRequest(now);
    if (!through()) return;
    later(now + 80, (t) => {
      lastAck = t;
      registered = true;
      const o: LinkAction[] = [];
      m.onUdpFromServer(t, true, o);
      act(o, t);
    });
  };
  const end = hours * 3_600_000;
  for (let now = 0; now < end;) {
    queue.sort((a, b) => a.at - b.at);
    while (queue.length > 0 && queue[0]!.at <= now) queue.shift()!.f(now);
    // The registration's own timers: resends every 300 ms, keepalives every 15 s, and after
    // 45 s without an answer a new registration.
    if (registered && now - lastAck > 45_000) registered = false;
    if (now >= nextSend) {
      send(now);
      nextSend = now + (registered ? 15_000 : 300);
    }
    const d = m.nextDeadline(true);
    if (d !== null && d <= now) {
      const o: LinkAction[] = [];
      m.tick(now, true, o);
      act(o, now);
      const again = m.nextDeadline(true);
      assert.ok(again === null || again > now, `deadline ${again} not moved past ${now}`);
    }
    let next = Math.min(nextSend, queue.length > 0 ? Math.min(...queue.map((e) => e.at)) : end);
    const dl = m.nextDeadline(true);
    if (dl !== null) next = Math.min(next, dl);
    now = Math.max(now + 1, next);
  }
  return moves;
}

Deno.test("server link: 5% loss each way for 10 hours, never moved off a working UDP", () => {
  assert.equal(falseMoves({}, 0.05, 10), 0);
  // The earlier probes, for comparison: the same link, the same seed.
  const before = falseMoves({ probes: 2, probeGapMs: 1000 }, 0.05, 10);
  assert.ok(before >= 20, `two probes 1 s apart moved ${before} times`);
});

Deno.test("server link: 20% loss each way for 10 hours, false moves stay rare", () => {
  const now = falseMoves({}, 0.2, 10);
  const before = falseMoves({ probes: 2, probeGapMs: 1000 }, 0.2, 10);
  assert.ok(now <= 40, `${now} moves in 10 h`);
  assert.ok(before > now, `before ${before}, now ${now}`);
});
