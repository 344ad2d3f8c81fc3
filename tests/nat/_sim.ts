/**
 * A simulated network for the NAT discovery machine: a NAT of any RFC 4787 behaviour in front
 * of the client's sockets, and a STUN server answering with the real lib/server/stun.ts logic
 * (or a broken one). Virtual time jumps to the next delivery or deadline; nothing sleeps.
 */
import { type Addr, addrKey } from "../../lib/wire/addr.ts";
import { toHex } from "../../lib/wire/bytes.ts";
import type { NatMapping } from "../../lib/wire/codec.ts";
import {
  type DiscoveryConfig,
  type NatAction,
  NatDiscovery,
  type NatReport,
} from "../../lib/nat/discovery.ts";
import { answerStun, type StunLayout, type StunSocket } from "../../lib/server/stun.ts";
import { bindingResponse } from "../../lib/stun/binding.ts";
import { decodeStun } from "../../lib/stun/codec.ts";

export type Behaviour = Exclude<NatMapping, "unknown">;

export interface NatSpec {
  mapping: Behaviour;
  filtering: Behaviour;
  allocation: "preserving" | "sequential" | "random";
  hairpin: boolean;
}

/**
 * full: four sockets (RFC 5780); port: host:port and host:port+1; primary: one socket;
 * ignores-change: an old server that answers CHANGE-REQUEST from where it was asked, without
 * OTHER-ADDRESS; silent: nothing answers.
 */
export type ServerKind = "full" | "port" | "primary" | "ignores-change" | "silent";

export interface SimSpec {
  /** "none": the client has a public address of its own. */
  nat: NatSpec | "none";
  server: ServerKind;
  /** One-way delay, ms (default 20). */
  latencyMs?: number;
  /** Drop the first copy of every distinct datagram, both ways (retransmits get through). */
  loseFirst?: boolean;
  /**
   * Before each real datagram the client gets, this many junk ones from the same source: random
   * bytes, cut copies of it, and copies with a changed transaction id or a changed byte (seeded).
   */
  junk?: number;
  config?: Partial<DiscoveryConfig>;
}

export const SERVER: Addr = { host: "198.51.100.2", port: 3478 };
const ALT_HOST = "198.51.100.3";
export const PUBLIC_IP = "203.0.113.10";
/** The client's own address: private behind a NAT, public without. */
const LAN_IP = "10.0.0.5";
const OPEN_IP = "192.0.2.5";
const localPort = (socket: number) => 50000 + socket;

const LAYOUTS: Record<ServerKind, StunLayout> = {
  full: {
    sockets: [
      SERVER,
      { host: SERVER.host, port: SERVER.port + 1 },
      { host: ALT_HOST, port: SERVER.port },
      { host: ALT_HOST, port: SERVER.port + 1 },
    ],
  },
  port: { sockets: [SERVER, { host: SERVER.host, port: SERVER.port + 1 }, null, null] },
  primary: { sockets: [SERVER, null, null, null] },
  "ignores-change": { sockets: [SERVER, null, null, null] },
  silent: { sockets: [SERVER, null, null, null] },
};

/** A deterministic generator (xorshift32), for transaction ids and random ports. */
export function seeded(seed: number): (n: number) => Uint8Array {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  };
}

/** A NAT: mappings by behaviour, filters by behaviour, ports by allocation policy. */
class Nat {
  private maps = new Map<string, number>();
  private owners = new Map<number, { port: number; peers: Set<string>; hosts: Set<string> }>();
  private next = 20000;
  private rand = seeded(99);

  constructor(private spec: NatSpec) {}

  /** The public port an internal port gets towards `to`. */
  out(internal: number, to: Addr): number {
    const key = this.spec.mapping === "endpoint-independent"
      ? `${internal}`
      : this.spec.mapping === "address-dependent"
      ? `${internal}|${to.host}`
      : `${internal}|${addrKey(to)}`;
    let pub = this.maps.get(key);
    if (pub === undefined) {
      pub = this.allocate(internal);
      this.maps.set(key, pub);
      this.owners.set(pub, { port: internal, peers: new Set(), hosts: new Set() });
    }
    const o = this.owners.get(pub)!;
    o.peers.add(addrKey(to));
    o.hosts.add(to.host);
    return pub;
  }

  private allocate(internal: number): number {
    const free = (p: number) => !this.owners.has(p);
    if (this.spec.allocation === "preserving" && free(internal)) return internal;
    if (this.spec.allocation === "sequential") {
      while (!free(this.next)) this.next++;
      return this.next++;
    }
    for (;;) {
      const b = this.rand(2);
      const p = 1024 + ((b[0]! << 8 | b[1]!) % 64512);
      if (free(p)) return p;
    }
  }

  /** The internal port a datagram from `from` to public port `pub` reaches, or null. */
  in(pub: number, from: Addr, hairpin = false): number | null {
    const o = this.owners.get(pub);
    if (!o) return null;
    if (hairpin) return this.spec.hairpin ? o.port : null;
    if (this.spec.filtering === "endpoint-independent") return o.port;
    if (this.spec.filtering === "address-dependent") return o.hosts.has(from.host) ? o.port : null;
    return o.peers.has(addrKey(from)) ? o.port : null;
  }
}

export interface SimResult {
  report: NatReport;
  /** Virtual ms from start to the done action. */
  elapsedMs: number;
  /** Datagrams the machine sent. */
  sent: number;
}

