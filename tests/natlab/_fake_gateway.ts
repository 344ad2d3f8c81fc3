/**
 * A misbehaving gateway for lab tests, run in the router namespace:
 *   ip netns exec NS deno run --allow-net --unstable-net _fake_gateway.ts MODE LAN_IP
 * It answers PCP and NAT-PMP on UDP 5351, SSDP on UDP 1900 and HTTP on TCP 5000 the way MODE
 * says (see {@link FAKE_MODES}), and writes `{"ev":"ready"}` then `{"ev":"req","what":...}` per
 * request on stdout. A port mapper facing it must give up cleanly: no crash, no mapping.
 */

/** How each mode misbehaves. */
export const FAKE_MODES = {
  junk: "random bytes on every protocol",
  truncated: "answers cut short: PCP/NAT-PMP headers, an SSDP answer without its location",
  lies: "PCP and NAT-PMP probes succeed, then mapping answers with another nonce, another " +
    "internal port, TCP, or 0.0.0.0; the description's control URL is on another host",
  errors: "error result codes; SOAP faults without codes, an external address of 0.0.0.0",
  junkxml: "a valid SSDP answer, then descriptions that are not XML or never close",
  huge: "a 200 KiB description and oversized datagrams",
  silent: "UDP never answered; SSDP answered, then HTTP accepts and never replies",
} as const;
export type FakeMode = keyof typeof FAKE_MODES;

const HTTP_PORT = 5000;
const say = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const enc = (s: string) => new TextEncoder().encode(s);
const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const rndLen = (max: number) => rnd(1)[0]! % max;

function pcpReply(req: Uint8Array, mode: FakeMode): Uint8Array[] {
  const op = req[1]! & 0x7f;
  const resp = new Uint8Array(op === 1 ? 60 : 24);
  resp.set(req.subarray(0, Math.min(req.length, resp.length)));
  resp[1] = 0x80 | op;
  resp[2] = 0;
  resp[3] = 0;
  resp.fill(0, 8, 24);
  const withExternal = (r: Uint8Array, ip: number[]) => {
    r[42] = r[40]!;
    r[43] = r[41]!;
    r.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...ip], 44);
    return r;
  };
  switch (mode) {
    case "truncated":
      return [resp.subarray(0, 10), resp.subarray(0, 30)];
    case "lies": {
      if (op === 0) return [resp]; // ANNOUNCE: yes, a PCP server is here
      const otherNonce = withExternal(resp.slice(), [100, 63, 0, 1]);
      otherNonce[24] = otherNonce[24]! ^ 0xff;
      const tcp = withExternal(resp.slice(), [100, 63, 0, 1]);
      tcp[36] = 6;
      const nowhere = withExternal(resp.slice(), [0, 0, 0, 0]);
      return [otherNonce, tcp, nowhere];
    }
    case "errors":
      if (op === 0) return [resp];
      resp[3] = 2; // NOT_AUTHORIZED
      return [resp.subarray(0, 24), resp];
    default:
      return [];
  }
}

function natpmpReply(req: Uint8Array, mode: FakeMode): Uint8Array[] {
  const op = req[1]!;
  const head = [0, 128 + op, 0, 0, 0, 0, 0, 1];
  switch (mode) {
    case "truncated":
      return [new Uint8Array(head.slice(0, 6)), new Uint8Array([...head, 100, 63])];
    case "lies":
      if (op === 0) return [new Uint8Array([...head, 0, 0, 0, 0])];
      // Another internal port, then a zero external port.
      return [
        new Uint8Array([...head, req[4]! ^ 1, req[5]!, req[6]!, req[7]!, 0, 0, 14, 16]),
        new Uint8Array([...head, req[4]!, req[5]!, 0, 0, 0, 0, 14, 16]),
      ];
    case "errors":
      if (op === 0) return [new Uint8Array([...head, 100, 63, 0, 1])];
      return [new Uint8Array([0, 129, 0, 2, 0, 0, 0, 1])]; // NOT_AUTHORIZED, 8 bytes
    default:
      return [];
  }
}

async function udp5351(mode: FakeMode): Promise<void> {
  const s = Deno.listenDatagram({ hostname: "0.0.0.0", port: 5351, transport: "udp" });
  say({ ev: "listening", what: "5351" });
  const buf = new Uint8Array(2048);
  for (;;) {
    const [req, from] = await s.receive(buf);
    const version = req[0];
    say({ ev: "req", what: version === 2 ? "pcp" : "natpmp", len: req.length });
    if (mode === "silent") continue;
    let out: Uint8Array[];
    if (mode === "junk") out = [rnd(rndLen(80)), rnd(rndLen(80)), rnd(60)];
    else if (mode === "huge") out = [rnd(1400), rnd(1100)];
    else if (version === 2) out = pcpReply(req.slice(), mode);
    else out = natpmpReply(req.slice(), mode);
    for (const o of out) await s.send(o, from).catch(() => {});
  }
}

