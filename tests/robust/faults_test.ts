/**
 * Faults at the edges:
 * (a) the socket: sends that fail, throw or are late, receives that fail, under a real
 *     PeerHost on loopback (tests/robust/_faulty_udp.ts);
 * (b) clocks: the wall clock (handshake timestamps) stepping back and forth, a restart after it
 *     stepped back, and the monotonic `now` jumping forward (a suspend) and back;
 * (c) a process killed (SIGKILL) in the middle of writing the identity or known-peers file;
 * (d) loss, duplication and reordering aimed at handshakes and rekeys, on the in-memory network.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type AgentConfig, DEFAULT_AGENT_CONFIG } from "../../lib/peer/agent.ts";
import { DEFAULT_PATH_CONFIG } from "../../lib/peer/path.ts";
import type { PeerEvent } from "../../lib/peer/events.ts";
import { PeerHost } from "../../lib/net/peer_host.ts";
import { freePort, withHarness } from "../e2e/harness.ts";
import { type Faults, installFaultySockets } from "./_faulty_udp.ts";
import { decodeKnownPeers } from "../../lib/identity/known_peers.ts";
import { decodeIdentityFile, newIdentity, sign } from "../../lib/identity/identity.ts";
import { KnownPeersFile, loadOrCreateIdentity } from "../../lib/identity/store.ts";
import { addrKey } from "../../lib/wire/addr.ts";
import { MemNet, type Packet, SERVER } from "../_helpers/memnet.ts";
import { type Rule, Weather } from "./_weather.ts";
import { fingerprintOf, identityFile, KNOWN } from "./_writer.ts";
import { seeded } from "./_server_model.ts";

const A = { host: "198.51.100.1", port: 1000 };
const B = { host: "203.0.113.2", port: 2000 };

/** A [0, 1) source from a seed, for the weather. */
function unit(seed: number): () => number {
  const r = seeded(seed);
  return () => {
    const b = r(4);
    return ((b[0]! << 24 | b[1]! << 16 | b[2]! << 8 | b[3]!) >>> 0) / 2 ** 32;
  };
}

/** Chat both ways through `step(ms)`; returns what each side sent, in order. */
function chat(
  net: MemNet,
  step: (ms: number) => void,
  opts: { ms: number; every: number; tag: string },
): { alice: string[]; bob: string[] } {
  const sent = { alice: [] as string[], bob: [] as string[] };
  for (let t = 0, i = 0; t < opts.ms; t += opts.every, i++) {
    const who = i % 2 ? "bob" : "alice";
    const text = `${opts.tag}-${who}-${i}`;
    sent[who].push(text);
    net.msg(who, who === "alice" ? "bob" : "alice", text);
    step(opts.every);
  }
  return sent;
}

/** Each text arrived exactly once, in the order sent, and nothing else arrived. */
function exactlyOnce(net: MemNet, sent: { alice: string[]; bob: string[] }, why: string): void {
  assert.deepEqual(net.texts("bob"), sent.alice, `bob got alice's messages once, in order ${why}`);
  assert.deepEqual(net.texts("alice"), sent.bob, `alice got bob's messages once, in order ${why}`);
}

const undelivered = (net: MemNet, name: string) =>
  net.events.get(name)!.filter((e) => e.type === "undelivered").length;

// ---- (d) loss, duplication and reordering aimed at handshakes and rekeys ------------------------

/** Rekey every 2 s (a hard limit at 6 s), retried each second: many handshakes in a minute. */
const REKEY: Partial<AgentConfig> = {
  secure: { rekeyAfterMs: 2000, rejectAfterMs: 6000, rekeyRetryMs: 1000 },
};

interface WeatherCase {
  name: string;
  /** Peer-to-peer traffic blocked: handshakes and chat go through the relay. */
  relay?: boolean;
  rule: (r: () => number) => Rule;
}

const isHandshake = (kind: string) => kind === "hello" || kind === "hello_ack";

/** Datagrams within this long after a HELLO count as "around a rekey". */
const AROUND_MS = 300;

