/** The command tree, driven in-process: no spawning, no exits. */
import assert from "node:assert/strict";
import { parseArgs, UsageError } from "../../lib/cli/program.ts";
import { parseLine } from "../../lib/cli/input.ts";

function run(argv: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io = {
    out: (s: string) => out.push(s),
    err: (s: string) => err.push(s),
    env: (k: string) => env[k],
  };
  return { inv: parseArgs(argv, io, "9.9.9"), out: out.join(""), err: err.join("") };
}

function usage(argv: string[], env: Record<string, string> = {}): string {
  try {
    run(argv, env);
  } catch (e) {
    assert.ok(e instanceof UsageError, `expected a UsageError, got ${e}`);
    return e.message;
  }
  assert.fail(`expected ${argv.join(" ")} to be refused`);
}

Deno.test("cli: join defaults", () => {
  const { inv } = run(["join", "--name", "alice"]);
  assert.equal(inv.cmd, "join");
  if (inv.cmd !== "join") return;
  assert.deepEqual(inv.server, { host: "127.0.0.1", port: 8848 });
  assert.equal(inv.room, "lobby");
  assert.equal(inv.port, 0);
  assert.equal(inv.json, false);
  assert.equal(inv.keepaliveMs, 15000);
  assert.ok(inv.ackTimeoutMs >= 300 && inv.ackTimeoutMs <= 500);
  assert.equal(inv.predictPorts, 4);
  const off = run(["join", "--name", "alice", "--predict-ports", "0"]).inv;
  assert.ok(off.cmd === "join" && off.predictPorts === 0);
});

Deno.test("cli: --server from P2PCHAT_SERVER, flag wins over env", () => {
  const a = run(["join", "--name", "a"], { P2PCHAT_SERVER: "example.org:9000" }).inv;
  assert.ok(a.cmd === "join" && a.server.host === "example.org" && a.server.port === 9000);
  const b = run(["join", "--name", "a", "--server", "10.1.2.3"], { P2PCHAT_SERVER: "x:1" }).inv;
  assert.ok(b.cmd === "join" && b.server.host === "10.1.2.3" && b.server.port === 8848);
});

Deno.test("cli: serve defaults", () => {
  const { inv } = run(["serve"]);
  assert.ok(inv.cmd === "serve" && inv.port === 8848 && inv.host === "0.0.0.0");
});

Deno.test("cli: --help and --version print and do nothing else", () => {
  const h = run(["--help"]);
  assert.equal(h.inv.cmd, "none");
  assert.match(h.out, /serve/);
  assert.match(h.out, /join/);
  assert.match(run(["join", "--help"]).out, /--server <host:port\|url>/);
  assert.doesNotMatch(run(["join", "--help"]).out, /test-drop-direct/, "test hooks stay hidden");
  assert.equal(run(["--version"]).out.trim(), "9.9.9");
});

const mistakes: [string, string[], RegExp, Record<string, string>?][] = [
  ["unknown flag", ["join", "--nme", "x"], /unknown option '--nme'/],
  ["unknown command", ["chat"], /unknown command 'chat'/],
  ["bad port", ["serve", "--port", "70000"], /--port must be a whole number/],
  ["bad server", ["join", "--name", "a", "--server", "1.2.3:x"], /not HOST:PORT/],
  ["bad server port", ["join", "--name", "a", "--server", "host:0"], /not a port/],
  ["bad name", ["join", "--name", "a b"], /not a valid name/],
  ["long name", ["join", "--name", "x".repeat(33)], /not a valid name/],
  ["bad env server", ["join", "--name", "a"], /P2PCHAT_SERVER/, { P2PCHAT_SERVER: "::" }],
  ["bad keepalive", ["join", "--name", "a", "--keepalive", "0"], /seconds/],
  ["bad log level", ["serve", "--log-level", "loud"], /log-level/],
  ["bad predict-ports", ["join", "--name", "a", "--predict-ports", "65"], /from 0 to 64/],
];
for (const [what, argv, re, env] of mistakes) {
  Deno.test(`cli: ${what} is a one-line usage error`, () => {
    const m = usage(argv, env);
    assert.match(m, re);
    assert.equal(m.includes("\n    at "), false, "no stack trace");
  });
}

