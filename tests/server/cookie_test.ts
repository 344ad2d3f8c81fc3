/** Registration cookies: only the address they were sent to can echo them, for 60-120 s. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { Cookies } from "../../lib/server/cookie.ts";
import { COOKIE_LEN } from "../../lib/wire/codec.ts";
import type { Addr } from "../../lib/wire/addr.ts";

const MINUTE = 60_000;
const secret = new Uint8Array(32).fill(1);
const A: Addr = { host: "198.51.100.10", port: 4000 };
const cookies = new Cookies(secret);

Deno.test("cookie: one cookie per address and minute, of the wire length", () => {
  const c = cookies.make(A, 1000);
  assert.equal(c.length, COOKIE_LEN);
  assert.deepEqual(new Cookies(secret).make(A, 59_999), c, "stateless: same inputs, same cookie");
  assert.notDeepEqual(cookies.make(A, MINUTE), c, "a new minute, a new cookie");
  assert.notDeepEqual(cookies.make({ ...A, port: 4001 }, 1000), c);
});

const cases: {
  name: string;
  madeAt: number;
  checkedAt: number;
  from?: Addr;
  secret?: Uint8Array;
  ok: boolean;
}[] = [
  { name: "echoed at once", madeAt: 1000, checkedAt: 1000, ok: true },
  {
    name: "echoed from another port",
    madeAt: 0,
    checkedAt: 0,
    from: { ...A, port: 4001 },
    ok: false,
  },
  {
    name: "echoed from another host",
    madeAt: 0,
    checkedAt: 0,
    from: { ...A, host: "198.51.100.11" },
    ok: false,
  },
  {
    name: "echoed from an IPv6 host",
    madeAt: 0,
    checkedAt: 0,
    from: { host: "2001:db8::10", port: 4000 },
    ok: false,
  },
  {
    name: "to a restarted server (new secret)",
    madeAt: 0,
    checkedAt: 0,
    secret: new Uint8Array(32),
    ok: false,
  },
  // Valid in the minute it was made and the next one.
  { name: "made at 0, checked at 119.999 s", madeAt: 0, checkedAt: 2 * MINUTE - 1, ok: true },
  { name: "made at 0, checked at 120 s", madeAt: 0, checkedAt: 2 * MINUTE, ok: false },
  { name: "made at 59.999 s, checked at 60 s", madeAt: MINUTE - 1, checkedAt: MINUTE, ok: true },
  {
    name: "made at 59.999 s, checked at 120 s",
    madeAt: MINUTE - 1,
    checkedAt: 2 * MINUTE,
    ok: false,
  },
  {
    name: "made at 90 s, checked at 179.999 s",
    madeAt: 90_000,
    checkedAt: 3 * MINUTE - 1,
    ok: true,
  },
  { name: "fractional clock (performance.now)", madeAt: 59_999.5, checkedAt: 119_999.9, ok: true },
  { name: "checked in an earlier minute", madeAt: MINUTE, checkedAt: MINUTE - 1, ok: false },
  { name: "checked an hour later", madeAt: 0, checkedAt: 60 * MINUTE, ok: false },
];

for (const c of cases) {
  Deno.test(`cookie: ${c.name} is ${c.ok ? "accepted" : "rejected"}`, () => {
    const cookie = cookies.make(A, c.madeAt);
    const checker = c.secret ? new Cookies(c.secret) : cookies;
    assert.equal(checker.check(cookie, c.from ?? A, c.checkedAt), c.ok);
  });
}

Deno.test("cookie: valid for at least 60 s and at most 120 s, whenever made (property)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (t) => {
      const c = cookies.make(A, t);
      assert.ok(cookies.check(c, A, t + MINUTE - 1), "60 s later");
      assert.ok(!cookies.check(c, A, t + 2 * MINUTE), "120 s later");
    }),
  );
});

Deno.test("cookie: every single-bit change is rejected", () => {
  const good = cookies.make(A, 0);
  for (let bit = 0; bit < good.length * 8; bit++) {
    const bad = good.slice();
    bad[bit >> 3]! ^= 0x80 >> (bit & 7);
    assert.equal(cookies.check(bad, A, 0), false, `bit ${bit}`);
  }
  assert.ok(cookies.check(good, A, 0), "the original still passes");
});

const badShapes: { name: string; bytes: Uint8Array }[] = [
  { name: "empty", bytes: new Uint8Array(0) },
  { name: "all zeros", bytes: new Uint8Array(COOKIE_LEN) },
  { name: "truncated by one byte", bytes: cookies.make(A, 0).subarray(0, COOKIE_LEN - 1) },
  { name: "one byte too long", bytes: Uint8Array.from([...cookies.make(A, 0), 0]) },
];

for (const c of badShapes) {
  Deno.test(`cookie: ${c.name} is rejected`, () => {
    assert.equal(cookies.check(c.bytes, A, 0), false);
  });
}
