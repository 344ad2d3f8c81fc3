import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeSearchAnswer, encodeSearch, MAX_SSDP_SIZE } from "../../lib/portmap/ssdp.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const GW = "192.168.77.1";
const answer = (over: Record<string, string> = {}, status = "HTTP/1.1 200 OK") => {
  const h: Record<string, string> = {
    "CACHE-CONTROL": "max-age=120",
    ST: "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    USN: "uuid:0000::urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    EXT: "",
    LOCATION: `http://${GW}:5000/rootDesc.xml`,
    ...over,
  };
  return enc([status, ...Object.entries(h).map(([k, v]) => `${k}: ${v}`), "", ""].join("\r\n"));
};

Deno.test("ssdp: M-SEARCH text", () => {
  assert.equal(
    new TextDecoder().decode(encodeSearch("urn:schemas-upnp-org:device:InternetGatewayDevice:2")),
    'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n' +
      "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n",
  );
});

Deno.test("ssdp: decodes a gateway's answer", () => {
  const r = decodeSearchAnswer(answer(), GW);
  assert.ok(r.ok);
  assert.equal(r.value.location.href, `http://${GW}:5000/rootDesc.xml`);
  assert.equal(r.value.st, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
});

Deno.test("ssdp: header names are case-insensitive, bare LF line ends work", () => {
  const text = `HTTP/1.1 200 OK\nst: urn:schemas-upnp-org:service:WANIPConnection:2\n` +
    `Location: http://${GW}/d.xml\n\n`;
  const r = decodeSearchAnswer(enc(text), GW);
  assert.ok(r.ok);
  assert.equal(r.value.location.port, "");
});

const refusals: [string, Uint8Array, string][] = [
  ["a NOTIFY or other non-200 message", answer({}, "NOTIFY * HTTP/1.1"), "not-200"],
  ["an error status", answer({}, "HTTP/1.1 404 Not Found"), "not-200"],
  ["a media server", answer({ ST: "urn:schemas-upnp-org:device:MediaServer:1" }), "not-igd"],
  ["no ST", answer({ ST: "" }), "not-igd"],
  ["no LOCATION", answer({ LOCATION: "" }), "bad-location"],
  ["an unparsable LOCATION", answer({ LOCATION: "http://[::1" }), "bad-location"],
  ["an https LOCATION", answer({ LOCATION: `https://${GW}/d.xml` }), "bad-location"],
  ["a file LOCATION", answer({ LOCATION: "file:///etc/passwd" }), "bad-location"],
  [
    "a LOCATION on another host than the sender",
    answer({ LOCATION: "http://192.168.77.99:5000/d.xml" }),
    "foreign-location",
  ],
  ["an oversized datagram", new Uint8Array(MAX_SSDP_SIZE + 1), "too-long"],
  ["binary junk", new Uint8Array([0xff, 0x00, 0xfe, 0x0d, 0x0a]), "not-200"],
];
for (const [name, bytes, reason] of refusals) {
  Deno.test(`ssdp: refuses ${name}`, () => {
    assert.deepEqual(decodeSearchAnswer(bytes, GW), { ok: false, reason });
  });
}

Deno.test("ssdp: random input never throws", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => void decodeSearchAnswer(b, GW)),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.string({ maxLength: 200 }),
      (s) =>
        void decodeSearchAnswer(enc(`HTTP/1.1 200 OK\r\nST: ${s}\r\nLOCATION: ${s}\r\n\r\n`), GW),
    ),
    { numRuns: 2000 },
  );
});
