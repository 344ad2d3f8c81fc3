/**
 * What a source IP counts as: its limit key, whether it may be announced as a LAN address, and
 * whether it is global IPv6 (announced a few at a time).
 */
import assert from "node:assert/strict";
import { isGlobalV6, isLanAddress, limitKey } from "../../lib/server/ip.ts";

const lan: [string, boolean][] = [
  ["10.1.2.3", true],
  ["172.16.0.1", true],
  ["172.31.255.255", true],
  ["172.32.0.1", false],
  ["192.168.1.1", true],
  ["192.169.0.1", false],
  ["100.64.0.1", true],
  ["100.127.255.255", true],
  ["100.128.0.1", false],
  ["169.254.1.1", true],
  ["127.0.0.1", true],
  ["192.0.2.2", true],
  ["198.18.5.5", true],
  ["198.20.0.1", false],
  ["8.8.8.8", false],
  ["1.1.1.1", false],
  ["224.0.0.1", false],
  ["255.255.255.255", false],
  ["0.0.0.0", false],
  ["fc00::1", true],
  ["fd12:3456::2", true],
  ["fe80::1", true],
  ["febf::1", true],
  ["fec0::1", false],
  ["::1", true],
  ["::", false],
  // The documentation prefix is global unicast now: labs number their IPv6 internet from it.
  ["2001:db8::1", false],
  ["2001:db8:ffff::2", false],
  ["2606:4700:4700::1111", false],
  ["ff02::1", false],
  ["::ffff:10.0.0.1", true],
  ["::ffff:8.8.8.8", false],
  ["not-an-ip", false],
];
for (const [host, want] of lan) {
  Deno.test(`ip: ${host} is ${want ? "" : "not "}a LAN address`, () => {
    assert.equal(isLanAddress(host), want);
  });
}

const global6: [string, boolean][] = [
  ["2001:db8::1", true],
  ["2001:db8:ffff::2", true],
  ["2606:4700:4700::1111", true],
  ["3fff::1", true],
  ["2000::", true],
  ["4000::1", false],
  ["1fff::1", false],
  ["fd12:3456::2", false],
  ["fe80::1", false],
  ["::1", false],
  ["::", false],
  ["ff02::1", false],
  ["::ffff:8.8.8.8", false],
  ["8.8.8.8", false],
  ["not-an-ip", false],
];
for (const [host, want] of global6) {
  Deno.test(`ip: ${host} is ${want ? "" : "not "}global IPv6`, () => {
    assert.equal(isGlobalV6(host), want);
  });
}

Deno.test("ip: limit keys are the IPv4 address (also v4-mapped) or the IPv6 /64", () => {
  assert.equal(limitKey("198.51.100.7"), "198.51.100.7");
  assert.equal(limitKey("::ffff:198.51.100.7"), "198.51.100.7");
  assert.equal(limitKey("2001:db8:1:2:aaaa::1"), limitKey("2001:db8:1:2:bbbb::9"));
  assert.notEqual(limitKey("2001:db8:1:2::1"), limitKey("2001:db8:1:3::1"));
  assert.notEqual(limitKey("::ffff:198.51.100.7"), limitKey("::ffff:198.51.100.8"));
});
