/**
 * The discovery machine against simulated NATs and servers (tests/nat/_sim.ts), fake clock:
 * every mapping, filtering and allocation outcome, what stays "unknown" when the server offers
 * less, loss, and the time a run takes.
 */
import assert from "node:assert/strict";
import { type NatSpec, PUBLIC_IP, SERVER, type ServerKind, simulate } from "./_sim.ts";
import {
  MAIN,
  type NatAction,
  NatDiscovery,
  type NatReport,
  TIMEOUT_MS,
} from "../../lib/nat/discovery.ts";
import { bindingRequest, bindingResponse } from "../../lib/stun/binding.ts";
import { decodeStun } from "../../lib/stun/codec.ts";

const EIM = "endpoint-independent", ADM = "address-dependent", APDM = "address-and-port-dependent";
const U = "unknown";

const cone = (filtering: NatSpec["filtering"], hairpin = false): NatSpec => ({
  mapping: EIM,
  filtering,
  allocation: "preserving",
  hairpin,
});
const symmetric = (allocation: NatSpec["allocation"], hairpin = false): NatSpec => ({
  mapping: APDM,
  filtering: APDM,
  allocation,
  hairpin,
});

type Want = Pick<NatReport, "mapping" | "filtering" | "allocation" | "hairpin">;

const cases: {
  name: string;
  nat: NatSpec | "none";
  server: ServerKind;
  want: Want;
  natted?: boolean;
  guess?: boolean;
  loseFirst?: boolean;
}[] = [
  // A full RFC 5780 server: everything is decided.
  {
    name: "no NAT",
    nat: "none",
    server: "full",
    natted: false,
    want: { mapping: EIM, filtering: EIM, allocation: "preserving", hairpin: true },
  },
  {
    name: "full cone",
    nat: cone(EIM),
    server: "full",
    natted: true,
    want: { mapping: EIM, filtering: EIM, allocation: "preserving", hairpin: false },
  },
  {
    name: "restricted cone, hairpinning",
    nat: cone(ADM, true),
    server: "full",
    want: { mapping: EIM, filtering: ADM, allocation: "preserving", hairpin: true },
  },
  {
    name: "port-restricted cone",
    nat: cone(APDM),
    server: "full",
    want: { mapping: EIM, filtering: APDM, allocation: "preserving", hairpin: false },
  },
  {
    name: "symmetric, random ports",
    nat: symmetric("random"),
    server: "full",
    want: { mapping: APDM, filtering: APDM, allocation: "random", hairpin: false },
  },
  {
    name: "symmetric, sequential ports, hairpinning",
    nat: symmetric("sequential", true),
    server: "full",
    want: { mapping: APDM, filtering: APDM, allocation: "sequential", hairpin: true },
  },
  {
    name: "address-dependent mapping and filtering",
    nat: { mapping: ADM, filtering: ADM, allocation: "random", hairpin: false },
    server: "full",
    want: { mapping: ADM, filtering: ADM, allocation: "random", hairpin: false },
  },
  {
    name: "cone that does not keep ports (random)",
    nat: { mapping: EIM, filtering: APDM, allocation: "random", hairpin: false },
    server: "full",
    want: { mapping: EIM, filtering: APDM, allocation: "random", hairpin: false },
  },
  {
    name: "cone that hands out ports in sequence",
    nat: { mapping: EIM, filtering: EIM, allocation: "sequential", hairpin: false },
    server: "full",
    want: { mapping: EIM, filtering: EIM, allocation: "sequential", hairpin: false },
  },
  {
    name: "symmetric, sequential, first copy of every datagram lost",
    nat: symmetric("sequential"),
    server: "full",
    loseFirst: true,
    want: { mapping: APDM, filtering: APDM, allocation: "sequential", hairpin: false },
  },
  // Only a second port (a p2pchat server without --alt-host).
  {
    name: "second port only: port-restricted",
    nat: cone(APDM),
    server: "port",
    want: { mapping: U, filtering: APDM, allocation: "preserving", hairpin: false },
  },
  {
    name: "second port only: full cone",
    nat: cone(EIM),
    server: "port",
    want: { mapping: U, filtering: U, allocation: "preserving", hairpin: false },
  },
  {
    name: "second port only: restricted",
    nat: cone(ADM),
    server: "port",
    want: { mapping: U, filtering: U, allocation: "preserving", hairpin: false },
  },
  {
    name: "second port only: symmetric (the port change shows)",
    nat: symmetric("random"),
    server: "port",
    want: { mapping: APDM, filtering: APDM, allocation: "random", hairpin: false },
  },
  {
    name: "second port only: no NAT",
    nat: "none",
    server: "port",
    natted: false,
    want: { mapping: EIM, filtering: U, allocation: "preserving", hairpin: true },
  },
  {
    name: "second port, but a plain STUN server is not guessed at (--stun)",
    nat: symmetric("random"),
    server: "port",
    guess: false,
    want: { mapping: U, filtering: U, allocation: "random", hairpin: false },
  },
  // Servers that cannot help.
  {
    name: "one socket: symmetric",
    nat: symmetric("random"),
    server: "primary",
    want: { mapping: U, filtering: U, allocation: "random", hairpin: false },
  },
  {
    name: "an old server answering CHANGE-REQUEST from where it was asked",
    nat: cone(APDM),
    server: "ignores-change",
    want: { mapping: U, filtering: U, allocation: "preserving", hairpin: false },
  },
  {
    name: "no answer at all",
    nat: cone(EIM),
    server: "silent",
    want: { mapping: U, filtering: U, allocation: U, hairpin: U },
  },
];

