import assert from "node:assert/strict";
import fc from "fast-check";
import { x25519 } from "@noble/curves/ed25519.js";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";
import {
  decodeIdentityFile,
  encodeIdentityFile,
  fingerprint,
  identityFromSecret,
  newIdentity,
  sign,
  verify,
  xPublicFromEd,
} from "../../lib/identity/identity.ts";

// RFC 8032 section 7.1, TEST 1 (empty message). The X25519 values were computed independently
// (u = (1 + y) / (1 - y) mod p; clamped first half of SHA-512(secret)).
const RFC_SECRET = fromHex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
const RFC_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC_SIG = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac" +
  "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
const RFC_X_PUBLIC = "d85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e";
const RFC_X_SECRET = "307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f";
const RFC_FINGERPRINT = "21fe-31df-a154-a261"; // sha256(public) = 21fe31dfa154a261...

const text = new TextEncoder();

Deno.test("identity: RFC 8032 vector gives the published key and signature", () => {
  const id = identityFromSecret(RFC_SECRET);
  assert.equal(toHex(id.edPublic), RFC_PUBLIC);
  assert.equal(toHex(sign(id, new Uint8Array())), RFC_SIG);
  assert.equal(verify(id.edPublic, new Uint8Array(), fromHex(RFC_SIG)), true);
  assert.equal(toHex(id.xPublic), RFC_X_PUBLIC);
  assert.equal(toHex(id.xSecret), RFC_X_SECRET);
  assert.equal(fingerprint(id.edPublic), RFC_FINGERPRINT);
});

Deno.test("identity: keys have the documented sizes and the secret is copied", () => {
  const secret = RFC_SECRET.slice();
  const id = identityFromSecret(secret);
  secret.fill(0);
  assert.equal(toHex(id.edPublic), RFC_PUBLIC);
  for (const k of [id.edSecret, id.edPublic, id.xSecret, id.xPublic]) {
    assert.equal(k.length, 32);
    assert.equal(k.byteLength, k.buffer.byteLength, "owns its buffer");
  }
  assert.equal(sign(id, text.encode("hi")).length, 64);
  assert.throws(() => identityFromSecret(new Uint8Array(31)), /Cannot derive identity/);
});

Deno.test("identity: newIdentity uses the injected random source", () => {
  const fixed = newIdentity((n) => RFC_SECRET.slice(0, n));
  assert.equal(toHex(fixed.edPublic), RFC_PUBLIC);
  assert.notDeepEqual(newIdentity().edPublic, newIdentity().edPublic);
});

Deno.test("identity: sign/verify round trip for generated identities", () => {
  const a = newIdentity();
  const b = newIdentity();
  for (const msg of [new Uint8Array(), text.encode("hello"), new Uint8Array(5000).fill(7)]) {
    const sig = sign(a, msg);
    assert.equal(verify(a.edPublic, msg, sig), true);
    assert.equal(verify(b.edPublic, msg, sig), false, "another key");
  }
});

Deno.test("identity: verify is false on tampered message or signature", () => {
  const id = newIdentity();
  const msg = text.encode("join lobby as alice");
  const sig = sign(id, msg);
  for (let i = 0; i < msg.length; i++) {
    const bad = msg.slice();
    bad[i]! ^= 0x01;
    assert.equal(verify(id.edPublic, bad, sig), false, `message byte ${i}`);
  }
  for (let i = 0; i < sig.length; i++) {
    const bad = sig.slice();
    bad[i]! ^= 0x80;
    assert.equal(verify(id.edPublic, msg, bad), false, `signature byte ${i}`);
  }
  assert.equal(verify(id.edPublic, msg.subarray(1), sig), false);
  assert.equal(verify(id.edPublic, new Uint8Array([...msg, 0]), sig), false);
});

Deno.test("identity: verify never throws on malformed lengths or types", () => {
  const id = newIdentity();
  const msg = text.encode("m");
  const sig = sign(id, msg);
  for (const len of [0, 1, 31, 33, 63, 64, 65, 128]) {
    assert.equal(verify(new Uint8Array(len), msg, sig), false, `public of ${len} bytes`);
    if (len !== 64) {
      const resized = new Uint8Array(len);
      resized.set(sig.subarray(0, len));
      assert.equal(verify(id.edPublic, msg, resized), false, `real sig resized to ${len} bytes`);
    }
    assert.equal(verify(id.edPublic, msg, new Uint8Array(len)), false, `sig of ${len} zeros`);
  }
  const notBytes = [undefined, null, "x", 7, [1, 2], {}] as unknown as Uint8Array[];
  for (const junk of notBytes) {
    assert.equal(verify(junk, msg, sig), false);
    assert.equal(verify(id.edPublic, junk, sig), false);
    assert.equal(verify(id.edPublic, msg, junk), false);
  }
  // Small-order public key (the identity point) with an all-zero-ish signature: refused.
  const identityPoint = new Uint8Array(32);
  identityPoint[0] = 1;
  const trivialSig = new Uint8Array(64);
  trivialSig[0] = 1;
  assert.equal(verify(identityPoint, msg, trivialSig), false);
});

Deno.test("identity: verify on random bytes is false and never throws (property)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 70 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.uint8Array({ maxLength: 70 }),
      (pk, msg, sig) => verify(pk, msg, sig) === false,
    ),
    { numRuns: 300 },
  );
});

