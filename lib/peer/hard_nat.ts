/**
 * What the agent does about NATs classic punching cannot beat: it tells each peer what it knows
 * of its own NAT (sealed NAT_INFO, resent until confirmed), takes the peer's gateway-mapped
 * addresses as candidates, and runs birthday punching (lib/peer/birthday.ts) after a failed
 * punch window when one side is hard and the other easy. The agent owns the sockets and the
 * sealing; this module decides, through the small `HardNatHost` interface.
 */
import type { Addr } from "../wire/addr.ts";
import { equalText } from "../wire/bytes.ts";
import type { Id, Message, NatMapping } from "../wire/codec.ts";
import type { AgentAction } from "./actions.ts";
import { Birthday, type BirthdayAction, type BirthdayConfig, birthdayRole } from "./birthday.ts";
import type { PathAction } from "./path.ts";
import type { Remote } from "./roster.ts";

export interface HardNatConfig {
  birthday: BirthdayConfig;
  /** How often NAT_INFO is resent until the peer confirms it, and how many times at most. */
  natInfoRetryMs: number;
  natInfoTries: number;
  random: (n: number) => Uint8Array;
}

/** What HardNat needs of the agent. */
export interface HardNatHost {
  selfId(): Id;
  /** Seals `m` for the peer and sends it (to `to` from socket `via` when given). */
  toPeer(r: Remote, m: Message, now: number, to?: Addr | null, via?: number): void;
  pathActions(r: Remote, acts: PathAction[], now: number): void;
  push(a: AgentAction): void;
  log(level: "info", message: string): void;
  drop(reason: string): void;
  hasSession(r: Remote): boolean;
  remotes(): Iterable<Remote>;
  nonce(): string;
}

/** Attempts with one peer are counted over this long for `maxPerHour`. */
const HOUR_MS = 3_600_000;

export class HardNat {
  /** What we know of our own NAT (set by the host from discovery and port mapping). */
  private nat: { mapping: NatMapping; mapped: Addr[] } = { mapping: "unknown", mapped: [] };
  /** Names of extra sockets; 0 is the main socket. */
  private lastVia = 0;

  constructor(private cfg: HardNatConfig, private host: HardNatHost) {}

  /** Our NAT changed (discovery, port mapping): tell every peer again. */
  setNat(nat: { mapping: NatMapping; mapped: Addr[] }, now: number): void {
    this.nat = { mapping: nat.mapping, mapped: nat.mapped.slice() };
    for (const r of this.host.remotes()) {
      r.natAcked = false;
      r.natTries = 0;
      r.nextNatInfo = now;
      // Discovery ends after the first punch window: a pair that failed it may now qualify.
      if (r.punchFailed) this.maybeBirthday(r, now);
    }
  }

  get mapping(): NatMapping {
    return this.nat.mapping;
  }

  /** Called for each remote with a session, when the agent sends what is due. */
  flush(r: Remote, now: number): void {
    if (this.wantsNatInfo(r) && now >= r.nextNatInfo) this.sendNatInfo(r, now);
  }

  tick(r: Remote, now: number): void {
    const b = r.birthday;
    if (!b?.active) return;
    const acts: BirthdayAction[] = [];
    b.tick(now, acts);
    this.run(r, acts, now);
    if (!b.active && !r.path.sendAddr) {
      this.host.log("info", `birthday punching towards ${r.member.name} found no path; relaying`);
    }
  }

  nextDeadline(r: Remote): number | null {
    let at: number | null = null;
    if (this.host.hasSession(r) && this.wantsNatInfo(r)) at = r.nextNatInfo;
    const b = r.birthday?.active ? r.birthday.nextDeadline() : null;
    if (b !== null && (at === null || b < at)) at = b;
    return at;
  }

  onNatInfo(r: Remote, m: Extract<Message, { type: "nat_info" }>, now: number): void {
    const changed = r.nat?.mapping !== m.mapping;
    r.nat = { mapping: m.mapping, mapped: m.mapped };
    if (m.have) r.natAcked = true;
    // The peer lacks ours: answer at once (one answer per message it sends, never more).
    else this.sendNatInfo(r, now);
    this.host.pathActions(r, r.path.setMapped(m.mapped, now), now);
    if (changed && r.punchFailed) this.maybeBirthday(r, now);
  }

  /** A punch window ended without a path. */
  onPunchFailed(r: Remote, now: number): void {
    r.punchFailed = true;
    this.maybeBirthday(r, now);
  }

