/**
 * The other members of our room as we know them: one Remote per session id, looked up by id or
 * name, and trust on first use (a name's key is pinned the first time; a different key later is
 * held back until the user accepts it).
 */
import { equalBytes } from "../wire/bytes.ts";
import type { Id, Member, NatMapping } from "../wire/codec.ts";
import { type Addr, sameAddr } from "../wire/addr.ts";
import type { Birthday } from "./birthday.ts";
import { mac1Key } from "./mac1.ts";
import { fingerprint, xPublicFromEd } from "../identity/identity.ts";
import type { TrustStatus, TrustStore } from "../identity/known_peers.ts";
import type { PathMachine } from "./path.ts";
import type { Receiver, Sender } from "./delivery.ts";

export interface Remote {
  member: Member;
  /** The X25519 key Noise authenticates the peer with, derived from its Ed25519 key. */
  xPublic: Uint8Array;
  /** The peer's mac1 key, for the HELLOs we send it. */
  mac1: Uint8Array;
  path: PathMachine;
  tx: Sender;
  rx: Receiver;
  fingerprint: string;
  /** False while the key differs from the pinned one and the user has not run /trust. */
  trusted: boolean;
  nextRelayHello: number;
  /** Sources that sent the peer handshake inits lately, with when (see the agent's onHello). */
  helloSources: Map<string, number>;
  /** What the peer told us of its NAT (NAT_INFO), once it has. */
  nat: { mapping: NatMapping; mapped: Addr[] } | null;
  /** Whether the peer has confirmed it has our NAT_INFO; until then we resend it. */
  natAcked: boolean;
  natTries: number;
  nextNatInfo: number;
  /** The last classic punch window ended without a path (birthday punching may help). */
  punchFailed: boolean;
  /** The current or last birthday attempt, its probe nonce, and when attempts started. */
  birthday: Birthday | null;
  birthdayNonce: string;
  birthdayStarts: number[];
  /** A birthday socket that won and now carries the path (0: none). */
  birthdayVia: number;
}

/** The parts of a Remote the agent builds (they need its configuration). */
export type RemoteParts = Pick<Remote, "path" | "tx" | "rx">;

export type Learned =
  /** A member we did not know; `replaced` is an older session of the same name, now removed. */
  | { kind: "new"; remote: Remote; status: TrustStatus; replaced: Remote | null }
  /** Known already; `moved` when its announced addresses changed. */
  | { kind: "known"; remote: Remote; moved: boolean }
  /** The announced key is not a usable Ed25519 key. */
  | { kind: "bad_key" }
  /** The id is bound to another name or key: a forgery or a bug; nothing changed. */
  | { kind: "mismatch" };

/**
 * Delivery state of removed remotes kept, by session id. A peer the server timed out (its
 * sends failed for a while, say) comes back under the same id, in the same process, with its
 * sequence numbers running on: starting ours over would make it take our next messages for
 * duplicates, and its for ours. A new process has a new id, so an id is never reused wrongly.
 */
const REMEMBERED = 64;

export class Roster {
  private byId = new Map<Id, Remote>();
  private byName = new Map<string, Id>();
  private gone = new Map<Id, { key: Uint8Array; tx: Remote["tx"]; rx: Remote["rx"] }>();

  constructor(private trust: TrustStore, private parts: (m: Member) => RemoteParts) {}

  get(id: Id): Remote | undefined {
    return this.byId.get(id);
  }

  named(name: string): Remote | undefined {
    const id = this.byName.get(name);
    return id === undefined ? undefined : this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }

  all(): IterableIterator<Remote> {
    return this.byId.values();
  }

  /** Takes a member the server announced: adds it, refreshes its addresses, or refuses it. */
  learn(m: Member): Learned {
    const r = this.byId.get(m.id);
    if (r) {
      // A session id is bound to one name and key at the server; anything else is a forgery
      // (a renamed member would dodge the name's pinned key) or a bug.
      if (!equalBytes(r.member.key, m.key) || r.member.name !== m.name) return { kind: "mismatch" };
      const moved = !sameAddr(r.member.public, m.public) ||
        r.member.locals.length !== m.locals.length ||
        r.member.locals.some((a, i) => !sameAddr(a, m.locals[i]!));
      // Only the addresses change; name and key stay the ones checked against the pin.
      if (moved) r.member = { ...r.member, public: m.public, locals: m.locals };
      return { kind: "known", remote: r, moved };
    }
    const x = xPublicFromEd(m.key);
    if (!x) return { kind: "bad_key" };
    const old = this.byName.get(m.name);
    // The same user came back with a new session.
    const replaced = old !== undefined && old !== m.id ? this.remove(old) ?? null : null;
    const fp = fingerprint(m.key);
    const parts = this.parts(m);
    const was = this.gone.get(m.id);
    if (was) {
      this.gone.delete(m.id);
      if (equalBytes(was.key, m.key)) Object.assign(parts, { tx: was.tx, rx: was.rx });
    }
    const remote: Remote = {
      member: m,
      xPublic: x,
      mac1: mac1Key(x),
      ...parts,
      fingerprint: fp,
      trusted: false,
      nextRelayHello: 0,
      helloSources: new Map(),
      nat: null,
      natAcked: false,
      natTries: 0,
      nextNatInfo: 0,
      punchFailed: false,
      birthday: null,
      birthdayNonce: "",
      birthdayStarts: [],
      birthdayVia: 0,
    };
    this.byId.set(m.id, remote);
    this.byName.set(m.name, m.id);
    const status = this.trust.check(m.name, fp);
    if (status === "new") this.trust.pin(m.name, fp);
    if (status !== "changed") remote.trusted = true;
    return { kind: "new", remote, status, replaced };
  }

  /** Accepts a changed key (`/trust NAME`): pins it. */
  pin(r: Remote): void {
    this.trust.pin(r.member.name, r.fingerprint);
    r.trusted = true;
  }

  remove(id: Id): Remote | undefined {
    const r = this.byId.get(id);
    if (!r) return undefined;
    this.byId.delete(id);
    if (this.byName.get(r.member.name) === id) this.byName.delete(r.member.name);
    this.gone.set(id, { key: r.member.key, tx: r.tx, rx: r.rx });
    if (this.gone.size > REMEMBERED) this.gone.delete(this.gone.keys().next().value!);
    return r;
  }
}
