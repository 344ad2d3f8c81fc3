/**
 * Who is registered: members by session id and by room and name, which key owns each name
 * (while its holder is registered and for the name TTL after), and the verifier of each locked
 * room (while it has members and for the name TTL after). Bookkeeping only: the limits live in
 * admission.ts, the messages in state.ts.
 *
 * Times passed in must not decrease (state.ts makes sure): members are kept in a heap by when
 * they fall silent, released names and room locks in the order they were released, so the
 * first of each is the next to expire.
 */
import type { Addr } from "../wire/addr.ts";
import { equalBytes, fromHex } from "../wire/bytes.ts";
import type { Id, Member } from "../wire/codec.ts";
import type { Bucket } from "./limits.ts";
import { limitKey } from "./ip.ts";
import { type ServerConfig, silenceMs } from "./config.ts";

/** A registered member. */
export interface Rec {
  id: Id;
  /** The registration token (hex, as messages carry it): later requests must carry it. */
  token: string;
  name: string;
  room: string;
  /** The identity key, in hex only: the bytes are made again for member lists (memberOf). */
  keyHex: string;
  public: Addr;
  locals: Addr[];
  lastSeen: number;
  /** Nonce of the REGISTER that made or last moved this record (resends are answered as-is). */
  regNonce: string;
  /**
   * Relayed bytes this member may send; made full on first use (a bucket made at the join
   * would be full by then too), so the many members that never relay cost nothing for it.
   */
  relay?: Bucket;
  /**
   * CONNECTs this member may send: each makes the target probe addresses the sender chose.
   * Made on first use, as `relay`.
   */
  connects?: Bucket;
}

/** The wire form of a member entry. */
export function memberOf(r: Rec): Member {
  return { id: r.id, name: r.name, public: r.public, locals: r.locals, key: fromHex(r.keyHex) };
}

interface Binding {
  key: string;
  holder: Id | null;
  releasedAt: number;
  /** The source (limitKey) that first bound the name: it counts against that source. */
  source: string;
}

/** Who owns a name: the key (hex), and the member holding it now, if any. */
export interface Owner {
  key: string;
  holder: Rec | undefined;
}

const bindingKey = (room: string, name: string) => `${room}\0${name}`;

/**
 * A locked room's verifier (an Ed25519 public key, lib/crypto/room.ts). Kept while the room has
 * members and for the name TTL after it empties, as its last member's name is, so the two end
 * together and locks never outnumber bound names.
 */
interface Lock {
  verifier: Uint8Array;
  /** When the room emptied; null while it has members. */
  releasedAt: number | null;
}

export class Registry {
  private byId = new Map<Id, Rec>();
  /**
   * Every member once, by when it falls silent for too long, earliest on top. An entry may
   * hold an earlier time than its member's real one (it was heard from since) and be moved
   * down only when it comes to the top, so hearing from a member costs no heap work; entries
   * of removed members are dropped when they come to the top. (A Map kept in `lastSeen`
   * order by delete and set leaves a hole per keepalive at its front, which every look at
   * the first member then walks over: 20-60 µs a datagram with 100,000 members.)
   */
  private silence = new SilenceHeap();
  private rooms = new Map<string, Map<string, Rec>>();
  private bindings = new Map<string, Binding>();
  /** The bindings nobody holds, in release order. */
  private released = new Map<string, Binding>();
  /** Live members per source (limitKey of their public address) and per key. */
  private perSource = new Counter();
  private perKey = new Counter();
  /** Bindings per source that made them. */
  private namesPerSource = new Counter();
  /** Room locks by room, and the ones of empty rooms in release order. */
  private locks = new Map<string, Lock>();
  private releasedLocks = new Map<string, Lock>();

  constructor(private cfg: ServerConfig) {}

  get size(): number {
    return this.byId.size;
  }

  get roomCount(): number {
    return this.rooms.size;
  }

  get(id: Id): Rec | undefined {
    return this.byId.get(id);
  }

  /** The members of `room` (none if it does not exist). */
  members(room: string): Iterable<Rec> {
    return this.rooms.get(room)?.values() ?? [];
  }

