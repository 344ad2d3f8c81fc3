/** Locked rooms on the command line: where the secret may come from, invite codes, prompts. */
import assert from "node:assert/strict";
import { parseArgs, UsageError } from "../../lib/cli/program.ts";
import { lockedRoom, type LockRequest, type SecretIo } from "../../lib/cli/secret.ts";
import { decodeInvite, encodeInvite, INVITE_PREFIX } from "../../lib/wire/invite.ts";
import { newInvite, newSecret } from "../../lib/cli/invite.ts";
import { deriveRoomKeys } from "../../lib/crypto/room.ts";

function parse(argv: string[], env: Record<string, string> = {}) {
  const io = { out: () => {}, err: () => {}, env: (k: string) => env[k] };
  return parseArgs(argv, io, "9.9.9");
}

function refused(argv: string[], env: Record<string, string> = {}): string {
  try {
    parse(argv, env);
  } catch (e) {
    assert.ok(e instanceof UsageError, `expected a UsageError, got ${e}`);
    return e.message;
  }
  assert.fail(`expected ${argv.join(" ")} to be refused`);
}

const lockOf = (argv: string[], env: Record<string, string> = {}) => {
  const inv = parse(["join", "--name", "a", ...argv], env);
  assert.equal(inv.cmd, "join");
  return inv.cmd === "join" ? inv.lock : undefined;
};

const SECRET_ENV = { P2PCHAT_ROOM_SECRET: "s3cret-from-env" };
const INVITE_ENV = { P2PCHAT_INVITE: "p2pchat:..." };
const sources: { name: string; argv: string[]; env?: Record<string, string>; lock: unknown }[] = [
  { name: "no flag, no variable: an open room", argv: [], lock: null },
  {
    name: "--secret asks",
    argv: ["--secret"],
    lock: { kind: "secret", source: { from: "prompt" } },
  },
  {
    name: "--secret with $P2PCHAT_ROOM_SECRET set takes it",
    argv: ["--secret"],
    env: SECRET_ENV,
    lock: { kind: "secret", source: { from: "env", name: "P2PCHAT_ROOM_SECRET" } },
  },
  {
    name: "$P2PCHAT_ROOM_SECRET alone locks the room",
    argv: [],
    env: SECRET_ENV,
    lock: { kind: "secret", source: { from: "env", name: "P2PCHAT_ROOM_SECRET" } },
  },
  {
    name: "--secret-file",
    argv: ["--secret-file", "s.txt"],
    env: SECRET_ENV,
    lock: { kind: "secret", source: { from: "file", path: "s.txt" } },
  },
  {
    name: "--invite asks",
    argv: ["--invite"],
    lock: { kind: "invite", source: { from: "prompt" } },
  },
  {
    name: "$P2PCHAT_INVITE alone",
    argv: [],
    env: INVITE_ENV,
    lock: { kind: "invite", source: { from: "env", name: "P2PCHAT_INVITE" } },
  },
  {
    name: "--invite-file",
    argv: ["--invite-file", "i.txt"],
    lock: { kind: "invite", source: { from: "file", path: "i.txt" } },
  },
];
for (const c of sources) {
  Deno.test(`cli lock: ${c.name}`, () => {
    assert.deepEqual(lockOf(c.argv, c.env), c.lock);
  });
}

const refusals: { name: string; argv: string[]; env?: Record<string, string>; err: RegExp }[] = [
  { name: "a secret after --secret", argv: ["--secret", "hunter22"], err: /on the command line/ },
  { name: "--secret=VALUE", argv: ["--secret=hunter22"], err: /on the command line/ },
  { name: "a code after --invite", argv: ["--invite", "p2pchat:AQ"], err: /on the command line/ },
  {
    name: "two sources",
    argv: ["--secret", "--secret-file", "f"],
    err: /--secret and --secret-file/,
  },
  { name: "secret and invite", argv: ["--secret-file", "f", "--invite"], err: /together/ },
  {
    name: "both variables",
    argv: [],
    env: { ...SECRET_ENV, ...INVITE_ENV },
    err: /both \$P2PCHAT_ROOM_SECRET and \$P2PCHAT_INVITE/,
  },
  { name: "--invite with --room", argv: ["--invite", "--room", "x"], err: /names its server/ },
  {
    name: "--invite-file with --server",
    argv: ["--invite-file", "f", "--server", "10.0.0.1"],
    err: /names its server and room/,
  },
];
for (const c of refusals) {
  Deno.test(`cli lock: refuses ${c.name}`, () => {
    const msg = refused(["join", "--name", "a", ...c.argv], c.env);
    assert.match(msg, c.err);
    assert.doesNotMatch(msg, /hunter22|AQ/, "the value is not repeated");
  });
}

