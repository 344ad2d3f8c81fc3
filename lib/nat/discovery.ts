/**
 * NAT behaviour discovery (RFC 5780) as a sans-IO state machine: `start(now)`, then
 * `handle(datagram, from, socket, now)` and `tick(now)` return actions (open a socket, send a
 * datagram, done with a report); `nextDeadline()` says when `tick` has work. The host (see
 * lib/net/nat_runner.ts) carries the actions out on real sockets.
 *
 * Three sockets, all opened at the start:
 *
 * | socket     | requests                                                                       |
 * | ---------- | ------------------------------------------------------------------------------ |
 * | 0 main     | to the primary P (test I), then, once OTHER-ADDRESS names the server's other   |
 * |            | address A: to A's host with P's port (II), to A (III), to P's host with A's port |
 * | 1 filter   | to P three times: plain, CHANGE-REQUEST ip+port, CHANGE-REQUEST port           |
 * | 2 extra    | to P (one more fresh mapping, for port allocation), then to the main socket's  |
 * |            | own mapped address (hairpinning: does it arrive on socket 0?)                  |
 *
 * Every request is sent again at 1/6, 1/3 and 2/3 of the timeout and given up at the timeout,
 * so a run takes about the timeout plus one round trip (two rounds at most: the tests that
 * need OTHER-ADDRESS or the mapped address start when they are known). Requests are answered
 * out of order and matched by transaction id.
 *
 * What cannot be decided is "unknown", with a note saying why: with no second server address
 * (only a second port, or nothing), endpoint-independent and address-dependent mapping look
 * alike, and so do endpoint-independent and address-dependent filtering.
 */
import { type Addr, formatAddr, sameAddr } from "../wire/addr.ts";
import { toHex } from "../wire/bytes.ts";
import type { NatMapping } from "../wire/codec.ts";
import { type ChangeRequest, decodeStun, looksLikeStun } from "../stun/codec.ts";
import { bindingRequest, decodeBindingAnswer, isBindingRequest } from "../stun/binding.ts";

/** Filtering behaviour, in the same RFC 4787/5780 terms as mapping. */
export type NatFiltering = NatMapping;

/** How the NAT picks public ports: keeps the local port, counts up, or anything else. */
export type PortAllocation = "preserving" | "sequential" | "random" | "unknown";

export interface NatReport {
  /** Whether the server answered at all (if not, nothing else is known). */
  udp: boolean;
  /** Where the server saw the main socket (XOR-MAPPED-ADDRESS). */
  public: Addr | null;
  /** False: the public address is this host's own (no NAT); "unknown" without local addresses. */
  natted: boolean | "unknown";
  mapping: NatMapping;
  filtering: NatFiltering;
  allocation: PortAllocation;
  /** Whether a datagram to our own public address from a second socket came back in. */
  hairpin: boolean | "unknown";
  /**
   * Smallest round trip to the server among requests answered at the first try; if every one
   * needed a resend, the smallest time from a latest send to its answer.
   */
  rttMs: number | null;
  /** What the server offered: its other address (RFC 5780) and a second port on its host. */
  server: { primary: Addr; other: Addr | null; secondPort: number | null };
  /** Why something is "unknown", in plain words; empty when everything was decided. */
  notes: string[];
}

export interface DiscoveryConfig {
  /** The STUN server's primary address (an IP literal). */
  server: Addr;
  /**
   * Also ask the server's port + 1 when it names no OTHER-ADDRESS: a p2pchat server answers
   * STUN there (and CHANGE-REQUEST "change port" from there). Off for other STUN servers.
   */
  guessAltPort: boolean;
  /** This host's own addresses: a public address among them means no NAT. */
  localHosts: readonly string[];
  /** Give up on a request after this long. */
  timeoutMs: number;
  /** Randomness for transaction ids. */
  random: (n: number) => Uint8Array;
}

/**
 * A request unanswered this long counts as unanswered: several internet round trips, and short
 * enough that a whole run (at most two rounds) stays under about 2.5 s.
 */