/** Within AROUND_MS after each HELLO: 30% lost, 30% duplicated, the rest held back 0-300 ms. */
function aroundRekey(r: () => number): Rule {
  let lastHello = -Infinity;
  return (_, kind, now) => {
    if (kind === "hello") lastHello = now;
    if (kind === "server" || now - lastHello > AROUND_MS) return {};
    const x = r();
    if (x < 0.3) return { drop: true };
    if (x < 0.6) return { delays: [0, r() * 200] };
    return { delays: [r() * 300] };
  };
}

const weatherCases: WeatherCase[] = [
  {
    name: "half the handshake datagrams lost",
    rule: (r) => (_, kind) => ({ drop: isHandshake(kind) && r() < 0.5 }),
  },
  {
    name: "every handshake datagram duplicated, copies late",
    rule: (r) => (_, kind) =>
      isHandshake(kind) ? { delays: [0, 1 + r() * 300, 1 + r() * 600] } : {},
  },
  {
    name: "handshake datagrams held back 0-400 ms (reordered)",
    rule: (r) => (_, kind) => (isHandshake(kind) ? { delays: [r() * 400] } : {}),
  },
  { name: "everything around a rekey lost, duplicated or reordered", rule: aroundRekey },
  { name: "the same, relayed", relay: true, rule: aroundRekey },
];

for (const c of weatherCases) {
  for (const seed of [1, 2, 3]) {
    Deno.test(`faults (d): ${c.name}: chat exactly once across rekeys (seed ${seed})`, () => {
      const net = new MemNet();
      net.add("alice", REKEY, A);
      net.add("bob", REKEY, B);
      const base = c.rule(unit(seed));
      const viaServer = (p: Packet) =>
        addrKey(p.to) === addrKey(SERVER) || addrKey(p.from) === addrKey(SERVER);
      const rule: Rule = c.relay
        ? (p, kind, now) => (viaServer(p) ? base(p, kind, now) : { drop: true })
        : base;
      const w = new Weather(net, rule);
      w.run(c.relay ? 9000 : 1500);
      const sent = chat(net, (ms) => w.run(ms), { ms: 40_000, every: 250, tag: c.name });
      w.clear();
      w.run(40_000);
      const counts = Object.fromEntries(w.counts);
      // The weather did hit handshakes, and there were rekeys to hit.
      assert.ok(
        Object.keys(counts).some((k) => k.startsWith("hello")),
        `handshakes were hit: ${JSON.stringify(counts)}`,
      );
      exactlyOnce(net, sent, JSON.stringify(counts));
      assert.equal(undelivered(net, "alice") + undelivered(net, "bob"), 0, "nothing given up");
      assert.deepEqual(net.fatals, []);
    });
  }
}

// ---- (b) clocks ---------------------------------------------------------------------------------

Deno.test("faults (b): the wall clock stepping back an hour, then a year ahead and back, does not stop rekeys", () => {
  let offset = 0;
  const wall = () => 1_700_000_000_000 + offset + net.now;
  const net = new MemNet();
  net.add("alice", { ...REKEY, wall }, A);
  net.add("bob", { ...REKEY, wall }, B);
  net.advance(1500);
  const sent1 = chat(net, (ms) => net.advance(ms), { ms: 6000, every: 300, tag: "before" });
  offset = -3_600_000;
  const sent2 = chat(net, (ms) => net.advance(ms), { ms: 10_000, every: 300, tag: "back" });
  offset = 365 * 86_400_000;
  const sent3 = chat(net, (ms) => net.advance(ms), { ms: 6000, every: 300, tag: "ahead" });
  offset = 0;
  const sent4 = chat(net, (ms) => net.advance(ms), { ms: 10_000, every: 300, tag: "again" });
  net.advance(5000);
  const all = {
    alice: [...sent1.alice, ...sent2.alice, ...sent3.alice, ...sent4.alice],
    bob: [...sent1.bob, ...sent2.bob, ...sent3.bob, ...sent4.bob],
  };
  exactlyOnce(net, all, "");
  for (const n of ["alice", "bob"]) {
    assert.equal(net.agent(n).stats().secure_stale_init ?? 0, 0, `${n} refused no init as stale`);
  }
});