/** Runs one discovery in the simulated network and returns its report. */
export function simulate(spec: SimSpec): SimResult {
  const latency = spec.latencyMs ?? 20;
  const nat = spec.nat === "none" ? null : new Nat(spec.nat);
  const ownIp = nat ? LAN_IP : OPEN_IP;
  const layout = LAYOUTS[spec.server];
  const m = new NatDiscovery({
    server: SERVER,
    localHosts: [ownIp, "127.0.0.1"],
    random: seeded(7),
    ...spec.config,
  });
  const queue: { at: number; seq: number; fn: (now: number) => void }[] = [];
  let seq = 0;
  const later = (at: number, fn: (now: number) => void) => {
    queue.push({ at, seq: seq++, fn });
    queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
  };
  const seen = new Set<string>();
  const lost = (bytes: Uint8Array, dir: string) => {
    if (!spec.loseFirst) return false;
    const k = dir + toHex(bytes);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  };
  let report: NatReport | null = null;
  let doneAt = -1;
  let sent = 0;
  const junkRandom = seeded(99);
  const junkOf = (bytes: Uint8Array): Uint8Array[] => {
    const r = junkRandom(4);
    switch (r[0]! % 4) {
      case 0:
        return [junkRandom(r[1]! % 120)];
      case 1:
        return [bytes.slice(0, r[1]! % Math.max(1, bytes.length))];
      case 2: {
        const c = bytes.slice();
        if (c.length > 8) c[8 + (r[1]! % Math.min(12, c.length - 8))]! ^= 1 + (r[2]! % 255);
        return [c];
      }
      default: {
        const c = bytes.slice();
        if (c.length > 0) c[r[1]! % c.length]! ^= 1 + (r[2]! % 255);
        return [c];
      }
    }
  };
  const deliverToClient = (socket: number, bytes: Uint8Array, from: Addr, now: number) => {
    for (let i = 0; i < (spec.junk ?? 0); i++) {
      for (const j of junkOf(bytes)) apply(m.handle(j, from, socket, now), now);
    }
    apply(m.handle(bytes, from, socket, now), now);
  };
  /** A datagram arriving at the client side's public face: through the NAT, or straight in. */
  const inbound = (to: Addr, from: Addr, bytes: Uint8Array, now: number, hairpin = false) => {
    if (lost(bytes, `in${addrKey(from)}`)) return;
    if (!nat) {
      if (to.host !== ownIp) return;
      const socket = to.port - localPort(0);
      if (socket >= 0 && socket < 3) deliverToClient(socket, bytes, from, now);
      return;
    }
    if (to.host !== PUBLIC_IP) return;
    const internal = nat.in(to.port, from, hairpin);
    if (internal !== null) deliverToClient(internal - localPort(0), bytes, from, now);
  };
  const serverGets = (via: StunSocket, from: Addr, bytes: Uint8Array, now: number) => {
    if (spec.server === "silent") return;
    let socket: StunSocket = via;
    let answer: Uint8Array | null = null;
    if (spec.server === "ignores-change") {
      const d = decodeStun(bytes);
      if (d.ok && d.value.class === "request") answer = bindingResponse(d.value, from);
    } else {
      const a = answerStun(bytes, from, via, layout);
      if (a.ok) [socket, answer] = [a.socket, a.bytes];
    }
    const src = layout.sockets[socket];
    if (!answer || !src) return;
    const bytesOut = answer;
    later(now + latency, (t) => inbound(from, src, bytesOut, t));
  };
  const send = (socket: number, to: Addr, bytes: Uint8Array, now: number) => {
    sent++;
    const internal = localPort(socket);
    const pub: Addr = nat ? { host: PUBLIC_IP, port: nat.out(internal, to) } : {
      host: ownIp,
      port: internal,
    };
    if (lost(bytes, `out${socket}`)) return;
    const via = layout.sockets.findIndex((s) => s !== null && addrKey(s) === addrKey(to));
    if (via >= 0) {
      return later(now + latency, (t) => serverGets(via as StunSocket, pub, bytes, t));
    }
    // To our own public address: a hairpin through the NAT, or local delivery without one.
    if (to.host === PUBLIC_IP || to.host === ownIp) {
      later(now + 1, (t) => inbound(to, pub, bytes, t, true));
    }
  };
  const apply = (actions: NatAction[], now: number) => {
    for (const a of actions) {
      if (a.type === "open_socket") {
        m.opened(a.socket, { host: "0.0.0.0", port: localPort(a.socket) });
      } else if (a.type === "send") {
        send(a.socket, a.to, a.bytes, now);
      } else {
        report = a.report;
        doneAt = now;
      }
    }
  };
  apply(m.start(0), 0);
  let now = 0;
  while (!report && now < 60_000) {
    const deadline = m.nextDeadline();
    const event = queue[0]?.at ?? Infinity;
    const next = Math.min(deadline ?? Infinity, event);
    if (next === Infinity) break;
    now = Math.max(now, next);
    while (queue.length > 0 && queue[0]!.at <= now) queue.shift()!.fn(now);
    const d = m.nextDeadline();
    if (!report && d !== null && d <= now) apply(m.tick(now), now);
  }
  if (!report) throw new Error("Cannot finish the simulated discovery: no done action");
  return { report, elapsedMs: doneAt, sent };
}
