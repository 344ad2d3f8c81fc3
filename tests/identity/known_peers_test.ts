import assert from "node:assert/strict";
import fc from "fast-check";
import { fingerprint, newIdentity } from "../../lib/identity/identity.ts";
import { decodeKnownPeers, encodeKnownPeers, KnownPeers } from "../../lib/identity/known_peers.ts";

const BOB = "example.org:7777/lobby/bob";
const FP1 = "3f1c-09ab-77d2-e410";
const FP2 = "0000-1111-2222-3333";

Deno.test("known peers: new, then match, then changed", () => {
  const peers = new KnownPeers();
  assert.equal(peers.check(BOB, FP1), "new");
  assert.equal(peers.get(BOB), undefined);
  peers.pin(BOB, FP1);
  assert.equal(peers.check(BOB, FP1), "match");
  assert.equal(peers.check(BOB, FP2), "changed");
  assert.equal(peers.get(BOB), FP1);
  assert.equal(peers.check("example.org:7777/lobby/carol", FP1), "new", "keys are separate");
  peers.pin(BOB, FP2);
  assert.equal(peers.check(BOB, FP2), "match", "re-pinning accepts the new key");
  assert.equal(peers.check(BOB, FP1), "changed");
});

Deno.test("known peers: constructor entries and toJSON (sorted, a copy)", () => {
  const peers = new KnownPeers({ z: FP1, a: FP2 });
  assert.equal(peers.check("a", FP2), "match");
  const json = peers.toJSON();
  assert.deepEqual(Object.keys(json), ["a", "z"]);
  json.a = FP1;
  assert.equal(peers.get("a"), FP2);
});

Deno.test("known peers: malformed fingerprints are refused when pinning", () => {
  const peers = new KnownPeers();
  for (const bad of ["", "3f1c09ab77d2e410", "3F1C-09AB-77D2-E410", "3f1c-09ab-77d2-e41"]) {
    assert.throws(() => peers.pin(BOB, bad), /Cannot pin/);
  }
  assert.throws(() => new KnownPeers({ [BOB]: "nope" }), /Cannot pin/);
  assert.equal(peers.get(BOB), undefined);
});

Deno.test("known peers file: round trip, including awkward keys", () => {
  const peers = new KnownPeers();
  const keys = [BOB, "[::1]:7777/room with space/ünï", "__proto__", "constructor", ""];
  for (const k of keys) peers.pin(k, fingerprint(newIdentity().edPublic));
  const text = encodeKnownPeers(peers);
  assert.ok(text.endsWith("}\n"));
  assert.equal(JSON.parse(text).version, 1);
  const decoded = decodeKnownPeers(text);
  assert.ok(decoded.ok);
  for (const k of keys) assert.equal(decoded.value.check(k, peers.get(k)!), "match", k);
  assert.deepEqual(decoded.value.toJSON(), peers.toJSON());
  assert.equal(Object.getPrototypeOf(decoded.value.toJSON()), Object.prototype);
});

Deno.test("known peers file: the documented format", () => {
  const decoded = decodeKnownPeers(`{"version":1,"peers":{"${BOB}":"${FP1}"}}`);
  assert.ok(decoded.ok);
  assert.equal(decoded.value.check(BOB, FP1), "match");
  assert.equal(
    encodeKnownPeers(decoded.value),
    `{\n  "version": 1,\n  "peers": {\n    "${BOB}": "${FP1}"\n  }\n}\n`,
  );
});

const corrupt: [string, string, RegExp][] = [
  ["empty", "", /not valid JSON/],
  ["truncated", `{"version":1,"peers":{`, /not valid JSON/],
  ["a string", `"x"`, /not a JSON object/],
  ["no version", `{"peers":{}}`, /version/],
  ["future version", `{"version":9,"peers":{}}`, /version 9/],
  ["peers is a list", `{"version":1,"peers":[]}`, /peers is not/],
  ["no peers", `{"version":1}`, /peers is not/],
  ["number fingerprint", `{"version":1,"peers":{"a":5}}`, /peer "a"/],
  ["bad fingerprint", `{"version":1,"peers":{"a":"xyz"}}`, /peer "a"/],
];
for (const [name, text, reason] of corrupt) {
  Deno.test(`known peers file: rejects ${name}`, () => {
    const decoded = decodeKnownPeers(text);
    assert.equal(decoded.ok, false);
    if (!decoded.ok) assert.match(decoded.reason, reason);
  });
}

Deno.test("known peers file: decoding random text never throws (property)", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json()), (s) => {
      decodeKnownPeers(s);
    }),
    { numRuns: 500 },
  );
});