  /** Whether a PONG from `from` answers one of the easy side's birthday probes: its RTT if so. */
  birthdayAnswer(r: Remote, nonce: string, from: Addr, via: number, now: number): number | null {
    const b = r.birthday;
    if (!b?.active || !equalText(nonce, r.birthdayNonce) || via !== 0) return null;
    if (from.host !== r.member.public.host) return null;
    return now - (b.probedAt(from.port) ?? now);
  }

  /** A path came up or went: a running attempt ends, a birthday socket no longer used closes. */
  pathChanged(r: Remote, kind: string): void {
    const b = r.birthday;
    if (kind !== "relay" && b?.active) {
      const acts: BirthdayAction[] = [];
      if (b.owns(r.path.via)) {
        r.birthdayVia = r.path.via;
        b.won(r.path.via, acts);
      } else {
        b.stop(acts);
      }
      this.run(r, acts, 0);
    }
    if (kind !== "relay") r.punchFailed = false;
    if (r.birthdayVia !== 0 && r.path.via !== r.birthdayVia) this.closeVia(r);
  }

  /** The peer is gone: its attempt and sockets go too. */
  forget(r: Remote): void {
    if (r.birthday?.active) {
      const acts: BirthdayAction[] = [];
      r.birthday.stop(acts);
      this.run(r, acts, 0);
    }
    this.closeVia(r);
  }

  /** Birthday attempts so far, for /peers and tests. */
  attempts(): { peer: string; role: string; probes: number; active: boolean }[] {
    const out = [];
    for (const r of this.host.remotes()) {
      const b = r.birthday;
      if (b) out.push({ peer: r.member.name, role: b.role, probes: b.probes, active: b.active });
    }
    return out;
  }

  /** Resend NAT_INFO until the peer confirms it has ours (bounded). */
  private wantsNatInfo(r: Remote): boolean {
    return r.trusted && !r.natAcked && r.natTries < this.cfg.natInfoTries;
  }

  private sendNatInfo(r: Remote, now: number): void {
    r.natTries++;
    r.nextNatInfo = now + this.cfg.natInfoRetryMs;
    this.host.toPeer(r, {
      type: "nat_info",
      from: this.host.selfId(),
      to: r.member.id,
      have: r.nat !== null,
      mapping: this.nat.mapping,
      mapped: this.nat.mapped,
    }, now);
  }

  /** After a failed punch window: birthday punching if one side is hard and the other easy. */
  private maybeBirthday(r: Remote, now: number): void {
    const cfg = this.cfg.birthday;
    if (r.birthday?.active || !r.nat || r.path.sendAddr || !this.host.hasSession(r)) return;
    const role = birthdayRole(this.nat.mapping, r.nat.mapping);
    if (!role) return;
    // One hard attempt at a time over all peers: each holds `sockets` sockets open.
    if (role === "hard") {
      for (const o of this.host.remotes()) {
        if (o.birthday?.active && o.birthday.role === "hard") return;
      }
    }
    r.birthdayStarts = r.birthdayStarts.filter((t) => now - t < HOUR_MS);
    if (r.birthdayStarts.length >= cfg.maxPerHour) return this.host.drop("birthday_cap");
    r.birthdayStarts.push(now);
    r.birthdayNonce = this.host.nonce();
    const b = new Birthday(role, r.member.public, cfg, now, this.cfg.random, () => ++this.lastVia);
    r.birthday = b;
    this.host.log("info", `birthday punching towards ${r.member.name} (we are the ${role} side)`);
    const acts: BirthdayAction[] = [];
    b.start(acts);
    b.tick(now, acts);
    this.run(r, acts, now);
  }

  private run(r: Remote, acts: BirthdayAction[], now: number): void {
    for (const a of acts) {
      switch (a.type) {
        case "open":
          this.host.push({ type: "open_socket", via: a.via });
          break;
        case "close":
          this.host.push({ type: "close_socket", via: a.via });
          break;
        case "probe": {
          const ping: Message = {
            type: "ping",
            from: this.host.selfId(),
            to: r.member.id,
            nonce: r.birthdayNonce,
          };
          this.host.toPeer(r, ping, now, a.to, a.via);
          break;
        }
      }
    }
  }

  private closeVia(r: Remote): void {
    if (r.birthdayVia === 0) return;
    this.host.push({ type: "close_socket", via: r.birthdayVia });
    r.birthdayVia = 0;
  }
}
