import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parseDescription,
  parseSoapAnswer,
  soapRequest,
  type WanService,
} from "../../lib/portmap/igd.ts";
import { elements, text } from "../../lib/portmap/_xml.ts";
import type { HttpResponse } from "../../lib/portmap/http.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const LOCATION = new URL("http://192.168.77.1:5000/rootDesc.xml");

Deno.test("igd: an IGD v1 description gives WANIPConnection:1 and its control URL", () => {
  const r = parseDescription(fixture("igd_v1.xml"), LOCATION);
  assert.ok(r.ok, !r.ok ? r.reason : "");
  assert.equal(r.value.serviceType, "urn:schemas-upnp-org:service:WANIPConnection:1");
  assert.equal(r.value.version, 1);
  assert.equal(r.value.control.href, "http://192.168.77.1:5000/ctl/IPConn");
});

Deno.test("igd: an IGD v2 description: prefixes, URLBase, CDATA, v2 over PPP, comments ignored", () => {
  const r = parseDescription(fixture("igd_v2.xml"), LOCATION);
  assert.ok(r.ok, !r.ok ? r.reason : "");
  assert.equal(r.value.version, 2);
  assert.equal(r.value.control.href, "http://192.168.77.1:5000/base/ctl/IPConn?x=1&y=2");
});

const descRefusals: [string, string, string][] = [
  [
    "no WAN service",
    "<root><service><serviceType>x</serviceType></service></root>",
    "no-wan-service",
  ],
  [
    "a control URL on another host",
    "<root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>" +
    "<controlURL>http://10.1.1.1:5000/ctl</controlURL></service></root>",
    "foreign-control-url",
  ],
  [
    "a control URL on another port",
    "<root><URLBase>http://192.168.77.1:6000/</URLBase><service><serviceType>" +
    "urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/c</controlURL>" +
    "</service></root>",
    "foreign-control-url",
  ],
  ["truncated XML", fixture("igd_v1.xml").slice(0, 900), "no-wan-service"],
  ["not XML", "\u0000\u0001{}", "no-wan-service"],
];
for (const [name, xml, reason] of descRefusals) {
  Deno.test(`igd: refuses a description with ${name}`, () => {
    assert.deepEqual(parseDescription(xml, LOCATION), { ok: false, reason });
  });
}

const SVC: WanService = {
  serviceType: "urn:schemas-upnp-org:service:WANIPConnection:1",
  version: 1,
  control: new URL("http://192.168.77.1:5000/ctl/IPConn"),
};

Deno.test("igd: SOAP request envelope, action header and escaped arguments", () => {
  const req = soapRequest(SVC, "AddPortMapping", [["NewExternalPort", 40000], [
    "NewPortMappingDescription",
    "a<b&c",
  ]]);
  assert.equal(req.method, "POST");
  assert.equal(req.url.href, SVC.control.href);
  assert.equal(
    req.headers?.SOAPAction,
    '"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"',
  );
  assert.match(
    req.body!,
    /<s:Body><u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalPort>40000<\/NewExternalPort><NewPortMappingDescription>a&lt;b&amp;c<\/NewPortMappingDescription><\/u:AddPortMapping><\/s:Body>/,
  );
});

const res = (status: number, body: string): HttpResponse => ({ status, headers: new Map(), body });
const envelope = (inner: string) =>
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">' +
  `<s:Body>${inner}</s:Body></s:Envelope>`;

Deno.test("igd: reads a SOAP answer's output arguments", () => {
  const r = parseSoapAnswer(
    res(
      200,
      envelope(
        '<u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">' +
          "<NewExternalIPAddress> 100.63.0.1 </NewExternalIPAddress></u:GetExternalIPAddressResponse>",
      ),
    ),
    "GetExternalIPAddress",
  );
  assert.deepEqual(r, {
    ok: true,
    value: { kind: "ok", values: { NewExternalIPAddress: "100.63.0.1" } },
  });
});

Deno.test("igd: reads a UPnP fault's error code", () => {
  const r = parseSoapAnswer(
    res(
      500,
      envelope(
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>" +
          '<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode>' +
          "<errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>",
      ),
    ),
    "AddPortMapping",
  );
  assert.deepEqual(r, {
    ok: true,
    value: { kind: "fault", code: 718, description: "ConflictInMappingEntry" },
  });
});

const soapRefusals: [string, HttpResponse, string][] = [
  ["no body", res(200, "<html>hi</html>"), "no-soap-body"],
  ["the wrong response element", res(200, envelope("<u:OtherResponse/>")), "no-response-element"],
  ["a fault without a code", res(500, envelope("<s:Fault><detail/></s:Fault>")), "bad-fault"],
  ["an error status without a fault", res(404, envelope("")), "http-404"],
  [
    "a non-numeric code",
    res(500, envelope("<s:Fault><errorCode>x</errorCode></s:Fault>")),
    "bad-fault",
  ],
];
for (const [name, r, reason] of soapRefusals) {
  Deno.test(`igd: refuses a SOAP answer with ${name}`, () => {
    assert.deepEqual(parseSoapAnswer(r, "GetExternalIPAddress"), { ok: false, reason });
  });
}

Deno.test("xml: elements by local name, nesting, self-closing, entities", () => {
  const xml = "<a:x><y>1</y><y/><y attr='2'>&lt;3&#x41;&#66;&unknown;</y><x>in</x></a:x>";
  assert.deepEqual(elements(xml, "y"), ["1", "", "&lt;3&#x41;&#66;&unknown;"]);
  assert.equal(text(xml, "x"), "1<3AB&unknown;in");
  assert.equal(elements("<x><x>a</x></x><x>b</x>", "x").length, 2);
  assert.deepEqual(elements("<x>unclosed", "x"), []);
  assert.equal(text("<x>a</x>", "nothere"), undefined);
});

Deno.test("xml and igd: random input never throws", () => {
  const parts = fc.constantFrom(
    "<service>",
    "</service>",
    "<serviceType>",
    "</serviceType>",
    "<controlURL>",
    "</controlURL>",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "/ctl",
    "http://192.168.77.1:5000/x",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<?",
    "?>",
    "&amp;",
    "&#x110000;",
    "<s:Body>",
    "</s:Body>",
    "<errorCode>",
    "</errorCode>",
    "<URLBase>",
    "</URLBase>",
    "<",
    ">",
    "/",
    "x",
  );
  fc.assert(
    fc.property(fc.array(parts, { maxLength: 40 }), fc.string({ maxLength: 50 }), (ps, s) => {
      const xml = ps.join("") + s;
      parseDescription(xml, LOCATION);
      parseSoapAnswer(res(200, xml), "AddPortMapping");
      parseSoapAnswer(res(500, xml), "AddPortMapping");
    }),
    { numRuns: 3000 },
  );
});

Deno.test("igd: a SOAP answer of thousands of distinct tags is read in bounded work", () => {
  // 60 KB of distinct unclosed tags: each name used to rescan the whole answer (seconds of CPU).
  const tags = Array.from({ length: 8000 }, (_, i) => `<a${i}>`).join("");
  const r = parseSoapAnswer(
    res(200, envelope(`<u:XResponse xmlns:u="urn:x">${tags}</u:XResponse>`)),
    "X",
  );
  assert.ok(r.ok && r.value.kind === "ok");
  if (r.ok && r.value.kind === "ok") assert.ok(Object.keys(r.value.values).length <= 32);
});
