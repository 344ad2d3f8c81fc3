/** The two faces of a running peer: JSON lines for scripts, a chat screen for people. */
import type { PeerEvent } from "../peer/events.ts";
import type { PeerInfo } from "../peer/agent.ts";
import { HELP } from "./input.ts";

/** What we know of our own NAT, for `/peers` (null fields: not known or none). */
export interface SelfNat {
  mapping: string;
  mapped: string | null;
  portmap: string | null;
}

export interface Output {
  event(e: PeerEvent): void;
  peers(list: PeerInfo[], self?: SelfNat): void;
  /** Drops by reason, and what the transport did (DATA sent, resent, probes...). */
  stats(drops: Record<string, number>, counters: Record<string, number>): void;
  help(): void;
  /** Redraws the prompt (terminal only). */
  prompt(): void;
}

const enc = new TextEncoder();

/** Writes all of `s`; Deno's writeSync may write only part of a buffer. */
export function writeAll(f: { writeSync(p: Uint8Array): number }, s: string): void {
  let b = enc.encode(s);
  while (b.length > 0) b = b.subarray(f.writeSync(b));
}

/** `--json`: one object per line on stdout, nothing else. `locked`: the room has a secret. */
export class JsonOutput implements Output {
  constructor(private write: (line: string) => void, private locked = false) {}
  event(e: PeerEvent): void {
    this.write(JSON.stringify(e) + "\n");
  }
  peers(list: PeerInfo[], self?: SelfNat): void {
    this.write(
      JSON.stringify({
        type: "peers",
        locked: this.locked,
        nat: self ?? null,
        peers: list.map((p) => ({
          name: p.name,
          path: p.path,
          transport: p.transport ?? "udp",
          addr: p.addr,
          rtt_ms: p.rttMs,
          fingerprint: p.fingerprint,
          trusted: p.trusted,
          encrypted: p.secure,
          data_frags: p.dataFrags,
        })),
      }) + "\n",
    );
  }
  stats(drops: Record<string, number>, counters: Record<string, number>): void {
    this.write(JSON.stringify({ type: "stats", drops, counters }) + "\n");
  }
  help(): void {
    this.write(JSON.stringify({ type: "help", commands: HELP }) + "\n");
  }
  prompt(): void {}
}

export interface Screen {
  /** Prints a line above the input line, keeping what the user is typing intact. */
  print(line: string): void;
  prompt(): void;
}

const C = {
  dim: "\x1b[2m",
  bold: "\x1b[1m",
  red: "\x1b[31m",
  green: "\x1b[32m",
  yellow: "\x1b[33m",
  cyan: "\x1b[36m",
  magenta: "\x1b[35m",
  reset: "\x1b[0m",
};

/** Human chat output. Colour only when asked (a terminal without NO_COLOR). */
export class ChatOutput implements Output {
  constructor(
    private screen: Screen,
    private color: boolean,
    private self: string,
    private locked = false,
  ) {}

  private c(code: keyof typeof C, s: string): string {
    return this.color ? C[code] + s + C.reset : s;
  }

  event(e: PeerEvent): void {
    const s = this.screen;
    switch (e.type) {
      case "ready":
        s.print(
          this.c(
            "dim",
            `* joined ${e.locked ? "locked " : ""}room ${e.room} as ${e.name} (public ` +
              `${e.public}${e.transport === "ws" ? ", over WebSocket" : ""}); /help for commands`,
          ),
        );
        break;
      case "peer":
        s.print(this.c(
          "dim",
          e.state === "joined" ? `* ${e.name} joined (key ${e.fingerprint})` : `* ${e.name} left`,
        ));
        break;
      case "key_changed":
        s.print(this.c(
          "red",
          `!!! ${e.peer}'s key changed to ${e.fingerprint}: this may be someone else using the ` +
            `name. Nothing is exchanged with ${e.peer} until you check the fingerprint with ` +
            `them and type /trust ${e.peer}`,
        ));
        break;
      case "path":
        s.print(this.c(
          "dim",
          `* path to ${e.peer}: ${e.path} ${e.addr}${
            e.rtt_ms === null ? "" : ` (${Math.round(e.rtt_ms)} ms)`
          }${
            e.transport === "tcp"
              ? " over TCP"
              : e.path === "relay" && e.transport === "ws"
              ? " over WebSocket"
              : ""
          }`,
        ));
        break;
      case "transport":
        s.print(this.c(
          "dim",
          `* server now reached over ${e.transport === "ws" ? "WebSocket" : "UDP"} ` +
            `(${e.server}): ${e.why}`,
        ));
        break;
      case "message":
        if (e.to === "room") s.print(`${this.c("cyan", `<${e.from}>`)} ${e.text}`);
        else s.print(`${this.c("magenta", `[${e.from} -> ${this.self}]`)} ${e.text}`);
        break;
      case "delivered":
        break; // silence is success; failures are reported
      case "undelivered":
        s.print(this.c("red", `! message ${e.id} to ${e.to} could not be delivered`));
        break;
      case "error":
        s.print(this.c("red", `! ${e.message}`));
        break;
      case "nat":
        s.print(this.c(
          "dim",
          (e.natted === false
            ? "* no NAT in front of you: the server sees this host's own address"
            : `* your NAT: ${e.mapping} mapping, ${e.filtering} filtering, ${e.allocation} ports`) +
            (e.mapped ? `; ${e.portmap} mapped ${e.mapped} for you` : ""),
        ));
        break;
    }
  }

  peers(list: PeerInfo[], self?: SelfNat): void {
    if (self) {
      this.screen.print(this.c(
        "dim",
        `* you: ${self.mapping} NAT mapping` +
          (self.mapped
            ? `, ${self.portmap} mapped ${self.mapped} for you`
            : ", no gateway mapping"),
      ));
    }
    this.screen.print(this.c(
      "dim",
      this.locked
        ? "* the room is locked: only people with its secret can join or talk here"
        : "* the room is open: anyone who knows its name can join",
    ));
    if (list.length === 0) return this.screen.print(this.c("dim", "* nobody else is here"));
    for (const p of list) {
      const rtt = p.rttMs === null ? "-" : `${Math.round(p.rttMs)} ms`;
      const path = p.transport === "tcp"
        ? `${p.path}/tcp`
        : p.path === "relay" && p.transport === "ws"
        ? "relay/ws"
        : p.path;
      const key = p.trusted ? p.fingerprint : `${p.fingerprint} (CHANGED: /trust ${p.name})`;
      this.screen.print(
        this.c(
          p.trusted ? "dim" : "red",
          `* ${p.name.padEnd(16)} ${path.padEnd(10)} ${(p.addr ?? "-").padEnd(21)} ` +
            `${rtt.padEnd(7)} key ${key}${p.secure ? "" : " (no session yet)"}`,
        ),
      );
    }
  }

  stats(drops: Record<string, number>, counters: Record<string, number>): void {
    const line = (o: Record<string, number>) =>
      Object.entries(o).sort().map(([k, v]) => `${k} ${v}`).join(", ");
    const e = Object.entries(drops);
    this.screen.print(
      this.c("dim", e.length === 0 ? "* nothing dropped" : `* dropped: ${line(drops)}`),
    );
    this.screen.print(this.c("dim", `* transport: ${line(counters)}`));
  }

  help(): void {
    for (const h of HELP) this.screen.print(this.c("dim", h));
  }

  prompt(): void {
    this.screen.prompt();
  }
}