Deno.test(
  "faults (b): a peer restarted with its wall clock set back (it ran a day ahead before) gets " +
    "its own handshakes answered: direct again, and its rekeys complete",
  () => {
    // Alice's clock ran a day ahead; bob saw her handshakes with those timestamps. She fixes
    // the clock and restarts (same identity, new session id, new port).
    let aliceWall = 1_700_000_000_000 + 86_400_000;
    const net = new MemNet();
    const me = newIdentity();
    const identity = {
      key: me.edPublic,
      sign: (m: Uint8Array) => sign(me, m),
      staticKey: { publicKey: me.xPublic, privateKey: me.xSecret },
    };
    net.add("alice", { ...REKEY, identity, wall: () => aliceWall + net.now }, A);
    net.add("bob", { ...REKEY, wall: () => 1_700_000_000_000 + net.now }, B);
    net.advance(1500);
    const before = chat(net, (ms) => net.advance(ms), { ms: 5000, every: 300, tag: "before" });
    exactlyOnce(net, before, "before the restart");
    assert.equal(net.agent("alice").peers()[0]?.path, "direct");
    // The old alice leaves; the new one starts at another port with the right time.
    net.call("alice", (out) => net.agent("alice").leave(out));
    net.flush();
    aliceWall = 1_700_000_000_000;
    net.add("alice", { ...REKEY, identity, wall: () => aliceWall + net.now }, { ...A, port: 1001 });
    net.advance(10_000); // a LAN try and a whole punch window
    const t0 = net.texts("bob").length;
    const sent = chat(net, (ms) => net.advance(ms), { ms: 12_000, every: 300, tag: "later" });
    net.advance(3000);
    // Chat goes on (bob's own handshakes would give a session even if hers were refused)...
    assert.deepEqual(net.texts("bob").slice(t0), sent.alice, "bob gets what alice sends");
    assert.deepEqual(net.texts("alice"), sent.bob, "alice gets what bob sends");
    const stale = net.agent("bob").stats().secure_stale_init ?? 0;
    // ...and her own inits, stamped earlier than the ones bob saw from her key the day before,
    // are answered too: otherwise her probes go unanswered (she stays relayed while bob has a
    // direct path to her) and her own rekeys never complete.
    assert.equal(
      net.agent("alice").peers()[0]?.path,
      "direct",
      `alice's path to bob, with ${stale} of her inits refused by bob as stale`,
    );
    assert.equal(stale, 0, "bob refused none of the restarted alice's inits as stale");
  },
);

Deno.test(
  "faults (b): the monotonic clock jumping 10 minutes ahead (a suspend): both are timed out " +
    "and come back; nothing lost after it, nothing twice",
  () => {
    const net = new MemNet();
    net.add("alice", {}, A);
    net.add("bob", {}, B);
    net.advance(1500);
    const before = chat(net, (ms) => net.advance(ms), { ms: 3000, every: 300, tag: "before" });
    // In flight at the jump: sent, not yet acknowledged.
    net.msg("alice", "bob", "at the jump");
    net.now += 600_000;
    // Both are timed out at the server (one is told the other left), both register again.
    net.advance(20_000);
    const after = chat(net, (ms) => net.advance(ms), { ms: 6000, every: 300, tag: "after" });
    net.advance(10_000);
    const a = net.texts("bob"), b = net.texts("alice");
    assert.equal(new Set(a).size, a.length, `nothing twice at bob: ${a}`);
    assert.equal(new Set(b).size, b.length, `nothing twice at alice: ${b}`);
    for (const t of [...before.alice, ...after.alice]) assert.ok(a.includes(t), `bob got ${t}`);
    for (const t of [...before.bob, ...after.bob]) assert.ok(b.includes(t), `alice got ${t}`);
    const fate = net.events.get("alice")!.filter((e) =>
      (e.type === "delivered" || e.type === "undelivered") &&
      e.id.endsWith(`-${before.alice.length + 1}`)
    );
    assert.ok(a.includes("at the jump") || fate.some((e) => e.type === "undelivered"));
  },
);