for (const c of cases) {
  Deno.test(`discovery: ${c.name}`, () => {
    const { report: r, elapsedMs } = simulate({
      nat: c.nat,
      server: c.server,
      loseFirst: c.loseFirst,
      config: c.guess === undefined ? {} : { guessAltPort: c.guess },
    });
    assert.deepEqual(
      { mapping: r.mapping, filtering: r.filtering, allocation: r.allocation, hairpin: r.hairpin },
      c.want,
      `notes: ${r.notes.join("; ")}`,
    );
    assert.equal(r.udp, c.server !== "silent");
    if (c.natted !== undefined) assert.equal(r.natted, c.natted);
    const undecided = Object.values(c.want).includes(U) && c.server !== "silent";
    if (undecided) assert.ok(r.notes.length > 0, "an unknown comes with a note");
    if (r.udp) {
      assert.equal(r.public?.host, c.nat === "none" ? "192.0.2.5" : PUBLIC_IP);
      assert.equal(r.rttMs, 40, "RTT: two 20 ms legs");
    }
    // Time-bounded: one timeout plus the round trip before the second round starts; with
    // loss, the second round starts later, but before the first round's timeout.
    const bound = c.loseFirst ? 2 * TIMEOUT_MS : TIMEOUT_MS + 100;
    assert.ok(elapsedMs <= bound, `took ${elapsedMs} ms`);
  });
}

Deno.test("discovery: the server's offer is reported", () => {
  const full = simulate({ nat: cone(EIM), server: "full" }).report.server;
  assert.deepEqual(full, {
    primary: SERVER,
    other: { host: "198.51.100.3", port: 3479 },
    secondPort: 3479,
  });
  const port = simulate({ nat: cone(EIM), server: "port" }).report.server;
  assert.deepEqual(port, { primary: SERVER, other: null, secondPort: 3479 });
});

Deno.test("discovery: done early when everything answers, after one timeout when not", () => {
  const open = simulate({ nat: "none", server: "full" });
  assert.ok(open.elapsedMs < 200, `everything answered: ${open.elapsedMs} ms`);
  const strict = simulate({ nat: cone(APDM), server: "full" });
  assert.ok(strict.elapsedMs >= TIMEOUT_MS, "a filtered answer is waited for until the timeout");
  const short = simulate({ nat: cone(APDM), server: "full", config: { timeoutMs: 300 } });
  assert.ok(short.elapsedMs <= 400, `--timeout 0.3: ${short.elapsedMs} ms`);
  assert.equal(short.report.filtering, APDM);
});

Deno.test("discovery: each request is sent at most four times", () => {
  const silent = simulate({ nat: cone(EIM), server: "silent" });
  // primary, guess_port, filter_base, change_both, change_port, extra: 6 requests x 4.
  assert.equal(silent.sent, 24);
});

/** Drives the machine by hand: start, feed one answer, and watch what it does. */
Deno.test("discovery machine: actions, socket checks and deadlines", () => {
  const ids: Uint8Array[] = [];
  let n = 0;
  const m = new NatDiscovery({
    server: SERVER,
    guessAltPort: false,
    random: (k) => {
      const b = new Uint8Array(k).fill(++n);
      ids.push(b);
      return b;
    },
  });
  const first = m.start(0);
  assert.deepEqual(first.filter((a) => a.type === "open_socket").map((a) => a.socket), [0, 1, 2]);
  const sends = first.filter((a): a is Extract<NatAction, { type: "send" }> => a.type === "send");
  assert.deepEqual(sends.map((a) => a.socket), [0, 1, 1, 1, 2]);
  assert.deepEqual(m.start(0), [], "start is once");
  assert.equal(m.nextDeadline(), TIMEOUT_MS / 6);
  // The answer to the main socket's request, delivered on the wrong socket: ignored.
  const req = decodeStun(sends[0]!.bytes);
  assert.ok(req.ok);
  const answer = bindingResponse(req.value, { host: PUBLIC_IP, port: 50000 });
  assert.deepEqual(m.handle(answer, SERVER, 1, 5), []);
  // On the right socket: the hairpin request goes out to the mapped address.
  const out = m.handle(answer, SERVER, MAIN, 5);
  assert.deepEqual(
    out.map((a) => a.type === "send" && [a.socket, a.to.port]),
    [[2, 50000]],
  );
  // A resend of the same answer changes nothing.
  assert.deepEqual(m.handle(answer, SERVER, MAIN, 6), []);
  // Retransmits at 1/6, 1/3, 2/3 of the timeout, then the end.
  const resent = m.tick(TIMEOUT_MS / 6).filter((a) => a.type === "send").length;
  assert.equal(resent, 4, "the four unanswered requests of the first round");
  const end = m.tick(TIMEOUT_MS + 5);
  const done = end.find((a) => a.type === "done");
  assert.ok(done && done.type === "done");
  assert.equal(done.report.public?.port, 50000);
  assert.equal(done.report.hairpin, false);
  assert.equal(m.nextDeadline(), null);
  assert.equal(m.done, true);
  // Junk and requests of strangers are ignored.
  assert.deepEqual(m.handle(new Uint8Array(30), SERVER, 0, 2000), []);
  assert.deepEqual(m.handle(bindingRequest(new Uint8Array(12)), SERVER, 0, 2000), []);
});

Deno.test("discovery: junk among the answers (random, cut, changed ids and bytes) changes no verdict", () => {
  for (const c of cases) {
    const spec = { nat: c.nat, server: c.server, loseFirst: c.loseFirst };
    const clean = simulate(spec).report;
    const noisy = simulate({ ...spec, junk: 5 }).report;
    const pick = (r: NatReport) => ({
      udp: r.udp,
      public: r.public,
      mapping: r.mapping,
      filtering: r.filtering,
      allocation: r.allocation,
      hairpin: r.hairpin,
    });
    assert.deepEqual(pick(noisy), pick(clean), c.name);
  }
});