export const TIMEOUT_MS = 1200;

/** Resends, as fractions of the timeout (200, 400, 800 ms of 1200): four sends per request. */
const RESEND_AT = [1 / 6, 1 / 3, 2 / 3] as const;

/**
 * Allocated public ports whose sorted gaps are all at most this count as handed out in
 * sequence (other flows through the NAT may take ports in between). Random ports from 64k
 * land this close together with probability about 32/64512 per gap.
 */
export const MAX_SEQUENTIAL_GAP = 16;

export const DEFAULT_DISCOVERY: Omit<DiscoveryConfig, "server"> = {
  guessAltPort: true,
  localHosts: [],
  timeoutMs: TIMEOUT_MS,
  random: (n) => crypto.getRandomValues(new Uint8Array(n)),
};

/** The sockets of a run (see the module comment). */
export const MAIN = 0;
export const FILTER = 1;
export const EXTRA = 2;
const SOCKET_COUNT = 3;

export type NatAction =
  | { type: "open_socket"; socket: number }
  | { type: "send"; socket: number; to: Addr; bytes: Uint8Array }
  | { type: "done"; report: NatReport };

/** The tests, by the request each sends. */
type Test =
  | "primary" // main -> P                       (RFC 5780 4.3 test I)
  | "alt_host" // main -> A.host:P.port           (test II)
  | "alt" // main -> A                            (test III)
  | "alt_port" // main -> P.host:A.port
  | "guess_port" // main -> P.host:P.port+1       (no OTHER-ADDRESS: a p2pchat server's 2nd port)
  | "filter_base" // filter -> P                  (4.4 test I)
  | "change_both" // filter -> P, change ip+port  (test II)
  | "change_port" // filter -> P, change port     (test III)
  | "extra" // extra -> P                         (one more fresh mapping)
  | "hairpin"; // extra -> our own mapped address (4.6)

type TxState = "pending" | "answered" | "refused" | "timeout";

interface Tx {
  seq: number;
  socket: number;
  to: Addr;
  bytes: Uint8Array;
  firstAt: number;
  lastAt: number;
  sends: number;
  nextAt: number;
  deadline: number;
  state: TxState;
  /** Where the answer came from, and what it said. */
  from?: Addr;
  mapped?: Addr | null;
  /** Round trip from the first send, if answered at the first try (Karn's rule). */
  rtt?: number;
  /** Round trip from the latest send (an underestimate when an earlier copy was answered). */
  rttLast?: number;
}

const hostPort = (host: string, port: number): Addr => ({ host, port });

export class NatDiscovery {
  private readonly cfg: DiscoveryConfig;
  private readonly tests = new Map<Test, Tx>();
  private readonly byId = new Map<string, Tx>();
  private readonly locals = new Map<number, Addr>();
  private other: Addr | null = null;
  private readonly notes = new Set<string>();
  private started = false;
  private finished = false;
  private seq = 0;

  constructor(cfg: Partial<DiscoveryConfig> & { server: Addr }) {
    this.cfg = { ...DEFAULT_DISCOVERY, ...cfg };
  }

  /** Opens the sockets and sends the first requests. */
  start(now: number): NatAction[] {
    if (this.started) return [];
    this.started = true;
    const out: NatAction[] = [];
    for (let s = 0; s < SOCKET_COUNT; s++) out.push({ type: "open_socket", socket: s });
    const p = this.cfg.server;
    // Send order is mapping creation order, which port allocation is judged by.
    this.begin("primary", MAIN, p, now, out);
    if (this.cfg.guessAltPort && p.port < 65535) {
      this.begin("guess_port", MAIN, hostPort(p.host, p.port + 1), now, out);
    }
    this.begin("filter_base", FILTER, p, now, out);
    this.begin("change_both", FILTER, p, now, out, { ip: true, port: true });
    this.begin("change_port", FILTER, p, now, out, { ip: false, port: true });
    this.begin("extra", EXTRA, p, now, out);
    return out;
  }

