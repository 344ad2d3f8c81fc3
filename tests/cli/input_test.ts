/** What each line typed at the chat prompt (or piped on stdin) turns into. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Command, HELP, parseLine } from "../../lib/cli/input.ts";

const usageMsg = { kind: "error", message: "usage: /msg NAME TEXT" } as const;
const usageTrust = { kind: "error", message: "usage: /trust NAME" } as const;

const cases: { line: string; want: Command }[] = [
  // Nothing to send.
  { line: "", want: { kind: "none" } },
  { line: "   ", want: { kind: "none" } },
  { line: "\t", want: { kind: "none" } },
  { line: "\r", want: { kind: "none" } },
  // Plain text goes to the room as typed; only a script's trailing CR is dropped.
  { line: "hello", want: { kind: "say", text: "hello" } },
  { line: "  hello  there ", want: { kind: "say", text: "  hello  there " } },
  { line: "hello\r", want: { kind: "say", text: "hello" } },
  { line: "héllo 👋", want: { kind: "say", text: "héllo 👋" } },
  { line: " /quit", want: { kind: "say", text: " /quit" } },
  { line: "a/b", want: { kind: "say", text: "a/b" } },
  // "//" sends text that starts with one "/".
  { line: "//", want: { kind: "say", text: "/" } },
  { line: "//etc/hosts", want: { kind: "say", text: "/etc/hosts" } },
  { line: "//msg bob hi", want: { kind: "say", text: "/msg bob hi" } },
  { line: "///", want: { kind: "say", text: "//" } },
  // /msg
  { line: "/msg bob hi", want: { kind: "msg", to: "bob", text: "hi" } },
  { line: "/msg bob hi  there ", want: { kind: "msg", to: "bob", text: "hi  there " } },
  { line: "/msg  bob   hi", want: { kind: "msg", to: "bob", text: "hi" } },
  { line: "/msg bob\thi", want: { kind: "msg", to: "bob", text: "hi" } },
  { line: "/msg bob /quit", want: { kind: "msg", to: "bob", text: "/quit" } },
  { line: "/msg bob hi\r", want: { kind: "msg", to: "bob", text: "hi" } },
  { line: "/msg", want: usageMsg },
  { line: "/msg bob", want: usageMsg },
  { line: "/msg bob ", want: usageMsg },
  // A blank private message is not sent, like a blank line to the room.
  { line: "/msg bob   ", want: usageMsg },
  { line: "/msg bob \t", want: usageMsg },
  // /trust
  { line: "/trust bob", want: { kind: "trust", name: "bob" } },
  { line: "/trust  bob  ", want: { kind: "trust", name: "bob" } },
  { line: "/trust", want: usageTrust },
  { line: "/trust ", want: usageTrust },
  { line: "/trust bob carol", want: usageTrust },
  // Commands without arguments.
  { line: "/peers", want: { kind: "peers" } },
  { line: "/stats", want: { kind: "stats" } },
  { line: "/help", want: { kind: "help" } },
  { line: "/quit", want: { kind: "quit" } },
  { line: "/exit", want: { kind: "quit" } },
  { line: "/quit\r", want: { kind: "quit" } },
  // Unknown commands are refused, never sent to the room as text.
  { line: "/nope", want: { kind: "error", message: "unknown command /nope; try /help" } },
  { line: "/PEERS", want: { kind: "error", message: "unknown command /PEERS; try /help" } },
  { line: "/quitx", want: { kind: "error", message: "unknown command /quitx; try /help" } },
  { line: "/msgbob hi", want: { kind: "error", message: "unknown command /msgbob; try /help" } },
];

for (const c of cases) {
  Deno.test(`input: ${JSON.stringify(c.line)} is ${c.want.kind}`, () => {
    assert.deepEqual(parseLine(c.line), c.want);
  });
}

// A "/" with no command name right after it is a mistake to report, not a crash of the chat.
for (const line of ["/", "/ ", "/ hi", "/\tmsg bob hi"]) {
  Deno.test(`input: ${JSON.stringify(line)} is an error, not a throw`, () => {
    const c = parseLine(line);
    assert.equal(c.kind, "error");
    assert.match(c.kind === "error" ? c.message : "", /try \/help/);
  });
}

Deno.test("input: every command the help lists is understood", () => {
  const names = HELP.map((h) => /^\/(\w+)/.exec(h)?.[1]).filter((n) => n !== undefined);
  assert.deepEqual(names, ["msg", "peers", "trust", "stats", "help", "quit"]);
  for (const n of names) {
    const c = parseLine(`/${n} bob hi`);
    assert.ok(!(c.kind === "error" && c.message.startsWith("unknown")), `/${n}`);
  }
});

Deno.test("input: any line not starting with '/' is sent as typed (property)", () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 40 }).filter((s) => !s.startsWith("/") && s.trim() !== ""),
      (s) => assert.deepEqual(parseLine(s + "\r"), { kind: "say", text: s }),
    ),
  );
});

Deno.test("input: parseLine never throws (property)", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }).map((s) => "/" + s)),
      (s) => assert.equal(typeof parseLine(s).kind, "string"),
    ),
  );
});