async function ssdp(mode: FakeMode, lan: string): Promise<void> {
  const s = Deno.listenDatagram({
    hostname: "0.0.0.0",
    port: 1900,
    transport: "udp",
    reuseAddress: true,
  });
  try {
    await s.joinMulticastV4("239.255.255.250", lan);
  } catch {
    // Unicast M-SEARCHes to the gateway still arrive.
  }
  say({ ev: "listening", what: "1900" });
  const buf = new Uint8Array(2048);
  const answer = (location: string) =>
    enc(
      "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n" +
        "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
        "USN: uuid:fake::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n" +
        `LOCATION: ${location}\r\n\r\n`,
    );
  for (;;) {
    const [, from] = await s.receive(buf);
    say({ ev: "req", what: "ssdp" });
    let out: Uint8Array[];
    if (mode === "junk") out = [rnd(rndLen(300)), rnd(200)];
    else if (mode === "huge") {
      // Oversized answers, then a fair one whose description is oversized.
      out = [
        rnd(3000),
        enc("HTTP/1.1 200 OK\r\n" + "X: y\r\n".repeat(900)),
        answer(`http://${lan}:${HTTP_PORT}/rootDesc.xml`),
      ];
    } else if (mode === "truncated") {
      out = [
        enc("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCA"),
      ];
    } else out = [answer(`http://${lan}:${HTTP_PORT}/rootDesc.xml`)];
    for (const o of out) await s.send(o, from).catch(() => {});
  }
}

function description(control: string): string {
  return '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device>' +
    "<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><serviceList>" +
    "<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>" +
    `<controlURL>${control}</controlURL></service></serviceList></device></root>`;
}

function httpAnswer(mode: FakeMode, head: string, n: number): Uint8Array | null {
  const ok = (body: string, extra = "") =>
    enc(
      `HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n${extra}Content-Length: ${
        enc(body).length
      }\r\n\r\n${body}`,
    );
  const isGet = head.startsWith("GET ");
  switch (mode) {
    case "lies":
      return ok(description("http://100.63.0.2:5000/ctl"));
    case "junkxml":
      return n % 2 === 0 ? ok(new TextDecoder().decode(rnd(500))) : ok(
        "<root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1" +
          "<controlURL>/ctl<service><service><!-- never closed",
      );
    case "huge":
      return ok("<root>" + "<service>x</service>".repeat(12_000) + "</root>");
    case "errors": {
      if (isGet) return ok(description("/ctl"));
      if (head.includes("#GetExternalIPAddress")) {
        return ok(
          "<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>0.0.0.0" +
            "</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>",
        );
      }
      const fault = "<s:Envelope><s:Body><s:Fault><detail/></s:Fault></s:Body></s:Envelope>";
      return enc(
        `HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n` +
          `${enc(fault).length.toString(16)}\r\n${fault}\r\nzz\r\n`,
      );
    }
    case "silent":
      return null;
    default:
      return enc("HTTP/1.1 200 OK\r\n\r\n");
  }
}

async function http(mode: FakeMode, lan: string): Promise<void> {
  const l = Deno.listen({ hostname: lan, port: HTTP_PORT, transport: "tcp" });
  say({ ev: "listening", what: "http" });
  let n = 0;
  for await (const conn of l) {
    const i = n++;
    (async () => {
      const buf = new Uint8Array(8192);
      const got = await conn.read(buf).catch(() => null);
      if (got === null) return conn.close();
      const head = new TextDecoder().decode(buf.subarray(0, got));
      say({ ev: "req", what: head.startsWith("GET ") ? "http-get" : "http-post" });
      const out = httpAnswer(mode, head, i);
      if (out === null) return; // keep the connection open and say nothing
      try {
        for (let off = 0; off < out.length;) off += await conn.write(out.subarray(off));
      } catch {
        // the client gave up first
      }
      conn.close();
    })();
  }
}

if (import.meta.main) {
  const mode = Deno.args[0] as FakeMode;
  const lan = Deno.args[1] ?? "192.168.77.1";
  if (!(mode in FAKE_MODES)) {
    console.error(`usage: _fake_gateway.ts ${Object.keys(FAKE_MODES).join("|")} LAN_IP`);
    Deno.exit(2);
  }
  // Each binds its socket before its first await, so all three listen once these return.
  const running = [udp5351(mode), ssdp(mode, lan), http(mode, lan)];
  say({ ev: "ready" });
  await Promise.all(running);
}