Deno.test("chat input: commands parse", () => {
  assert.deepEqual(parseLine("hi there"), { kind: "say", text: "hi there" });
  assert.deepEqual(parseLine("/msg bob hi  there"), { kind: "msg", to: "bob", text: "hi  there" });
  assert.deepEqual(parseLine("/msg bob"), { kind: "error", message: "usage: /msg NAME TEXT" });
  assert.deepEqual(parseLine("/peers"), { kind: "peers" });
  assert.deepEqual(parseLine("/quit"), { kind: "quit" });
  assert.deepEqual(parseLine("//etc"), { kind: "say", text: "/etc" });
  assert.deepEqual(parseLine("   "), { kind: "none" });
  assert.equal(parseLine("/nope").kind, "error");
});

Deno.test("cli: help shows defaults in the units the flags take", () => {
  const join = run(["join", "--help"]).out.replace(/\s+/g, " ");
  assert.match(
    join,
    /--server <host:port\|url> rendezvous server; .* \(env P2PCHAT_SERVER\) \(default: 127\.0\.0\.1:8848\)/,
  );
  assert.match(join, /--keepalive <seconds> .*?\(default: 15\)/);
  assert.match(join, /--retry-direct <seconds> .*?\(default: 30\)/);
  const serve = run(["serve", "--help"]).out.replace(/\s+/g, " ");
  assert.match(serve, /--keepalive <seconds> .*?\(default: 15\)/);
  assert.match(serve, /--name-ttl <seconds> .*?\(default: 86400\)/);
  // ... and the parsed values stay in ms.
  const inv = run(["serve"]).inv;
  assert.ok(inv.cmd === "serve" && inv.keepaliveMs === 15_000 && inv.nameTtlMs === 86_400_000);
});

Deno.test("cli: /trust and /stats parse", () => {
  assert.deepEqual(parseLine("/trust bob"), { kind: "trust", name: "bob" });
  assert.equal(parseLine("/trust").kind, "error");
  assert.deepEqual(parseLine("/stats"), { kind: "stats" });
});

Deno.test("cli: nat defaults, --server, --stun, env, --json, --timeout", () => {
  const d = run(["nat"]).inv;
  assert.deepEqual(d, {
    cmd: "nat",
    target: { host: "127.0.0.1", port: 8848 },
    kind: "p2pchat",
    json: false,
    timeoutMs: 1200,
    portmap: true,
  });
  const s = run(["nat", "--stun", "stun.example.org", "--json", "--timeout", "2.5"]).inv;
  assert.deepEqual(s, {
    cmd: "nat",
    target: { host: "stun.example.org", port: 3478 },
    kind: "stun",
    json: true,
    timeoutMs: 2500,
    portmap: true,
  });
  const np = run(["nat", "--no-portmap"]).inv;
  assert.ok(np.cmd === "nat" && np.portmap === false);
  const e = run(["nat"], { P2PCHAT_SERVER: "10.1.2.3:9000" }).inv;
  assert.ok(e.cmd === "nat" && e.target.host === "10.1.2.3" && e.target.port === 9000);
  const f = run(["nat", "--server", "10.9.9.9"], { P2PCHAT_SERVER: "10.1.2.3:9000" }).inv;
  assert.ok(f.cmd === "nat" && f.target.host === "10.9.9.9" && f.target.port === 8848);
  assert.match(
    run(["nat", "--help"]).out.replace(/\s+/g, " "),
    /--timeout <seconds> .*?\(default: 1\.2\)/,
  );
});

Deno.test("cli: serve --alt-host and --alt-port", () => {
  const plain = run(["serve"]).inv;
  assert.ok(plain.cmd === "serve" && plain.altHost === undefined && plain.altPort === undefined);
  const full = run(["serve", "--host", "198.51.100.2", "--alt-host", "198.51.100.3"]).inv;
  assert.ok(full.cmd === "serve" && full.altHost === "198.51.100.3" && full.altPort === undefined);
  const none = run(["serve", "--alt-port", "0"]).inv;
  assert.ok(none.cmd === "serve" && none.altPort === 0);
});