  /** The host bound socket `socket` at `local` (its port matters for port allocation). */
  opened(socket: number, local: Addr): void {
    this.locals.set(socket, local);
  }

  /** A datagram that arrived on `socket`. */
  handle(bytes: Uint8Array, from: Addr, socket: number, now: number): NatAction[] {
    const out: NatAction[] = [];
    if (this.finished || !looksLikeStun(bytes)) return out;
    const hairpin = this.tests.get("hairpin");
    if (socket === MAIN && hairpin?.state === "pending") {
      const d = decodeStun(bytes);
      if (
        d.ok && isBindingRequest(d.value) && this.byId.get(toHex(d.value.transactionId)) === hairpin
      ) {
        this.settle(hairpin, "answered", from, null, now);
        return this.maybeDone(out);
      }
    }
    const r = decodeBindingAnswer(bytes);
    if (!r.ok) return out;
    const tx = this.byId.get(toHex(r.value.transactionId));
    // An answer counts only on the socket that asked, once.
    if (!tx || tx.socket !== socket || tx.state !== "pending" || tx === hairpin) return out;
    const a = r.value;
    if (a.class === "error") {
      this.settle(tx, "refused", from, null, now);
      return this.maybeDone(out);
    }
    this.settle(tx, "answered", from, a.mapped, now);
    if (a.other && !this.other && sameAddr(tx.to, this.cfg.server)) {
      this.learnOther(a.other, now, out);
    }
    if (tx === this.tests.get("primary") && a.mapped) {
      this.begin("hairpin", EXTRA, a.mapped, now, out);
    }
    return this.maybeDone(out);
  }

  /** Resends what is due and gives up on what timed out. */
  tick(now: number): NatAction[] {
    const out: NatAction[] = [];
    if (this.finished) return out;
    for (const tx of this.byId.values()) {
      if (tx.state !== "pending") continue;
      if (now >= tx.deadline) tx.state = "timeout";
      else if (now >= tx.nextAt) {
        tx.lastAt = now;
        this.transmit(tx, out);
      }
    }
    return this.maybeDone(out);
  }