Deno.test("faults (b): the monotonic clock stepping back 30 s does not wedge or duplicate", () => {
  const net = new MemNet();
  net.add("alice", REKEY, A);
  net.add("bob", REKEY, B);
  net.advance(1500);
  const before = chat(net, (ms) => net.advance(ms), { ms: 3000, every: 300, tag: "before" });
  net.now -= 30_000;
  const after = chat(net, (ms) => net.advance(ms), { ms: 10_000, every: 300, tag: "after" });
  net.advance(40_000);
  exactlyOnce(net, {
    alice: [...before.alice, ...after.alice],
    bob: [...before.bob, ...after.bob],
  }, "across the step back");
});

// ---- (c) killed while writing ---------------------------------------------------------------

const WRITER = new URL("./_writer.ts", import.meta.url).pathname;

/** Reads "w N"/"d N" lines until `until` says stop; returns the last N of each. */
async function progress(
  lines: AsyncIterator<string>,
  until: (w: number, d: number) => boolean,
): Promise<{ w: number; d: number }> {
  let w = -1, d = -1;
  while (!until(w, d)) {
    const { value, done } = await lines.next();
    if (done) break;
    const [k, n] = value.split(" ");
    if (k === "w") w = Number(n);
    if (k === "d") d = Number(n);
  }
  return { w, d };
}

async function* splitLines(s: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

/** Spawns the writer, kills it with SIGKILL at a random point of its N-th write, reports. */
async function killMidWrite(mode: "known" | "identity", dir: string, r: () => number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", WRITER, mode, dir],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const lines = splitLines(child.stdout)[Symbol.asyncIterator]();
  const target = 1 + Math.floor(r() * 25);
  let seen = await progress(lines, (w) => w >= target);
  // Somewhere inside that write (each takes a few ms: two fsyncs and a rename).
  await new Promise((res) => setTimeout(res, r() * 4));
  child.kill("SIGKILL");
  const rest = await progress(lines, () => false);
  await child.status;
  seen = { w: Math.max(seen.w, rest.w), d: Math.max(seen.d, rest.d) };
  return seen;
}

const tmpLeft = async (dir: string) => {
  let n = 0;
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".tmp")) n++;
  return n;
};

