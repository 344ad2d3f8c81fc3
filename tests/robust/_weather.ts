/**
 * Bad weather for the in-memory network: a rule decides, per datagram, to drop it, duplicate
 * it or hold it back a while (reordering), using only MemNet's public face (its filter,
 * `deliver` and `server`). Held and duplicated datagrams are delivered by `run`, which steps
 * the clock in small slices so they come out at about the time they are due.
 */
import type { MemNet, Packet } from "../_helpers/memnet.ts";
import { SERVER } from "../_helpers/memnet.ts";
import type { ServerAction } from "../../lib/server/state.ts";
import { addrKey } from "../../lib/wire/addr.ts";
import { decode } from "../../lib/wire/codec.ts";

/** What happens to one datagram: dropped, or delivered `copies` times after `delays`. */
export interface Fate {
  drop?: boolean;
  /** Extra delay of each copy in ms; the default is one copy now ([0]). */
  delays?: number[];
}

export type Rule = (p: Packet, kind: string, now: number) => Fate;

/**
 * The kind of peer datagram `p` carries, relayed ones unwrapped: "hello", "hello_ack",
 * "sealed", or "server" (anything to or from the server that is not relayed peer traffic).
 */
export function kindOf(p: Packet): string {
  const d = decode(p.bytes);
  if (!d.ok) return "junk";
  const m = d.value;
  if (m.type === "relay" || m.type === "relayed") {
    const inner = decode(m.payload);
    return inner.ok ? inner.value.type : "junk";
  }
  if (addrKey(p.to) === addrKey(SERVER) || addrKey(p.from) === addrKey(SERVER)) return "server";
  return m.type;
}

export class Weather {
  private held: { at: number; p: Packet }[] = [];
  /** Datagrams the rule dropped, duplicated (extra copies) and delayed, by kind. */
  readonly counts = new Map<string, number>();

  constructor(private net: MemNet, private rule: Rule) {
    net.filter = (p) => this.onPacket(p);
  }

  private count(k: string): void {
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }

  /** MemNet's filter: true lets the datagram through now; others are held or dropped. */
  private onPacket(p: Packet): boolean {
    const kind = kindOf(p);
    const fate = this.rule(p, kind, this.net.now);
    if (fate.drop) {
      this.count(`${kind} dropped`);
      return false;
    }
    const delays = fate.delays ?? [0];
    let now = false;
    for (const d of delays) {
      if (d <= 0 && !now) {
        now = true;
        continue;
      }
      this.held.push({ at: this.net.now + Math.max(0, d), p });
    }
    if (delays.length > 1) this.count(`${kind} duplicated`);
    if (!now) this.count(`${kind} delayed`);
    return now;
  }

  /** Delivers a held datagram, bypassing the rule (it already had its fate). */
  private release(p: Packet): void {
    if (addrKey(p.to) === addrKey(SERVER)) {
      const out: ServerAction[] = [];
      this.net.server.handle(p.bytes, p.from, this.net.now, out);
      for (const a of out) {
        if (a.type !== "send") continue;
        const q = { from: SERVER, to: a.to, bytes: a.bytes };
        if (this.onPacket(q)) this.toAgent(q);
      }
      return;
    }
    this.toAgent(p);
  }

  private toAgent(p: Packet): void {
    for (const [name, at] of this.net.hosts) {
      if (addrKey(at) === addrKey(p.to)) return this.net.deliver(name, p.bytes, p.from);
    }
  }

  /** Advances `ms` in slices of `slice` ms, delivering held datagrams as they come due. */
  run(ms: number, slice = 10): void {
    const end = this.net.now + ms;
    while (this.net.now < end) {
      this.net.advance(Math.min(slice, end - this.net.now));
      const due = this.held.filter((h) => h.at <= this.net.now);
      this.held = this.held.filter((h) => h.at > this.net.now);
      for (const h of due) this.release(h.p);
      this.net.flush();
    }
  }

  /** Fair weather from now on (what is held still comes out with `run`). */
  clear(): void {
    this.rule = () => ({});
  }
}