Deno.test("cli lock: an invite may come with $P2PCHAT_SERVER set (it is only a default)", () => {
  assert.deepEqual(lockOf(["--invite"], { P2PCHAT_SERVER: "10.0.0.1:1" })?.kind, "invite");
});

Deno.test("cli invite: needs --room; --server defaults like join's", () => {
  assert.match(refused(["invite"]), /--room/);
  const a = parse(["invite", "--room", "family"]);
  assert.deepEqual(a, { cmd: "invite", room: "family", server: { host: "127.0.0.1", port: 8848 } });
  const b = parse(["invite", "--room", "family"], { P2PCHAT_SERVER: "chat.example.org" });
  assert.ok(b.cmd === "invite" && b.server.host === "chat.example.org" && b.server.port === 8848);
  assert.match(refused(["invite", "--room", "no spaces"]), /not a valid name/);
});

// ---------------------------------------------------------------------------------------------
// Invite codes

Deno.test("invite codes: round trip; one line of URL-safe characters", () => {
  const i = { server: "chat.example.org:8848", room: "family", secret: newSecret() };
  const code = encodeInvite(i);
  assert.match(code, /^p2pchat:[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeInvite(code), { ok: true, value: i });
  assert.deepEqual(decodeInvite(`  ${code}\n`), { ok: true, value: i }, "pasted with whitespace");
  const made = decodeInvite(newInvite({ host: "127.0.0.1", port: 9 }, "r"));
  assert.ok(made.ok && made.value.server === "127.0.0.1:9" && made.value.room === "r");
});

Deno.test("invite codes: fresh secrets are 256 random bits, never repeated", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const s = newSecret();
    assert.match(s, /^[A-Za-z0-9_-]{43}$/);
    seen.add(s);
  }
  assert.equal(seen.size, 100);
});

const good = encodeInvite({ server: "127.0.0.1:8848", room: "family", secret: "x".repeat(43) });
const badCodes: [string, string, RegExp][] = [
  ["no prefix", good.slice(INVITE_PREFIX.length), /does not start with/],
  ["not base64url", INVITE_PREFIX + "ab+c", /not base64url/],
  ["cut short", good.slice(0, -4), /cut short/],
  ["extra bytes", good + "AAAA", /extra bytes/],
  ["another version", INVITE_PREFIX + "Ag", /version 2/],
  ["bad room", encodeInvite({ server: "1.2.3.4:1", room: "a b", secret: "x".repeat(43) }), /room/],
  ["bad server", encodeInvite({ server: "nope", room: "r", secret: "x".repeat(43) }), /server/],
  ["short secret", encodeInvite({ server: "1.2.3.4:1", room: "r", secret: "short" }), /too short/],
];
for (const [name, code, why] of badCodes) {
  Deno.test(`invite codes: refuses one with ${name}`, () => {
    const d = decodeInvite(code);
    assert.ok(!d.ok);
    assert.match(d.reason, why);
  });
}

// ---------------------------------------------------------------------------------------------
// Reading the secret

function fakeIo(o: Partial<SecretIo> & { files?: Record<string, string> } = {}) {
  const asked: string[] = [];
  const io: SecretIo = {
    env: o.env ?? (() => undefined),
    readFile: o.readFile ??
      ((p) => {
        const f = o.files?.[p];
        return f === undefined ? Promise.reject(new Deno.errors.NotFound(p)) : Promise.resolve(f);
      }),
    isTerminal: o.isTerminal ?? (() => true),
    askHidden: (m) => {
      asked.push(m);
      return o.askHidden ? o.askHidden(m) : Promise.resolve("typed at the prompt");
    },
  };
  return { io, asked };
}