Deno.test({
  name: "faults (c): the known-peers file killed mid-save is the old table or the new, never torn",
  sanitizeResources: false,
  async fn() {
    const r = unit(42);
    let torn = 0, reads = 0, tmps = 0;
    for (let round = 0; round < 8; round++) {
      const dir = await Deno.makeTempDir({ prefix: "p2pchat-kill-" });
      try {
        const path = join(dir, KNOWN);
        // A reader beside the writer: every read must parse, whatever moment it catches.
        let reading = true;
        const reader = (async () => {
          while (reading) {
            try {
              const text = await Deno.readTextFile(path);
              reads++;
              if (!decodeKnownPeers(text).ok) torn++;
            } catch (e) {
              if (!(e instanceof Deno.errors.NotFound)) throw e;
            }
            await new Promise((res) => setTimeout(res, 0));
          }
        })();
        const { w, d } = await killMidWrite("known", dir, r);
        reading = false;
        await reader;
        const text = await Deno.readTextFile(path);
        const got = decodeKnownPeers(text);
        assert.ok(got.ok, `round ${round}: the file parses (${got.ok || got.reason})`);
        const keys = Object.keys(got.value.toJSON());
        // Old or new: the pins of saves 0..n, for n the last completed save or the one cut short.
        const n = keys.length - 1;
        assert.ok(
          n >= d && n <= w,
          `round ${round}: ${keys.length} pins, saves done ${d}, begun ${w}`,
        );
        for (let i = 0; i <= n; i++) assert.equal(got.value.get(`peer-${i}`), fingerprintOf(i));
        // And the real loader takes it.
        const f = await KnownPeersFile.open(path);
        assert.equal(f.get(`peer-${n}`), fingerprintOf(n));
        tmps += await tmpLeft(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
    assert.equal(torn, 0, `${torn} of ${reads} concurrent reads saw a torn file`);
    console.log(`known peers: 8 kills, ${reads} concurrent reads, ${tmps} temp files left behind`);
  },
});

Deno.test({
  name: "faults (c): an identity file killed mid-creation is absent or whole, never torn",
  sanitizeResources: false,
  async fn() {
    const r = unit(7);
    let tmps = 0;
    for (let round = 0; round < 8; round++) {
      const dir = await Deno.makeTempDir({ prefix: "p2pchat-kill-" });
      try {
        const { w, d } = await killMidWrite("identity", dir, r);
        for (let i = 0; i <= w; i++) {
          const path = join(dir, identityFile(i));
          let text: string;
          try {
            text = await Deno.readTextFile(path);
          } catch (e) {
            assert.ok(e instanceof Deno.errors.NotFound);
            assert.ok(i > d, `round ${round}: identity ${i} was done (${d}) but is missing`);
            continue;
          }
          const got = decodeIdentityFile(text);
          assert.ok(got.ok, `round ${round}: identity ${i} parses (${got.ok || got.reason})`);
          assert.equal((await Deno.stat(path)).mode! & 0o077, 0, "private");
          const loaded = await loadOrCreateIdentity(path);
          assert.equal(loaded.created, false);
        }
        tmps += await tmpLeft(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
    console.log(`identity: 8 kills, ${tmps} temp files left behind`);
  },
});

// ---- (a) the socket under the peer host ---------------------------------------------------------

interface Live {
  host: PeerHost;
  events: PeerEvent[];
  errors: string[];
}

/** A PeerHost for `name` on loopback, talking to the server at `port`, with fast timers. */
function liveHost(name: string, port: number): Live {
  const id = newIdentity();
  const events: PeerEvent[] = [];
  const errors: string[] = [];
  const host = new PeerHost(
    {
      bindHost: "127.0.0.1",
      port: 0,
      dropDirect: false,
      // The faults are injected into the runtime's sockets (Deno.listenDatagram).
      batched: false,
      // Nothing off loopback: no port mapping requests to a gateway.
      portmap: false,
      discovery: false,
      agent: {
        ...DEFAULT_AGENT_CONFIG,
        name,
        room: "lobby",
        server: { host: "127.0.0.1", port },
        identity: {
          key: id.edPublic,
          sign: (m) => sign(id, m),
          staticKey: { publicKey: id.xPublic, privateKey: id.xSecret },
        },
        keepaliveMs: 500,
        path: { ...DEFAULT_PATH_CONFIG, ackTimeoutMs: 300, punchWindowMs: 1500, keepaliveMs: 500 },
      },
    },
    (e) => events.push(e),
    (level, message) => {
      if (level === "warn") errors.push(message);
    },
  );
  host.start();
  return { host, events, errors };
}

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const texts = (l: Live) => l.events.flatMap((e) => e.type === "message" ? [e.text] : []);

interface SocketCase {
  name: string;
  /** Faults on both peers' sockets while the chat runs (`ms` from its start). */
  faults: (r: () => number, t: () => number) => Faults;
  /** How long the faults last, in ms from the first message. */
  ms: number;
  /** The peers lose each other for a while: messages may be reported undelivered. */
  mayGiveUp?: boolean;
  /** Faults on alice's socket only. */
  aliceOnly?: boolean;
}

const socketCases: SocketCase[] = [
  {
    name: "a third of the sends fail (the promise rejects)",
    ms: 3000,
    faults: (r) => ({ send: () => (r() < 0.33 ? "reject" : "ok") }),
  },
  {
    name: "sends are late by 0-300 ms (and so out of order)",
    ms: 3000,
    faults: (r) => ({ send: () => ({ delayMs: r() * 300 }) }),
  },
  {
    name: "every send fails for 1.5 s (shorter than the server's patience)",
    ms: 1500,
    faults: () => ({ send: () => "reject" }),
  },
  {
    name: "a fifth of the receive calls fail",
    ms: 3000,
    faults: (r) => ({ receive: () => (r() < 0.2 ? "reject" : "ok") }),
  },
  {
    name: "a fifth of the sends throw instead of rejecting",
    ms: 3000,
    faults: (r) => ({ send: () => (r() < 0.2 ? "throw" : "ok") }),
  },
  {
    name: "every send fails for 6 s (the server times both out and says so)",
    ms: 6000,
    mayGiveUp: true,
    faults: () => ({ send: () => "reject" }),
  },
  {
    name: "alice's sends all fail for 6 s: the server times her out and tells bob, not her " +
      "(then both must agree on where their sequence numbers are)",
    ms: 6000,
    mayGiveUp: true,
    aliceOnly: true,
    faults: () => ({ send: () => "reject" }),
  },
];

for (const c of socketCases) {
  Deno.test({
    name: `faults (a): ${c.name}: the peer host keeps going, chat arrives exactly once`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () =>
      withHarness(async (h) => {
        const port = freePort();
        const server = h.server(port, ["--keepalive", "0.5"]);
        await server.waitStderr(/listening on/);
        const sockets = installFaultySockets();
        // Uncaught errors from timers (a throw in the send path) would end the test process.
        const uncaught: string[] = [];
        const onError = (e: ErrorEvent) => {
          uncaught.push(String(e.error?.message ?? e.message));
          e.preventDefault();
        };
        globalThis.addEventListener("error", onError);
        const peers: Live[] = [];
        try {
          const alice = liveHost("alice", port);
          const bob = liveHost("bob", port);
          peers.push(alice, bob);
          await until("a path both ways", 15_000, () =>
            [alice, bob].every((p) =>
              p.events.some((e) => e.type === "path")
            ));
          const r = unit(c.name.length);
          const t0 = Date.now();
          const f = c.faults(r, () => Date.now() - t0);
          sockets.set(alice.host.localPort, f);
          if (!c.aliceOnly) sockets.set(bob.host.localPort, f);
          const sent = { alice: [] as string[], bob: [] as string[] };
          for (let i = 0; Date.now() - t0 < c.ms + 1000; i++) {
            if (Date.now() - t0 >= c.ms) {
              sockets.set(alice.host.localPort, null);
              sockets.set(bob.host.localPort, null);
            }
            const [from, to, who] = i % 2
              ? [bob, "alice", "bob"] as const
              : [alice, "bob", "alice"] as const;
            const text = `${who}-${i}`;
            sent[who].push(text);
            from.host.msg(to, text);
            await new Promise((res) => setTimeout(res, 200));
          }
          sockets.set(alice.host.localPort, null);
          sockets.set(bob.host.localPort, null);
          // Every message acknowledged or given up on (or, without faults, simply all there).
          await until("every message settled", 45_000, () =>
            (texts(bob).length === sent.alice.length && texts(alice).length === sent.bob.length) ||
            alice.host.pending + bob.host.pending === 0);
          assert.deepEqual(uncaught, [], "no uncaught errors");
          const why = JSON.stringify(sockets.counts);
          // The faults reached the sockets the peers use (not a socket layer beside them).
          const k = sockets.counts;
          assert.ok(k.reject + k.throw + k.delay + k.receive > 0, `faults injected: ${why}`);
          for (const [me, from] of [[bob, "alice"], [alice, "bob"]] as const) {
            const got = texts(me);
            const mine = sent[from];
            assert.equal(new Set(got).size, got.length, `nothing twice: ${got}`);
            const at = got.map((t) =>
              mine.indexOf(t)
            );
            assert.ok(
              at.every((i, k) =>
                i >= 0 && (k === 0 || i > at[k - 1]!)
              ),
              `in order: ${got}`,
            );
            const acked = (from === "alice" ? alice : bob).events.filter((e) =>
              e.type === "delivered"
            ).length;
            assert.ok(got.length >= acked, `${acked} acknowledged, ${got.length} shown (${why})`);
            if (!c.mayGiveUp) assert.deepEqual(got, mine, `everything arrived (${why})`);
          }
          // And the hosts still work afterwards, both ways.
          alice.host.msg("bob", "after");
          bob.host.msg("alice", "after");
          await until(
            "a message each way after the faults",
            10_000,
            () => texts(bob).includes("after") && texts(alice).includes("after"),
          ).catch(() => {});
          for (const [me, them] of [[alice, bob], [bob, alice]] as const) {
            const acked = them.events.filter((e) => e.type === "delivered").length;
            assert.ok(
              texts(me).includes("after"),
              `a message after the faults arrives (its sender saw ${acked} delivered, ` +
                `${texts(me).length} shown here)`,
            );
          }
        } finally {
          for (const p of peers) {
            await p.host.leave();
          }
          globalThis.removeEventListener("error", onError);
          sockets.restore();
        }
      }),
  });
}
