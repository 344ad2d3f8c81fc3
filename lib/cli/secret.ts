/**
 * Where a locked room's secret comes from — a hidden prompt on the terminal, a file, or an
 * environment variable, as the secret itself or inside an invite code — and never the command
 * line, which every user of the machine can read (`ps`). Reading is separate from deciding
 * (program.ts decides from flags and environment), and every outside effect is injected, so
 * tests drive it without a terminal.
 * @module
 */
import { type Addr, parseHostPort } from "../wire/addr.ts";
import { deriveRoomKeys, type RoomKeys } from "../crypto/room.ts";
import { decodeInvite, MIN_SECRET } from "../wire/invite.ts";
import { INVITE_ENV, SECRET_ENV, UsageError } from "./usage.ts";

/** Where the text comes from. */
export type SecretSource =
  | { from: "prompt" }
  | { from: "file"; path: string }
  | { from: "env"; name: string };

/** What `join` was asked for: a room secret, or an invite code, and where to read it. */
export interface LockRequest {
  kind: "secret" | "invite";
  source: SecretSource;
}

/** The outside world, injected. */
export interface SecretIo {
  env(name: string): string | undefined;
  readFile(path: string): Promise<string>;
  /** Whether stdin is a terminal one can ask on. */
  isTerminal(): boolean;
  /** Asks without echoing what is typed. */
  askHidden(message: string): Promise<string>;
}

/** A locked room to join: its keys, and with an invite also its server and room. */
export interface LockedRoom {
  server: Addr;
  room: string;
  keys: RoomKeys;
}

/** The text a source gives: a file's first line, an environment variable, or what was typed. */
export async function readSource(
  req: LockRequest,
  prompt: string,
  io: SecretIo,
): Promise<string> {
  const what = req.kind === "secret" ? "the room secret" : "the invite code";
  const s = req.source;
  let text: string;
  if (s.from === "env") {
    text = io.env(s.name) ?? "";
  } else if (s.from === "file") {
    try {
      text = (await io.readFile(s.path)).split(/\r?\n/)[0] ?? "";
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
      throw new UsageError(`Cannot read ${what} from ${s.path}: ${why}`);
    }
  } else {
    if (!io.isTerminal()) {
      const env = req.kind === "secret" ? SECRET_ENV : INVITE_ENV;
      const flag = req.kind === "secret" ? "--secret-file" : "--invite-file";
      throw new UsageError(
        `Cannot ask for ${what}: stdin is not a terminal (use ${flag} FILE or $${env})`,
      );
    }
    text = await io.askHidden(prompt);
  }
  if (text.trim() === "") {
    const where = s.from === "env" ? `$${s.name}` : s.from === "file" ? s.path : "the prompt";
    throw new UsageError(`Cannot join: ${what} from ${where} is empty`);
  }
  return text;
}

/**
 * The locked room `req` leads to: reads the secret (or the invite) and derives the room's keys
 * (0.1-0.2 s). `server` and `room` are the ones given; an invite replaces both.
 * Throws UsageError on anything the user must fix.
 */
export async function lockedRoom(
  req: LockRequest,
  given: { server: Addr; room: string },
  io: SecretIo,
): Promise<LockedRoom> {
  if (req.kind === "secret") {
    const secret = await readSource(req, `Secret of room "${given.room}":`, io);
    if ([...secret].length < MIN_SECRET) {
      throw new UsageError(
        `Cannot use the room secret: it is shorter than ${MIN_SECRET} characters ` +
          "(p2pchat invite makes a strong one)",
      );
    }
    return { ...given, keys: deriveRoomKeys(secret, given.room) };
  }
  const code = await readSource(req, "Invite code:", io);
  const inv = decodeInvite(code);
  if (!inv.ok) throw new UsageError(`Cannot use the invite: ${inv.reason}`);
  const server = parseHostPort(inv.value.server);
  // decodeInvite checked it; this only narrows the type.
  if (!server.ok) throw new UsageError(`Cannot use the invite: ${server.reason}`);
  const { room, secret } = inv.value;
  return { server: server.value, room, keys: deriveRoomKeys(secret, room) };
}

/** The real terminal, files and environment. Prompts go to stderr, so --json stdout stays clean. */
export const terminalSecretIo: SecretIo = {
  env: (name) => Deno.env.get(name),
  readFile: (path) => Deno.readTextFile(path),
  isTerminal: () => Deno.stdin.isTerminal(),
  async askHidden(message) {
    const { password } = await import("@inquirer/prompts");
    const { default: process } = await import("node:process");
    return await password({ message }, { output: process.stderr });
  },
};