  /** When `tick` next has work, or null once done. */
  nextDeadline(_now?: number): number | null {
    if (!this.started || this.finished) return null;
    let at = Infinity;
    for (const tx of this.byId.values()) {
      if (tx.state === "pending") at = Math.min(at, tx.nextAt, tx.deadline);
    }
    return at === Infinity ? null : at;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Ends the run now: whatever is still pending counts as unanswered. */
  finish(): NatReport {
    for (const tx of this.byId.values()) if (tx.state === "pending") tx.state = "timeout";
    this.finished = true;
    return this.report();
  }

  private begin(
    test: Test,
    socket: number,
    to: Addr,
    now: number,
    out: NatAction[],
    change?: ChangeRequest,
  ): void {
    if (this.tests.has(test)) return;
    const txid = this.cfg.random(12);
    const tx: Tx = {
      seq: this.seq++,
      socket,
      to,
      bytes: bindingRequest(txid, { change }),
      firstAt: now,
      lastAt: now,
      sends: 0,
      nextAt: now,
      deadline: now + this.cfg.timeoutMs,
      state: "pending",
    };
    this.tests.set(test, tx);
    this.byId.set(toHex(txid), tx);
    this.transmit(tx, out);
  }

  private transmit(tx: Tx, out: NatAction[]): void {
    out.push({ type: "send", socket: tx.socket, to: tx.to, bytes: tx.bytes });
    const next = RESEND_AT[tx.sends];
    tx.sends++;
    tx.nextAt = next === undefined ? Infinity : tx.firstAt + next * this.cfg.timeoutMs;
  }

  private settle(tx: Tx, state: TxState, from: Addr, mapped: Addr | null, now: number): void {
    tx.state = state;
    tx.from = from;
    tx.mapped = mapped;
    if (tx.sends === 1) tx.rtt = now - tx.firstAt;
    tx.rttLast = now - tx.lastAt;
  }

  /** OTHER-ADDRESS: the tests that need the server's other address start now. */
  private learnOther(o: Addr, now: number, out: NatAction[]): void {
    const p = this.cfg.server;
    if (o.host === p.host || o.port === p.port) {
      this.notes.add(
        `the server's OTHER-ADDRESS ${formatAddr(o)} does not differ from ${formatAddr(p)} ` +
          `in both address and port, so it was not used`,
      );
      return;
    }
    this.other = o;
    this.begin("alt_host", MAIN, hostPort(o.host, p.port), now, out);
    this.begin("alt", MAIN, o, now, out);
    const guess = this.tests.get("guess_port");
    if (guess && guess.to.port === o.port) this.tests.set("alt_port", guess);
    else this.begin("alt_port", MAIN, hostPort(p.host, o.port), now, out);
  }

  private maybeDone(out: NatAction[]): NatAction[] {
    if (this.finished || !this.started) return out;
    for (const tx of this.byId.values()) if (tx.state === "pending") return out;
    this.finished = true;
    out.push({ type: "done", report: this.report() });
    return out;
  }

  private answered(test: Test): Tx | undefined {
    const tx = this.tests.get(test);
    return tx?.state === "answered" ? tx : undefined;
  }

  private mappedOf(test: Test): Addr | null {
    return this.answered(test)?.mapped ?? null;
  }

  /** The report from what is known so far (pending requests count as unanswered). */
  report(): NatReport {
    const p = this.cfg.server;
    const all = [...this.byId.values()];
    const udp = all.some((tx) => tx.state === "answered" || tx.state === "refused");
    const x1 = this.mappedOf("primary");
    const pub = x1 ?? this.mappedOf("filter_base") ?? this.mappedOf("extra");
    const local0 = this.locals.get(MAIN);
    let natted: boolean | "unknown" = "unknown";
    if (x1 && local0 && this.cfg.localHosts.length > 0) {
      natted = !(this.cfg.localHosts.includes(x1.host) && x1.port === local0.port);
    }
    const toServer = all.filter((tx) =>
      tx !== this.tests.get("hairpin") && tx.state === "answered"
    );
    const firsts = toServer.flatMap((tx) => (tx.rtt === undefined ? [] : [tx.rtt]));
    const rtts = firsts.length > 0 ? firsts : toServer.map((tx) => tx.rttLast!);
    const secondPort = this.answered("alt_port")?.to.port ??
      this.answered("guess_port")?.to.port ?? null;
    const notes = new Set(this.notes);
    const report: NatReport = {
      udp,
      public: pub,
      natted,
      mapping: udp ? this.mapping(natted, notes) : "unknown",
      filtering: udp ? this.filtering(notes) : "unknown",
      allocation: udp ? this.allocation(notes) : "unknown",
      hairpin: this.hairpin(),
      rttMs: rtts.length > 0 ? Math.min(...rtts) : null,
      server: { primary: p, other: this.other, secondPort },
      notes: [],
    };
    if (!udp) notes.add(`no answer from ${formatAddr(p)}`);
    report.notes = [...notes];
    return report;
  }

  /** RFC 5780 4.3, with what a second port alone can still tell. */
  private mapping(natted: boolean | "unknown", notes: Set<string>): NatMapping {
    const same = (a: Addr, b: Addr) => sameAddr(a, b);
    const x1 = this.mappedOf("primary");
    const x2 = this.mappedOf("alt_host");
    const x3 = this.mappedOf("alt");
    const x4 = this.mappedOf("alt_port") ?? this.mappedOf("guess_port");
    if (x1 && x2) {
      if (same(x1, x2)) return "endpoint-independent";
      if (x3) return same(x2, x3) ? "address-dependent" : "address-and-port-dependent";
      if (x4) return same(x1, x4) ? "address-dependent" : "address-and-port-dependent";
    }
    // A mapping that changes with the destination port depends on address and port.
    if (x1 && x4 && !same(x1, x4)) return "address-and-port-dependent";
    if (natted === false) {
      notes.add("no NAT: the server sees this host's own address");
      return "endpoint-independent";
    }
    if (!x1) {
      notes.add("mapping: the first request to the server was never answered");
    } else if (x4) {
      notes.add(
        "mapping: the public port stayed the same towards a second server port; without a " +
          "second server address, endpoint-independent and address-dependent look alike",
      );
    } else {
      notes.add("mapping: the server offers no second address or port to compare with");
    }
    return "unknown";
  }

  /** RFC 5780 4.4: which CHANGE-REQUEST answers get through. */
  private filtering(notes: Set<string>): NatFiltering {
    const p = this.cfg.server;
    if (!this.answered("filter_base")) {
      notes.add("filtering: the filtering socket got no answer at all");
      return "unknown";
    }
    // A silence means "filtered" only where the server is known to answer from that socket:
    // the main socket heard from it (its requests opened the way).
    const canChangeBoth = this.other !== null && this.answered("alt") !== undefined;
    const canChangePort = (this.other !== null || this.cfg.guessAltPort) &&
      (this.answered("alt_port") ?? this.answered("guess_port")) !== undefined;
    type Outcome = "passed" | "blocked" | "untested";
    const outcome = (test: Test, ok: (from: Addr) => boolean, can: boolean): Outcome => {
      const tx = this.tests.get(test);
      if (tx?.state === "answered") return ok(tx.from!) ? "passed" : "untested";
      if (tx?.state === "timeout" && can) return "blocked";
      return "untested";
    };
    const both = outcome(
      "change_both",
      (f) => f.host !== p.host && f.port !== p.port,
      canChangeBoth,
    );
    const port = outcome(
      "change_port",
      (f) => f.host === p.host && f.port !== p.port,
      canChangePort,
    );
    if (both === "passed") return "endpoint-independent";
    if (port === "passed") {
      if (both === "blocked") return "address-dependent";
      notes.add(
        "filtering: answers from another server port get in; without a second server " +
          "address, endpoint-independent and address-dependent look alike",
      );
      return "unknown";
    }
    if (port === "blocked") return "address-and-port-dependent";
    if (both === "blocked") {
      notes.add(
        "filtering: answers from another server address are dropped, and the server could " +
          "not answer from another port alone",
      );
      return "unknown";
    }
    notes.add("filtering: the server does not answer CHANGE-REQUEST from another address or port");
    return "unknown";
  }

  /** Mapped ports against local ports, over every mapping seen (one per socket and destination). */
  private allocation(notes: Set<string>): PortAllocation {
    const flows = new Map<string, { port: number; local: number | undefined }>();
    const txs = [...this.tests.entries()]
      .filter(([t, tx]) => t !== "hairpin" && tx.state === "answered" && tx.mapped)
      .map(([, tx]) => tx)
      .sort((a, b) => a.seq - b.seq);
    for (const tx of txs) {
      const key = `${tx.socket}>${formatAddr(tx.to)}`;
      if (!flows.has(key)) {
        flows.set(key, { port: tx.mapped!.port, local: this.locals.get(tx.socket)?.port });
      }
    }
    const seen = [...flows.values()];
    if (seen.length === 0) return "unknown";
    if (seen.every((f) => f.port === f.local)) return "preserving";
    const allocated = [...new Set(seen.filter((f) => f.port !== f.local).map((f) => f.port))]
      .sort((a, b) => a - b);
    if (allocated.length < 2) {
      notes.add("allocation: too few new public ports seen to tell sequential from random");
      return "unknown";
    }
    const gaps = allocated.slice(1).map((port, i) => port - allocated[i]!);
    return gaps.every((g) => g <= MAX_SEQUENTIAL_GAP) ? "sequential" : "random";
  }

  private hairpin(): boolean | "unknown" {
    const tx = this.tests.get("hairpin");
    if (tx?.state === "answered") return true;
    if (tx?.state === "timeout") return false;
    return "unknown";
  }
}