Deno.test("identity: derived X25519 keys agree on a shared secret", () => {
  const a = newIdentity();
  const b = newIdentity();
  const ab = x25519.getSharedSecret(a.xSecret, b.xPublic);
  const ba = x25519.getSharedSecret(b.xSecret, a.xPublic);
  assert.deepEqual(ab, ba);
  assert.deepEqual(x25519.getPublicKey(a.xSecret), a.xPublic);
  assert.deepEqual(xPublicFromEd(a.edPublic), a.xPublic);
  assert.deepEqual(xPublicFromEd(fromHex(RFC_PUBLIC)), fromHex(RFC_X_PUBLIC));
});

Deno.test("identity: xPublicFromEd is null for invalid keys and never throws", () => {
  const notOnCurve = new Uint8Array(32);
  notOnCurve[0] = 2; // y = 2 has no x
  const identityPoint = new Uint8Array(32);
  identityPoint[0] = 1;
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array()],
    ["31 bytes", new Uint8Array(31)],
    ["33 bytes", new Uint8Array(33)],
    ["not on the curve", notOnCurve],
    ["identity point", identityPoint],
    ["order 2 point", fromHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")],
    ["not bytes", "abc" as unknown as Uint8Array],
  ];
  for (const [name, key] of cases) assert.equal(xPublicFromEd(key), null, name);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (k) => {
      const x = xPublicFromEd(k);
      return x === null || x.length === 32;
    }),
    { numRuns: 200 },
  );
});

Deno.test("identity: fingerprint is four groups of four hex digits", () => {
  for (let i = 0; i < 20; i++) {
    assert.match(fingerprint(newIdentity().edPublic), /^[0-9a-f]{4}(-[0-9a-f]{4}){3}$/);
  }
  assert.equal(fingerprint(fromHex(RFC_PUBLIC)), RFC_FINGERPRINT);
});

Deno.test("identity file: encodes the documented JSON and round trips", () => {
  const id = identityFromSecret(RFC_SECRET);
  const encoded = encodeIdentityFile(id);
  assert.equal(
    encoded,
    `{"version":1,"ed25519_secret":"${toHex(RFC_SECRET)}","public":"${RFC_PUBLIC}",` +
      `"fingerprint":"${RFC_FINGERPRINT}"}\n`,
  );
  const decoded = decodeIdentityFile(encoded);
  assert.ok(decoded.ok);
  assert.deepEqual(decoded.value, id);
  const fresh = newIdentity();
  const again = decodeIdentityFile(encodeIdentityFile(fresh));
  assert.ok(again.ok);
  assert.deepEqual(again.value, fresh);
});

Deno.test("identity file: accepts upper-case hex, pretty printing and no fingerprint", () => {
  const file = {
    version: 1,
    ed25519_secret: toHex(RFC_SECRET).toUpperCase(),
    public: RFC_PUBLIC.toUpperCase(),
  };
  const decoded = decodeIdentityFile(JSON.stringify(file, null, 2));
  assert.ok(decoded.ok);
  assert.equal(toHex(decoded.value.edPublic), RFC_PUBLIC);
});

const good = {
  version: 1,
  ed25519_secret: toHex(RFC_SECRET),
  public: RFC_PUBLIC,
  fingerprint: RFC_FINGERPRINT,
};
const rejections: { name: string; text: string; reason: RegExp }[] = [
  { name: "empty", text: "", reason: /not valid JSON/ },
  { name: "bad JSON", text: "{version:1", reason: /not valid JSON/ },
  { name: "array", text: "[1]", reason: /not a JSON object/ },
  { name: "null", text: "null", reason: /not a JSON object/ },
  { name: "no version", text: JSON.stringify({ ...good, version: undefined }), reason: /version/ },
  { name: "version 2", text: JSON.stringify({ ...good, version: 2 }), reason: /version 2/ },
  {
    name: "short secret",
    text: JSON.stringify({ ...good, ed25519_secret: good.ed25519_secret.slice(2) }),
    reason: /ed25519_secret/,
  },
  {
    name: "non-hex secret",
    text: JSON.stringify({ ...good, ed25519_secret: "zz" + good.ed25519_secret.slice(2) }),
    reason: /ed25519_secret/,
  },
  {
    name: "secret not a string",
    text: JSON.stringify({ ...good, ed25519_secret: 5 }),
    reason: /ed25519_secret/,
  },
  { name: "no public", text: JSON.stringify({ ...good, public: undefined }), reason: /public/ },
  {
    name: "mismatched public",
    text: JSON.stringify({ ...good, public: toHex(newIdentity().edPublic) }),
    reason: /public does not match/,
  },
  {
    name: "mismatched fingerprint",
    text: JSON.stringify({ ...good, fingerprint: "0000-0000-0000-0000" }),
    reason: /fingerprint does not match/,
  },
];
for (const c of rejections) {
  Deno.test(`identity file: rejects ${c.name}`, () => {
    const decoded = decodeIdentityFile(c.text);
    assert.equal(decoded.ok, false);
    if (!decoded.ok) assert.match(decoded.reason, c.reason);
  });
}

Deno.test("identity file: decoding random text never throws (property)", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json()), (s) => {
      const decoded = decodeIdentityFile(s);
      return decoded.ok === false;
    }),
    { numRuns: 500 },
  );
});
