/**
 * Bob's live heap under the soak's attack, in memory: alice, bob and the server on the
 * in-memory network (virtual time, no sockets), mallory (tests/robust/_soak.ts) flooding bob
 * at `--flood` datagrams per virtual second, chat both ways every 200 ms and name churn. Every
 * virtual minute it forces two full GCs and prints the heap in use: RSS grows with a lazy
 * collector (and committed but unused heap), so this is where a leak in lib/ would show.
 *
 *   deno run -A --v8-flags=--expose-gc tests/robust/heap_probe.ts [--minutes 10] [--flood 400]
 *     [--kinds all | junk,badmac,replay,relay,data,plain,connect,fresh,churn]
 *
 * The heap measured is this process's: all three machines and the network together.
 */
import { parseArgs } from "node:util";
import { MemNet, SERVER } from "../_helpers/memnet.ts";
import { type Addr, addrKey } from "../../lib/wire/addr.ts";
import { toHex } from "../../lib/wire/bytes.ts";
import { decode, encode, type Message, registerSigInput } from "../../lib/wire/codec.ts";
import { type Identity, newIdentity, sign } from "../../lib/identity/identity.ts";
import type { ServerAction } from "../../lib/server/state.ts";
import { KINDS, type Link, Mallory } from "./_soak.ts";

/** Mallory's flood kinds by name (see Mallory.flood); "churn" is the register/leave loop. */
const NAMES = ["junk", "badmac", "replay", "relay", "data", "data", "plain", "connect", "fresh"];

/** A fake member's address on the in-memory network: datagrams to it come here. */
class MemLink implements Link {
  onMessage: (m: Message, from: Addr) => void = () => {};
  constructor(private net: MemNet, readonly at: Addr, links: Map<string, MemLink>) {
    links.set(addrKey(at), this);
  }

  send(bytes: Uint8Array, to?: Addr): void {
    if (!to) return this.toServer(bytes);
    for (const [name, a] of this.net.hosts) {
      if (addrKey(a) === addrKey(to)) this.net.deliver(name, bytes, this.at);
    }
    this.net.flush();
  }

  toServer(bytes: Uint8Array): void {
    const out: ServerAction[] = [];
    this.net.server.handle(bytes, this.at, this.net.now, out);
    for (const a of out) if (a.type === "send") route(this.net, { from: SERVER, ...a });
    this.net.flush();
  }

  register(id: string, name: string, who: Identity) {
    const nonce = toHex(crypto.getRandomValues(new Uint8Array(8)));
    const m: Extract<Message, { type: "register" }> = {
      type: "register",
      id,
      nonce,
      name,
      room: "lobby",
      locals: [],
      key: who.edPublic,
      cookie: new Uint8Array(0),
      sig: new Uint8Array(0),
    };
    let got: Message | null = null;
    const was = this.onMessage;
    this.onMessage = (x, from) => {
      if ("nonce" in x && x.nonce === nonce) got = x;
      was(x, from);
    };
    try {
      this.toServer(encode(m));
      const c = got as Message | null;
      if (c?.type !== "cookie") return Promise.resolve("no cookie");
      const signed = { ...m, cookie: c.cookie };
      signed.sig = sign(who, registerSigInput(signed));
      this.toServer(encode(signed));
      const ok = got as Message | null;
      return Promise.resolve(ok?.type === "register_ok" ? ok : "refused");
    } finally {
      this.onMessage = was;
    }
  }
}

const links = new Map<string, MemLink>();

/** A datagram from the server: to a fake member, or to an agent. */
function route(net: MemNet, p: { from: Addr; to: Addr; bytes: Uint8Array }): void {
  const l = links.get(addrKey(p.to));
  if (l) {
    const d = decode(p.bytes);
    if (d.ok) l.onMessage(d.value, p.from);
    return;
  }
  for (const [name, a] of net.hosts) {
    if (addrKey(a) === addrKey(p.to)) net.deliver(name, p.bytes, p.from);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "10" },
      flood: { type: "string", default: "400" },
      kinds: { type: "string", default: "all" },
    },
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    console.error("heap_probe: run with --v8-flags=--expose-gc");
    Deno.exit(2);
  }
  const kinds = new Set(values.kinds!.split(","));
  const on = (k: string) => kinds.has("all") || kinds.has(k);
  const minutes = Number(values.minutes), perStep = Math.round(Number(values.flood) / 50);

  const net = new MemNet({ keepaliveMs: 1000 });
  net.add("alice", {}, { host: "198.51.100.1", port: 1000 });
  net.add("bob", {}, { host: "203.0.113.2", port: 2000 });
  net.advance(1500);
  // Datagrams the agents send to the fake members are theirs, not the network's.
  net.filter = (p) => {
    if (!links.has(addrKey(p.to))) return true;
    route(net, p);
    return false;
  };
  const mallory = new Mallory(
    new MemLink(net, { host: "192.0.2.50", port: 5000 }, links),
    () => net.now,
  );
  await mallory.join();
  mallory.freshInit();
  const churnLink = new MemLink(net, { host: "192.0.2.51", port: 5001 }, links);
  const churners = Array.from({ length: 6 }, (_, i) => ({ name: `churn${i}`, who: newIdentity() }));
  let live: { id: string; token: string } | null = null;
  let k = 0, n = 0, churned = 0;
  const first: number[] = [];
  for (let minute = 0;; minute++) {
    gc();
    gc();
    const mu = Deno.memoryUsage();
    const mib = (x: number) => (x / 1048576).toFixed(2);
    first.push(mu.heapUsed);
    console.log(
      `${minute} min: heap used ${mib(mu.heapUsed)} MiB (total ${mib(mu.heapTotal)}, external ` +
        `${mib(mu.external)}, rss ${mib(mu.rss)}); ${n} messages each way, ${churned} churn ` +
        `registrations, bob knows ${net.agent("bob").peers().length} peers`,
    );
    // What the test harness itself keeps: the network's log and the event lists.
    net.wire.length = 0;
    for (const e of net.events.values()) e.length = 0;
    if (minute === minutes) break;
    for (let step = 0; step < 3000; step++) { // 20 ms each
      for (let i = 0; i < perStep; i++) {
        const kind = KINDS[k++ % KINDS.length]!;
        if (on(NAMES[kind] ?? "fresh")) mallory.flood(kind);
      }
      if (step % 10 === 0) {
        net.msg("alice", "bob", `a-${n}`);
        net.msg("bob", "alice", `b-${n++}`);
      }
      if (step % 50 === 0) mallory.keepalive();
      if (step % 1500 === 0) mallory.freshInit();
      if (on("churn") && step % 125 === 0) {
        if (live) {
          churnLink.send(encode({ type: "leave", ...live }));
          live = null;
        } else {
          const c = churners[churned++ % churners.length]!;
          const id = toHex(crypto.getRandomValues(new Uint8Array(8)));
          const ok = await churnLink.register(id, c.name, c.who);
          if (typeof ok !== "string") live = { id, token: ok.token };
        }
      }
      net.advance(20);
    }
  }
  const mib = (x: number) => (x / 1048576).toFixed(2);
  console.log(
    `heap used after full GC: ${mib(first[0]!)} MiB at the start, ${mib(first[1] ?? NaN)} after ` +
      `a minute, ${mib(first[first.length - 1]!)} at the end; last minute ` +
      `${mib(first[first.length - 1]! - first[first.length - 2]!)} MiB`,
  );
  console.log(`bob's drops: ${JSON.stringify(net.agent("bob").stats())}`);
}
