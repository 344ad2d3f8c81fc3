/** Parses one line the user typed (or a script wrote on stdin) into a chat command. */
export type Command =
  | { kind: "say"; text: string }
  | { kind: "msg"; to: string; text: string }
  | { kind: "peers" }
  | { kind: "trust"; name: string }
  | { kind: "stats" }
  | { kind: "help" }
  | { kind: "quit" }
  | { kind: "none" }
  | { kind: "error"; message: string };

export const HELP = [
  "TEXT              send TEXT to everyone in the room",
  "/msg NAME TEXT    send TEXT to NAME only",
  "/peers            list peers: path (lan, direct, relay, connecting), address, RTT, key",
  "/trust NAME       accept NAME's new key after it changed (check the fingerprint first!)",
  "/stats            dropped datagrams by reason, and what the transport did",
  "/help             this help",
  "/quit             leave (Ctrl-D and Ctrl-C too)",
  "//TEXT            send TEXT starting with a single '/'",
];

export function parseLine(line: string): Command {
  const l = line.replace(/\r$/, "");
  if (l.trim() === "") return { kind: "none" };
  if (l.startsWith("//")) return { kind: "say", text: l.slice(1) };
  if (!l.startsWith("/")) return { kind: "say", text: l };
  const m = /^\/(\S+)\s*(.*)$/s.exec(l);
  if (!m) return { kind: "error", message: "no command after /; try /help (// sends a leading /)" };
  const [cmd, rest] = [m[1]!, m[2]!];
  switch (cmd) {
    case "msg": {
      // The text must not be blank, as a blank line to the room sends nothing either.
      const mm = /^(\S+)\s+(\S.*)$/s.exec(rest);
      if (!mm) return { kind: "error", message: "usage: /msg NAME TEXT" };
      return { kind: "msg", to: mm[1]!, text: mm[2]! };
    }
    case "peers":
      return { kind: "peers" };
    case "trust": {
      const name = rest.trim();
      if (!/^\S+$/.test(name)) return { kind: "error", message: "usage: /trust NAME" };
      return { kind: "trust", name };
    }
    case "stats":
      return { kind: "stats" };
    case "help":
      return { kind: "help" };
    case "quit":
    case "exit":
      return { kind: "quit" };
    default:
      return { kind: "error", message: `unknown command /${cmd}; try /help` };
  }
}
