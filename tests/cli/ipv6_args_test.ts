/** IPv6 on the command line: a dual-stack server host, and IPv6 server addresses for join and nat. */
import assert from "node:assert/strict";
import { parseArgs } from "../../lib/cli/program.ts";

function parse(argv: string[]) {
  const io = { out: () => {}, err: () => {}, env: () => undefined };
  return parseArgs(argv, io, "9.9.9");
}

const servers: [string, { host: string; port: number }][] = [
  ["[2001:db8::1]:8848", { host: "2001:db8::1", port: 8848 }],
  ["[2001:db8::1]", { host: "2001:db8::1", port: 8848 }],
  ["[::1]:9000", { host: "::1", port: 9000 }],
];
for (const [text, want] of servers) {
  Deno.test(`ipv6 args: join --server ${text}`, () => {
    const inv = parse(["join", "--name", "a", "--server", text]);
    assert.ok(inv.cmd === "join");
    assert.deepEqual(inv.server, want);
  });
  Deno.test(`ipv6 args: nat --server ${text}`, () => {
    const inv = parse(["nat", "--server", text]);
    assert.ok(inv.cmd === "nat");
    assert.deepEqual(inv.target, want);
  });
}

Deno.test("ipv6 args: serve --host :: (one dual-stack socket)", () => {
  const inv = parse(["serve", "--host", "::"]);
  assert.ok(inv.cmd === "serve");
  assert.equal(inv.host, "::");
});

Deno.test("ipv6 args: --alt-host still needs an IPv4 --host, not ::", () => {
  assert.throws(() => parse(["serve", "--host", "::", "--alt-host", "198.51.100.3"]), /IPv4/);
});

Deno.test("ipv6 args: an IPv6 server without brackets is refused", () => {
  assert.throws(() => parse(["join", "--name", "a", "--server", "2001:db8::1"]), /\[ADDR\]:PORT/);
});