  /** Live members whose public address counts as `source` (see limitKey). */
  fromSource(source: string): number {
    return this.perSource.get(source);
  }

  /** Names bound (held or within their TTL), in all. */
  get nameCount(): number {
    return this.bindings.size;
  }

  /** Names bound by `source` (see limitKey). */
  namesFrom(source: string): number {
    return this.namesPerSource.get(source);
  }

  /** Live members registered with `key` (hex). */
  withKey(key: string): number {
    return this.perKey.get(key);
  }

  /** Members in `room`, or undefined when there is no such room. */
  roomSize(room: string): number | undefined {
    return this.rooms.get(room)?.size;
  }

  /**
   * The verifier of `room` if it is locked at `now` (it has members who proved it, or emptied
   * less than the name TTL ago); undefined for an open room.
   */
  lockOf(room: string, now: number): Uint8Array | undefined {
    const l = this.locks.get(room);
    if (!l || (l.releasedAt !== null && now >= l.releasedAt + this.cfg.nameTtlMs)) return undefined;
    return l.verifier;
  }

  /** The owner of `name` in `room` at `now`, or undefined when anyone may take it. */
  owner(room: string, name: string, now: number): Owner | undefined {
    const b = this.bindings.get(bindingKey(room, name));
    if (!b) return undefined;
    const holder = b.holder === null ? undefined : this.byId.get(b.holder);
    if (!holder && now >= b.releasedAt + this.cfg.nameTtlMs) return undefined;
    return { key: b.key, holder };
  }

  /**
   * Adds a member and binds its name to its key: the name's binding if the key already owns
   * it (held again, its TTL restarts at the next release), else a new one. The caller checks
   * owner() and the name caps first. `verifier`: the room's, when it is locked (the caller
   * checked the proof against lockOf()); without one, a lock past its TTL is dropped.
   */
  add(r: Rec, verifier?: Uint8Array): void {
    this.holdLock(r.room, verifier);
    this.byId.set(r.id, r);
    this.silence.push(r, r.lastSeen + silenceMs(this.cfg));
    this.perSource.add(limitKey(r.public.host), 1);
    this.perKey.add(r.keyHex, 1);
    let room = this.rooms.get(r.room);
    if (!room) this.rooms.set(r.room, room = new Map());
    room.set(r.name, r);
    const k = bindingKey(r.room, r.name);
    let b = this.bindings.get(k);
    if (b && b.key !== r.keyHex) this.unbind(k, b); // expired: owner() let it go
    if (!b || b.key !== r.keyHex) {
      b = { key: r.keyHex, holder: null, releasedAt: 0, source: limitKey(r.public.host) };
      this.bindings.set(k, b);
      this.namesPerSource.add(b.source, 1);
    }
    b.holder = r.id;
    this.released.delete(k);
  }

  /** Marks `r` as heard from at `now`. */
  touch(r: Rec, now: number): void {
    r.lastSeen = now;
  }

  /** Records that `r` is now at `to`. */
  relocate(r: Rec, to: Addr): void {
    this.perSource.add(limitKey(r.public.host), -1);
    this.perSource.add(limitKey(to.host), 1);
    r.public = to;
  }

  /** Removes `r`; its name stays bound to its key for the name TTL from `now`. */
  remove(r: Rec, now: number): void {
    if (!this.byId.delete(r.id)) return;
    this.perSource.add(limitKey(r.public.host), -1);
    this.perKey.add(r.keyHex, -1);
    const room = this.rooms.get(r.room);
    if (room?.get(r.name) === r) room.delete(r.name);
    if (room && room.size === 0) {
      this.rooms.delete(r.room);
      const l = this.locks.get(r.room);
      if (l) {
        l.releasedAt = now;
        this.releasedLocks.set(r.room, l);
      }
    }
    const k = bindingKey(r.room, r.name);
    const b = this.bindings.get(k);
    if (b && b.holder === r.id) {
      b.holder = null;
      b.releasedAt = now;
      this.released.set(k, b);
    }
  }

