/**
 * Dual-stack sockets: one socket on "::" talks to IPv4 and IPv6 hosts, reports IPv4 senders as
 * plain IPv4 (never `::ffff:a.b.c.d`) and sends to IPv4 addresses as given; so does batched
 * UDP (lib/net/mmsg.ts) where it can be used.
 */
import assert from "node:assert/strict";
import { DUAL_STACK_HOST, openUdp, type UdpOptions, unmapHost } from "../../lib/net/udp.ts";
import { mmsgUsable } from "../../lib/net/mmsg.ts";
import { hasIpv6Loopback } from "../_helpers/ipv6.ts";
import type { Addr } from "../../lib/wire/addr.ts";

const hosts: [string, string][] = [
  ["::ffff:198.51.100.2", "198.51.100.2"],
  ["::ffff:127.0.0.1", "127.0.0.1"],
  ["198.51.100.2", "198.51.100.2"],
  ["2001:db8::1", "2001:db8::1"],
  ["::1", "::1"],
  ["::ffff:c633:6402", "::ffff:c633:6402"], // not how Deno writes one: left alone
  ["::", "::"],
];
for (const [host, want] of hosts) {
  Deno.test(`dual stack: ${host} is reported as ${want}`, () =>
    assert.equal(unmapHost(host), want));
}

async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const modes: { name: string; opts: UdpOptions }[] = [
  { name: "Deno.DatagramConn", opts: {} },
  // Batched where FFI is granted (tests run with -A on Linux), else the same fallback.
  { name: "batched asked for", opts: { batched: true } },
];
for (const mode of modes) {
  Deno.test({
    name: `dual stack (${mode.name}): one "::" socket echoes IPv4 and IPv6, senders unmapped`,
    ignore: !hasIpv6Loopback(),
    fn: async () => {
      const seen: Addr[] = [];
      const server = openUdp(DUAL_STACK_HOST, 0, (bytes, from) => {
        seen.push(from);
        server.send(bytes.slice(), from); // to the IPv4 address as reported: mapped on the way
      }, mode.opts);
      const got: string[] = [];
      const v4 = openUdp("127.0.0.1", 0, (_b, from) => got.push(`v4 from ${from.host}`));
      const v6 = openUdp("::1", 0, (_b, from) => got.push(`v6 from ${from.host}`));
      try {
        assert.equal(server.local.host, "::");
        const batched = "batched" in server && server.batched === true;
        assert.equal(batched, mode.opts.batched === true && mmsgUsable("::"), "batched or not");
        v4.send(new Uint8Array([4]), { host: "127.0.0.1", port: server.local.port });
        v6.send(new Uint8Array([6]), { host: "::1", port: server.local.port });
        await until(() => got.length === 2, 5000, "both echoes");
        assert.deepEqual(
          seen.map((a) => a.host).sort(),
          ["127.0.0.1", "::1"],
          "an IPv4 sender is plain IPv4",
        );
        assert.deepEqual(got.sort(), ["v4 from 127.0.0.1", "v6 from ::1"]);
        assert.equal(server.sendErrors, 0);
      } finally {
        for (const u of [server, v4, v6]) u.close();
        await Promise.all([server.done, v4.done, v6.done]);
      }
    },
  });
}

Deno.test("dual stack: an IPv4 socket counts a send to IPv6 as an error, never throws", async () => {
  const u = openUdp("127.0.0.1", 0, () => {});
  try {
    u.send(new Uint8Array(1), { host: "::1", port: 9 });
    await until(() => u.sendErrors === 1, 5000, "the failed send");
  } finally {
    u.close();
    await u.done;
  }
});
