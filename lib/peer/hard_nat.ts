/**
 * What the agent does about NATs classic punching cannot beat: it tells each peer what it knows
 * of its own NAT (sealed NAT_INFO, resent until confirmed), takes the peer's gateway-mapped
 * addresses as candidates, and runs birthday punching (lib/peer/birthday.ts) after a failed
 * punch window when one side is hard and the other easy, and TCP punching
 * (lib/peer/tcp_punch.ts) after any failed punch window. The agent owns the sockets and the
 * sealing; this module decides, through the small `HardNatHost` interface.
 */
import type { Addr } from "../wire/addr.ts";
import { equalText } from "../wire/bytes.ts";
import type { Id, Message, NatMapping } from "../wire/codec.ts";
import type { AgentAction } from "./actions.ts";
import { Birthday, type BirthdayAction, type BirthdayConfig, birthdayRole } from "./birthday.ts";
import type { PathAction } from "./path.ts";
import type { Remote } from "./roster.ts";
import { TcpPunch, type TcpPunchAction, type TcpPunchConfig, tcpTargets } from "./tcp_punch.ts";

export interface HardNatConfig {
  birthday: BirthdayConfig;
  /** How often NAT_INFO is resent until the peer confirms it, and how many times at most. */
  natInfoRetryMs: number;
  natInfoTries: number;
  random: (n: number) => Uint8Array;
  /** TCP hole punching after a failed punch window (lib/peer/tcp_punch.ts); null: never. */
  tcpPunch: TcpPunchConfig | null;
  /** Our local addresses: TCP punching connects from their port, our UDP socket's. */
  locals: Addr[];
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

/** TCP punching attempts running at once, over all peers. */
export const MAX_TCP_ATTEMPTS = 4;

export class HardNat {
  /** What we know of our own NAT (set by the host from discovery and port mapping). */
  private nat: { mapping: NatMapping; mapped: Addr[] } = { mapping: "unknown", mapped: [] };
  /** Names of extra sockets; 0 is the main socket. */
  private lastVia = 0;
  /** TCP punching per peer: the current or last attempt, and when attempts started. */
  private tcp = new Map<Id, { attempt: TcpPunch | null; starts: number[] }>();

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
    const t = this.tcp.get(r.member.id)?.attempt;
    if (t?.active) {
      const acts: TcpPunchAction[] = [];
      t.tick(now, acts);
      this.runTcp(r, acts, now);
      if (!t.active && !r.path.sendAddr) {
        this.host.log("info", `TCP punching towards ${r.member.name} found no path`);
      }
    }
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
    const t = this.tcp.get(r.member.id)?.attempt;
    const tt = t?.active ? t.nextDeadline() : null;
    if (tt !== null && (at === null || tt < at)) at = tt;
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
    this.maybeTcp(r, now);
  }

  /** The host's news of a TCP connection: it came up, or failed or closed. */
  onTcp(via: number, state: "open" | "closed", now: number): void {
    for (const r of this.host.remotes()) {
      const t = this.tcp.get(r.member.id)?.attempt;
      if (!t?.owns(via)) continue;
      const acts: TcpPunchAction[] = [];
      if (state === "open") t.onOpen(via, now, acts);
      else {
        t.onClosed(via, now);
        // The connection carrying the path is gone: start over.
        if (r.path.via === via) this.host.pathActions(r, r.path.lost(now), now);
      }
      return this.runTcp(r, acts, now);
    }
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
    const t = this.tcp.get(r.member.id)?.attempt;
    if (t) {
      const acts: TcpPunchAction[] = [];
      if (kind !== "relay" && t.active) {
        if (t.owns(r.path.via)) t.won(r.path.via, acts);
        else t.stop(acts);
      }
      if (t.keptVia !== 0 && r.path.via !== t.keptVia) t.release(acts);
      this.runTcp(r, acts, 0);
    }
  }

  /** The peer is gone: its attempt and sockets go too. */
  forget(r: Remote): void {
    if (r.birthday?.active) {
      const acts: BirthdayAction[] = [];
      r.birthday.stop(acts);
      this.run(r, acts, 0);
    }
    this.closeVia(r);
    const t = this.tcp.get(r.member.id)?.attempt;
    if (t) {
      const acts: TcpPunchAction[] = [];
      t.stop(acts);
      t.release(acts);
      this.runTcp(r, acts, 0);
    }
    this.tcp.delete(r.member.id);
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

  /**
   * After a failed punch window: a simultaneous TCP open, from our UDP socket's port number
   * towards the ports the peer's TCP is likely mapped to (see tcpTargets). The peer's window
   * failed at about the same time, so it connects towards us at once too.
   */
  private maybeTcp(r: Remote, now: number): void {
    const cfg = this.cfg.tcpPunch;
    const localPort = this.cfg.locals[0]?.port ?? 0;
    if (!cfg || localPort === 0 || r.path.sendAddr) return;
    let t = this.tcp.get(r.member.id);
    if (t?.attempt?.active) return;
    // A network that blocks UDP fails the punch with every member at once: a few attempts at a
    // time, the others on a later failed window (every retryDirectMs), not sockets for a room.
    let running = 0;
    for (const x of this.tcp.values()) if (x.attempt?.active) running++;
    if (running >= MAX_TCP_ATTEMPTS) return this.host.drop("tcp_punch_busy");
    const targets = tcpTargets(r.member, cfg.maxTargets);
    if (targets.length === 0) return;
    if (!t) this.tcp.set(r.member.id, t = { attempt: null, starts: [] });
    t.starts = t.starts.filter((s) => now - s < HOUR_MS);
    if (t.starts.length >= cfg.maxPerHour) return this.host.drop("tcp_punch_cap");
    t.starts.push(now);
    const acts: TcpPunchAction[] = [];
    // A winner of an earlier attempt that no longer carries the path closes now.
    t.attempt?.release(acts);
    t.attempt = new TcpPunch(targets, localPort, cfg, now, () => ++this.lastVia);
    this.host.log("info", `TCP punching towards ${r.member.name}`);
    t.attempt.start(acts);
    this.runTcp(r, acts, now);
  }

  private runTcp(r: Remote, acts: TcpPunchAction[], now: number): void {
    for (const a of acts) {
      switch (a.type) {
        case "open":
          this.host.push({ type: "tcp_open", via: a.via, localPort: a.localPort, to: a.to });
          break;
        case "close":
          this.host.push({ type: "tcp_close", via: a.via });
          break;
        case "check":
          this.host.pathActions(r, r.path.check(a.to, a.via, now), now);
          break;
      }
    }
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