  /** Members silent for too long at `now`, the longest silent first. */
  silent(now: number): Rec[] {
    const out: Rec[] = [];
    for (let top = this.firstSilent(); top && now >= top.at; top = this.firstSilent()) {
      this.silence.pop();
      out.push(top.rec);
    }
    return out;
  }

  /** The heap's top once it is a live member at its real time (stale entries fixed first). */
  private firstSilent(): SilenceEntry | undefined {
    for (;;) {
      const top = this.silence.top();
      if (!top) return undefined;
      if (this.byId.get(top.rec.id) !== top.rec) {
        this.silence.pop(); // removed (or replaced under the same id)
        continue;
      }
      const at = top.rec.lastSeen + silenceMs(this.cfg);
      if (top.at >= at) return top;
      top.at = at;
      this.silence.down();
    }
  }

  /** Forgets the released names and room locks whose TTL is over at `now`. */
  expireNames(now: number): void {
    for (const [room, l] of this.releasedLocks) {
      if (now < l.releasedAt! + this.cfg.nameTtlMs) break;
      this.releasedLocks.delete(room);
      this.locks.delete(room);
    }
    for (const [k, b] of this.released) {
      if (now < b.releasedAt + this.cfg.nameTtlMs) return;
      this.unbind(k, b);
    }
  }

  /** Rooms locked now, or emptied within the name TTL and not yet forgotten. */
  get lockCount(): number {
    return this.locks.size;
  }

  /** A member joins `room`: its lock is held (made, if new); an open member ends a stale one. */
  private holdLock(room: string, verifier: Uint8Array | undefined): void {
    const l = this.locks.get(room);
    this.releasedLocks.delete(room);
    if (!verifier) {
      // Only reachable once the lock's TTL is over (admission refuses open members before).
      if (l) this.locks.delete(room);
      return;
    }
    if (l && equalBytes(l.verifier, verifier)) l.releasedAt = null;
    else this.locks.set(room, { verifier: verifier.slice(), releasedAt: null });
  }

  private unbind(k: string, b: Binding): void {
    this.released.delete(k);
    this.bindings.delete(k);
    this.namesPerSource.add(b.source, -1);
  }

  /** When the next member falls silent for too long or the next released name expires. */
  nextDeadline(): number | null {
    let at: number | null = this.firstSilent()?.at ?? null;
    for (const b of this.released.values()) {
      const end = b.releasedAt + this.cfg.nameTtlMs;
      if (at === null || end < at) at = end;
      break;
    }
    for (const l of this.releasedLocks.values()) {
      const end = l.releasedAt! + this.cfg.nameTtlMs;
      if (at === null || end < at) at = end;
      break;
    }
    return at;
  }
}

interface SilenceEntry {
  rec: Rec;
  /** When `rec` falls silent for too long, or earlier (see Registry.silence). */
  at: number;
}

/** A binary min-heap of SilenceEntry by `at`. */
class SilenceHeap {
  private a: SilenceEntry[] = [];

  top(): SilenceEntry | undefined {
    return this.a[0];
  }

  push(rec: Rec, at: number): void {
    const a = this.a;
    let i = a.length;
    a.push({ rec, at });
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (a[up]!.at <= at) break;
      [a[i], a[up]] = [a[up]!, a[i]!];
      i = up;
    }
  }

  pop(): void {
    const a = this.a;
    const last = a.pop();
    if (last && a.length > 0) {
      a[0] = last;
      this.down();
    }
  }

  /** Moves the top down to its place after its time grew. */
  down(): void {
    const a = this.a, n = a.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && a[l]!.at < a[m]!.at) m = l;
      if (r < n && a[r]!.at < a[m]!.at) m = r;
      if (m === i) return;
      [a[i], a[m]] = [a[m]!, a[i]!];
      i = m;
    }
  }
}

/** Counts per key; keys counted down to zero are forgotten. */
class Counter {
  private n = new Map<string, number>();
  get(k: string): number {
    return this.n.get(k) ?? 0;
  }
  add(k: string, d: number): void {
    const v = this.get(k) + d;
    if (v > 0) this.n.set(k, v);
    else this.n.delete(k);
  }
}