const given = { server: { host: "127.0.0.1", port: 8848 }, room: "family" };
const secret = (source: LockRequest["source"]): LockRequest => ({ kind: "secret", source });

Deno.test("secret: asked on the terminal, hidden, naming the room", async () => {
  const { io, asked } = fakeIo();
  const l = await lockedRoom(secret({ from: "prompt" }), given, io);
  assert.deepEqual(asked, ['Secret of room "family":']);
  assert.deepEqual(l.keys, deriveRoomKeys("typed at the prompt", "family"));
  assert.deepEqual([l.server, l.room], [given.server, "family"]);
});

Deno.test("secret: from a file (first line, either line ending) or a variable", async () => {
  for (const text of ["file secret\n", "file secret\r\nsecond line", "file secret"]) {
    const { io } = fakeIo({ files: { "s.txt": text } });
    const l = await lockedRoom(secret({ from: "file", path: "s.txt" }), given, io);
    assert.deepEqual(l.keys, deriveRoomKeys("file secret", "family"));
  }
  const { io } = fakeIo({ env: (k) => k === "V" ? "variable secret" : undefined });
  const l = await lockedRoom(secret({ from: "env", name: "V" }), given, io);
  assert.deepEqual(l.keys, deriveRoomKeys("variable secret", "family"));
});

const readFailures: {
  name: string;
  req: LockRequest;
  io: Parameters<typeof fakeIo>[0];
  err: RegExp;
}[] = [
  {
    name: "no terminal to ask on",
    req: secret({ from: "prompt" }),
    io: { isTerminal: () => false },
    err: /stdin is not a terminal \(use --secret-file FILE or \$P2PCHAT_ROOM_SECRET\)/,
  },
  {
    name: "no terminal for the invite",
    req: { kind: "invite", source: { from: "prompt" } },
    io: { isTerminal: () => false },
    err: /--invite-file FILE or \$P2PCHAT_INVITE/,
  },
  {
    name: "a missing file",
    req: secret({ from: "file", path: "nope.txt" }),
    io: {},
    err: /Cannot read the room secret from nope.txt: no such file/,
  },
  {
    name: "an empty file",
    req: secret({ from: "file", path: "e" }),
    io: { files: { e: "\n" } },
    err: /from e is empty/,
  },
  {
    name: "a short secret",
    req: secret({ from: "prompt" }),
    io: { askHidden: () => Promise.resolve("1234567") },
    err: /shorter than 8 characters \(p2pchat invite makes a strong one\)/,
  },
  {
    name: "a garbled invite",
    req: { kind: "invite", source: { from: "prompt" } },
    io: { askHidden: () => Promise.resolve("p2pchat:!!") },
    err: /Cannot use the invite: it is not base64url/,
  },
];
for (const c of readFailures) {
  Deno.test(`secret: ${c.name} is a usage error`, async () => {
    const { io } = fakeIo(c.io);
    await assert.rejects(lockedRoom(c.req, given, io), (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, c.err);
      return true;
    });
  });
}

Deno.test("secret: an invite names the server and room, and its secret gives the keys", async () => {
  const code = encodeInvite({ server: "10.1.2.3:9000", room: "club", secret: "y".repeat(43) });
  const { io, asked } = fakeIo({ askHidden: () => Promise.resolve(code) });
  const l = await lockedRoom({ kind: "invite", source: { from: "prompt" } }, given, io);
  assert.deepEqual(asked, ["Invite code:"]);
  assert.deepEqual(l.server, { host: "10.1.2.3", port: 9000 });
  assert.equal(l.room, "club");
  assert.deepEqual(l.keys, deriveRoomKeys("y".repeat(43), "club"));
});

Deno.test("invite codes: every truncation and random text is refused without throwing", () => {
  const code = encodeInvite({
    server: "chat.example.org:8848",
    room: "family",
    secret: newSecret(),
  });
  for (let n = 0; n < code.length; n++) {
    const d = decodeInvite(code.slice(0, n));
    assert.equal(d.ok, false, `cut at ${n}`);
  }
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(Math.random() * 120);
    const junk = Array.from({ length: len }, () => chars[Math.floor(Math.random() * 64)]).join("");
    const d = decodeInvite(`p2pchat:${junk}`);
    assert.ok(d.ok === false || typeof d.value.room === "string");
  }
});