const natMistakes: [string, string[], RegExp, Record<string, string>?][] = [
  ["nat: both --server and --stun", ["nat", "--server", "a:1", "--stun", "b:2"], /together/],
  ["nat: bad --stun", ["nat", "--stun", "1.2.3:x"], /not HOST:PORT/],
  ["nat: bad --timeout", ["nat", "--timeout", "0.1"], /seconds from 0\.2 to 30/],
  ["nat: unknown flag", ["nat", "--mapping"], /unknown option '--mapping'/],
  ["nat: bad env server", ["nat"], /P2PCHAT_SERVER/, { P2PCHAT_SERVER: "::" }],
  ["serve: --alt-host on 0.0.0.0", ["serve", "--alt-host", "198.51.100.3"], /--host must be/],
  [
    "serve: --alt-host not an address",
    ["serve", "--host", "10.0.0.1", "--alt-host", "x.org"],
    /not an IPv4/,
  ],
  [
    "serve: --alt-host = --host",
    ["serve", "--host", "10.0.0.1", "--alt-host", "10.0.0.1"],
    /differ/,
  ],
  ["serve: --alt-host with --alt-port 0", [
    "serve",
    "--host",
    "10.0.0.1",
    "--alt-host",
    "10.0.0.2",
    "--alt-port",
    "0",
  ], /needs both/],
  ["serve: --alt-port = --port", ["serve", "--port", "3478", "--alt-port", "3478"], /differ/],
  ["serve: bad --alt-port", ["serve", "--alt-port", "65536"], /--alt-port must be a whole number/],
];
for (const [what, argv, re, env] of natMistakes) {
  Deno.test(`cli: ${what} is a one-line usage error`, () => {
    const m = usage(argv, env);
    assert.match(m, re);
    assert.equal(m.includes("\n"), false, "one line");
  });
}

Deno.test("cli: join's WebSocket: a fallback by default, a ws:// --server uses nothing else", () => {
  const def = run(["join", "--name", "a", "--server", "10.1.2.3:9000"]).inv;
  assert.ok(def.cmd === "join");
  assert.deepEqual(def.websocket, { url: "ws://10.1.2.3:9000/p2pchat", only: false });
  const v6 = run(["join", "--name", "a", "--server", "[2001:db8::1]:8848"]).inv;
  assert.ok(v6.cmd === "join");
  assert.deepEqual(v6.websocket, { url: "ws://[2001:db8::1]:8848/p2pchat", only: false });
  const off = run(["join", "--name", "a", "--no-websocket"]).inv;
  assert.ok(off.cmd === "join" && off.websocket === null);
  const ws = run(["join", "--name", "a", "--server", "ws://example.org:8848"]).inv;
  assert.ok(ws.cmd === "join");
  assert.deepEqual(ws.server, { host: "example.org", port: 8848 });
  assert.deepEqual(ws.websocket, { url: "ws://example.org:8848/p2pchat", only: true });
  const wss = run(["join", "--name", "a", "--server", "wss://chat.example.org/p2pchat"]).inv;
  assert.ok(wss.cmd === "join");
  assert.deepEqual(wss.server, { host: "chat.example.org", port: 443 });
  assert.deepEqual(wss.websocket, { url: "wss://chat.example.org/p2pchat", only: true });
  const env = run(["join", "--name", "a"], { P2PCHAT_SERVER: "ws://[::1]:9000/x" }).inv;
  assert.ok(env.cmd === "join");
  assert.deepEqual(env.server, { host: "::1", port: 9000 });
  assert.deepEqual(env.websocket, { url: "ws://[::1]:9000/x", only: true });
  const proxied = run([
    "join",
    "--name",
    "a",
    "--server",
    "example.org",
    "--websocket-url",
    "https://example.org",
  ]).inv;
  assert.ok(proxied.cmd === "join");
  assert.deepEqual(proxied.websocket, { url: "wss://example.org/p2pchat", only: false });
});

Deno.test("cli: join refuses a bad WebSocket URL or a contradiction in one line", () => {
  assert.match(usage(["join", "--name", "a", "--server", "ftp://x"]), /not HOST:PORT or a ws/);
  assert.match(usage(["join", "--name", "a", "--server", "ws://u:p@x"]), /not HOST:PORT or a ws/);
  assert.match(
    usage(["join", "--name", "a", "--server", "ws://x", "--no-websocket"]),
    /Cannot use --no-websocket/,
  );
  assert.match(
    usage(["join", "--name", "a", "--server", "ws://x", "--websocket-url", "ws://y"]),
    /Cannot use --websocket-url/,
  );
  assert.match(usage(["join", "--name", "a", "--websocket-url", "x"]), /not a ws/);
});

Deno.test("cli: join tries TCP punching unless --no-tcp-punch", () => {
  const on = run(["join", "--name", "a"]).inv;
  assert.ok(on.cmd === "join" && on.tcpPunch === true);
  const off = run(["join", "--name", "a", "--no-tcp-punch"]).inv;
  assert.ok(off.cmd === "join" && off.tcpPunch === false);
});
