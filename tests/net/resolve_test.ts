/** The server address as typed becomes the one datagrams from it are reported with. */
import assert from "node:assert/strict";
import { canonicalIp, resolveAddr } from "../../lib/net/resolve.ts";

const cases: [string, string | null][] = [
  ["198.51.100.2", "198.51.100.2"],
  ["2001:DB8:0:0::1", "2001:db8::1"],
  ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
  ["::ffff:198.51.100.2", "198.51.100.2"],
  ["0:0::1", "::1"],
  ["example.org", null],
];
for (const [host, want] of cases) {
  Deno.test(`resolve: ${host} -> ${want}`, () => assert.equal(canonicalIp(host), want));
}

Deno.test("resolve: IPv6 literals are accepted, not refused", async () => {
  assert.deepEqual(await resolveAddr({ host: "2001:db8::1", port: 8848 }), {
    host: "2001:db8::1",
    port: 8848,
  });
  assert.deepEqual(await resolveAddr({ host: "localhost", port: 1 }).then((a) => a.port), 1);
});
