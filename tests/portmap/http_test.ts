import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeResponse, encodeRequest, MAX_HTTP_RESPONSE } from "../../lib/portmap/http.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("http: a POST request names the host, closes, counts the body in bytes", () => {
  const req = encodeRequest({
    method: "POST",
    url: new URL("http://192.168.77.1:5000/ctl/IPConn"),
    headers: { SOAPAction: '"urn:x#Y"', "Bad\r\nHeader": "v\r\nInjected: 1" },
    body: "é",
  });
  assert.equal(
    dec(req),
    "POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\nConnection: close\r\n" +
      'User-Agent: p2pchat UPnP/1.1\r\nSOAPAction: "urn:x#Y"\r\nBadHeader: vInjected: 1\r\n' +
      "Content-Length: 2\r\n\r\né",
  );
});

Deno.test("http: a GET keeps the query and sends no length", () => {
  const req = dec(encodeRequest({ method: "GET", url: new URL("http://10.0.0.1/d.xml?a=1") }));
  assert.match(req, /^GET \/d\.xml\?a=1 HTTP\/1\.1\r\nHost: 10\.0\.0\.1\r\n/);
  assert.doesNotMatch(req, /Content-Length/);
});

Deno.test("http: decodes Content-Length, ignoring what follows", () => {
  const r = decodeResponse(
    enc("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello, more"),
  );
  assert.ok(r.ok);
  assert.equal(r.value.status, 200);
  assert.equal(r.value.body, "hello");
  assert.equal(r.value.headers.get("x-a"), "b");
});

Deno.test("http: decodes a chunked body and a body read to the close", () => {
  const chunked = decodeResponse(
    enc(
      "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n" +
        "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ),
  );
  assert.ok(chunked.ok);
  assert.equal(chunked.value.status, 500);
  assert.equal(chunked.value.body, "abcde");
  const closed = decodeResponse(enc("HTTP/1.0 200 OK\r\n\r\n<xml/>"));
  assert.ok(closed.ok);
  assert.equal(closed.value.body, "<xml/>");
});

const refusals: [string, string, string][] = [
  ["no end of headers", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "truncated"],
  ["a short body", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nabc", "truncated"],
  ["a bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad-length"],
  ["a bad status line", "HTTP/2 200\r\n\r\n", "bad-status"],
  ["SSDP text", "M-SEARCH * HTTP/1.1\r\n\r\n", "bad-status"],
  ["bad chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad-chunks"],
  ["a cut chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab", "bad-chunks"],
];
for (const [name, text, reason] of refusals) {
  Deno.test(`http: refuses ${name}`, () => {
    assert.deepEqual(decodeResponse(enc(text)), { ok: false, reason });
  });
}

Deno.test("http: refuses more than the limit", () => {
  const big = new Uint8Array(MAX_HTTP_RESPONSE + 1);
  assert.deepEqual(decodeResponse(big), { ok: false, reason: "too-long" });
});

Deno.test("http: random input never throws", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => void decodeResponse(b)), {
    numRuns: 2000,
  });
  fc.assert(
    fc.property(
      fc.string({ maxLength: 100 }),
      (s) => void decodeResponse(enc(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${s}`)),
    ),
    { numRuns: 2000 },
  );
});
