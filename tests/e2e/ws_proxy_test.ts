/**
 * The server behind Debian's nginx as a reverse proxy (`serve --trust-proxy`): a real `join`
 * over ws:// and over wss:// (TLS ends at nginx) chats both ways with a UDP peer, and the
 * server knows each WebSocket client by the X-Forwarded-For nginx sets, not by nginx's
 * address: spoofed entries are passed over, per-IP caps count clients, and a proxy outside
 * --trust-proxy is not believed.
 *
 * nginx reaches the server from 127.0.0.2 (`proxy_bind`) while clients reach nginx from
 * 127.0.0.1, so what the server reports (a member's public address, its log) says which of
 * the two it took. Skipped without nginx or openssl, failed then with P2PCHAT_REQUIRE_LAB=1.
 */
import assert from "node:assert/strict";
import { freePort, type Harness, isType, type Proc, withHarness } from "./harness.ts";
import { missingTool, testsUnless } from "../natlab/_labtest.ts";
import { makeCert } from "../_helpers/tls.ts";
import { startWsServer as startServer, stopCounts } from "./_ws_serve.ts";
import { decode, encode, type Message } from "../../lib/wire/codec.ts";
import { newIdentity } from "../../lib/identity/identity.ts";
import { reg } from "../server/_server.ts";

type Of<T extends Message["type"]> = Extract<Message, { type: T }>;

/** Where nginx connects to the server from: not the clients' 127.0.0.1. */
const PROXY_FROM = "127.0.0.2";

/** Proxy processes a test started: killed after it, whatever happened. */
const proxies = new Set<Deno.ChildProcess>();
const tests = (what: string, tools: Record<string, string>) => {
  const t = testsUnless(missingTool(tools), what);
  return (name: string, fn: (h: Harness) => Promise<void>) =>
    t({
      name: `ws proxy e2e: ${name}`,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: () =>
        withHarness(async (h) => {
          try {
            await fn(h);
          } finally {
            for (const c of proxies) {
              try {
                c.kill("SIGKILL");
              } catch { /* gone */ }
              await c.status;
            }
            proxies.clear();
          }
        }),
    });
};
const test = tests("reverse proxy (nginx) tests", { nginx: "nginx", openssl: "openssl" });
const caddyTest = tests("reverse proxy (Caddy) tests", { caddy: "caddy" });

/** A TCP port that was free a moment ago. */
function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = l.addr.port;
  l.close();
  return p;
}

/**
 * The nginx site the tests run, as a deployment would write it: WebSocket upgrade headers,
 * X-Forwarded-For appended, a read timeout above the server's idle limit. `proxy_bind` is the
 * test's own addition (see the file comment).
 */
function nginxConf(
  prefix: string,
  listen: number,
  upstream: number,
  tls?: { cert: string; key: string },
): string {
  return `
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 512; }
http {
  log_format fwd '$remote_addr "$http_x_forwarded_for" $status';
  access_log ${prefix}/access.log fwd;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${listen}${tls ? " ssl" : ""};
    ${tls ? `ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};` : ""}
    location = /p2pchat {
      proxy_pass http://127.0.0.1:${upstream};
      proxy_bind ${PROXY_FROM};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 120s;
    }
  }
}
`;
}

interface Nginx {
  port: number;
  /**
   * Waits for a line of the access log (`remote "x-forwarded-for" status`, one per request,
   * written when its connection ends) that `re` matches.
   */
  logged(re: RegExp): Promise<void>;
}

/**
 * Runs a proxy (`cmd` with `args`, in the foreground, everything it writes inside `dir`); it is
 * killed when the test ends. Resolves once every one of `ports` accepts connections.
 */
async function runProxy(
  cmd: string,
  args: string[],
  ports: number[],
  opts: { dir: string; env?: Record<string, string>; log: () => string },
): Promise<void> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.dir,
    env: opts.env ?? {},
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  proxies.add(child);
  const stderr = new Response(child.stderr).text();
  let exited = false;
  child.status.then(() => exited = true);
  const end = Date.now() + 10_000;
  for (const port of ports) {
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch {
        if (exited || Date.now() > end) {
          if (!exited) child.kill("SIGKILL");
          throw new Error(`${cmd} did not start: ${await stderr}\n${opts.log()}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

/** nginx in front of `upstream` (see nginxConf), TLS with `tls`. */
async function startNginx(
  h: Harness,
  upstream: number,
  tls?: { cert: string; key: string },
): Promise<Nginx> {
  const prefix = h.configDir();
  const port = freeTcpPort();
  await Deno.writeTextFile(`${prefix}/nginx.conf`, nginxConf(prefix, port, upstream, tls));
  const log = (name: string) => {
    try {
      return Deno.readTextFileSync(`${prefix}/${name}`);
    } catch {
      return "";
    }
  };
  const args = ["-c", `${prefix}/nginx.conf`, "-p", prefix, "-e", `${prefix}/error.log`];
  await runProxy("nginx", [...args, "-g", "daemon off;"], [port], {
    dir: prefix,
    log: () => log("error.log"),
  });
  const logged = async (re: RegExp) => {
    const until = Date.now() + 5000;
    while (!re.test(log("access.log"))) {
      if (Date.now() > until) throw new Error(`nginx logged no ${re}:\n${log("access.log")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { port, logged };
}

/**
 * Caddy in front of `upstream` on two ports: `port` is the site as a deployment writes it
 * (reverse_proxy handles the upgrade and sets X-Forwarded-For itself); `chained` also trusts
 * 127.0.0.1 as a proxy before it (`trusted_proxies`), so it appends to the X-Forwarded-For
 * the client sends instead of replacing it, as a proxy behind another proxy would.
 */
async function startCaddy(h: Harness, upstream: number) {
  const dir = h.configDir();
  const port = freeTcpPort();
  const chained = freeTcpPort();
  await Deno.writeTextFile(
    `${dir}/Caddyfile`,
    `{
	admin off
	auto_https off
}
http://127.0.0.1:${port} {
	reverse_proxy /p2pchat 127.0.0.1:${upstream}
}
http://127.0.0.1:${chained} {
	reverse_proxy /p2pchat 127.0.0.1:${upstream} {
		trusted_proxies 127.0.0.1/32
	}
}
`,
  );
  const args = ["run", "--config", `${dir}/Caddyfile`, "--adapter", "caddyfile"];
  // Caddy keeps its state under HOME and the XDG directories: all inside `dir`.
  const env = { HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir };
  await runProxy("caddy", args, [port, chained], { dir, env, log: () => "" });
  return { port, chained };
}

/** A WebSocket member that sends its own request headers (Deno's WebSocket takes them). */
class Member {
  readonly got: Message[] = [];
  private constructor(private ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      const d = decode(new Uint8Array(e.data as ArrayBuffer));
      if (d.ok) this.got.push(d.value);
    };
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<Member> {
    const ws = new WebSocket(url, { headers });
    await new Promise<void>((ok, fail) => {
      ws.onopen = () => ok();
      ws.onerror = (e) => fail(new Error(`Cannot open ${url}: ${(e as ErrorEvent).message}`));
    });
    return new Member(ws);
  }

  send(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  async next<T extends Message["type"]>(type: T, ms = 5000): Promise<Of<T>> {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.got.findIndex((m) => m.type === type);
      if (i >= 0) return this.got.splice(i, 1)[0] as Of<T>;
      if (Date.now() > end) throw new Error(`timed out; got ${this.got.map((m) => m.type)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** REGISTER, COOKIE, signed REGISTER: the REGISTER_OK (its `public` is how the server sees us). */
  async register(id: string, name: string): Promise<Of<"register_ok">> {
    const me = newIdentity();
    this.send(encode(reg(id, name, me, undefined, "lobby")));
    const { cookie } = await this.next("cookie");
    this.send(encode(reg(id, name, me, cookie, "lobby")));
    return await this.next("register_ok");
  }

  close(): void {
    try {
      this.ws.close();
    } catch { /* already closed */ }
  }
}

async function chatBothWays(a: Proc, b: Proc, an: string, bn: string): Promise<void> {
  await a.write(`from ${an}, through the proxy`);
  await b.write(`from ${bn}, to the proxied peer`);
  await b.waitFor(isType("message", { from: an }), 20000, `${bn} hears ${an}`);
  await a.waitFor(isType("message", { from: bn }), 20000, `${an} hears ${bn}`);
  await a.waitFor(isType("delivered", { to: bn }), 20000, `${an}'s message acknowledged`);
  await b.waitFor(isType("delivered", { to: an }), 20000, `${bn}'s message acknowledged`);
}

test("join over ws:// through nginx and a UDP peer chat both ways; the server sees the client", async (h) => {
  const s = await startServer(h, ["--trust-proxy", `${PROXY_FROM}/32`]);
  await s.proc.waitStderr(
    /WebSocket clients through 127\.0\.0\.2\/32 are known by X-Forwarded-For/,
  );
  assert.ok(!s.proc.stderr.some((l) => l.includes("is wider than")), "one address: no warning");
  const ngx = await startNginx(h, s.tcp);
  const carol = h.peer("carol", `ws://127.0.0.1:${ngx.port}`, ["--keepalive", "0.5"]);
  const dave = h.peer("dave", `127.0.0.1:${s.udp}`, ["--keepalive", "0.5"]);
  const ready = await carol.waitFor(isType("ready", { name: "carol" }), 20000);
  assert.equal(ready.transport, "ws");
  // nginx's own address would be 127.0.0.2: the server took the client's from the header.
  assert.match(String(ready.public), /^127\.0\.0\.1:\d+$/);
  await dave.waitFor(isType("ready", { name: "dave" }), 20000);
  await chatBothWays(carol, dave, "carol", "dave");
  assert.ok(
    s.proc.stderr.some((l) => /carol joined lobby from 127\.0\.0\.1:\d+\/tcp/.test(l)),
    s.proc.stderr.join("\n"),
  );
  const counts = await stopCounts(s.proc);
  await ngx.logged(/^127\.0\.0\.1 "-" 101$/m); // nginx upgraded it; no XFF came in
  assert.ok(counts.forwarded! >= 1, JSON.stringify(counts));
  assert.equal(counts.forwarded_malformed, undefined);
});

test("spoofed X-Forwarded-For entries are passed over: the right-most untrusted one wins", async (h) => {
  const s = await startServer(h, ["--trust-proxy", `${PROXY_FROM}/32`]);
  const ngx = await startNginx(h, s.tcp);
  const url = `ws://127.0.0.1:${ngx.port}/p2pchat`;
  // The client claims to be two other hosts; nginx appends what it saw (127.0.0.1).
  const liar = await Member.open(url, { "X-Forwarded-For": "6.6.6.6, 203.0.113.50" });
  try {
    const ok = await liar.register("5555555555555555", "liar");
    assert.equal(ok.public.host, "127.0.0.1");
  } finally {
    liar.close();
  }
  await ngx.logged(/^127\.0\.0\.1 "6\.6\.6\.6, 203\.0\.113\.50" 101$/m);
  const counts = await stopCounts(s.proc);
  assert.equal(counts.forwarded, 1);
});

test("per-IP caps count forwarded clients; a taken port moves; garbage means the proxy", async (h) => {
  // Trusting all of loopback: the test client is a trusted proxy too, so the addresses it
  // sends in X-Forwarded-For are believed and stand for clients elsewhere.
  const s = await startServer(h, [
    "--trust-proxy",
    "127.0.0.0/8,::1",
    "--max-tcp-per-ip",
    "2",
  ]);
  // A /8: every host inside may name its own address, so the server says so at startup.
  await s.proc.waitStderr(/\[WRN\].*--trust-proxy 127\.0\.0\.0\/8 is wider than a \/24/);
  const ngx = await startNginx(h, s.tcp);
  const url = `ws://127.0.0.1:${ngx.port}/p2pchat`;
  const as = (ip: string) => Member.open(url, { "X-Forwarded-For": ip });
  const open: Member[] = [];
  try {
    open.push(await as("203.0.113.1"), await as("203.0.113.1"));
    await assert.rejects(as("203.0.113.1"), "a third connection of one client");
    // Another client through the same proxy still gets in, and is known by its address.
    const other = await as("203.0.113.2");
    open.push(other);
    const ok = await other.register("6666666666666666", "other");
    assert.equal(ok.public.host, "203.0.113.2");
    // A proxy that reports the client's port too, twice the same: each connection keeps an
    // address of its own (the second moves to the next port).
    const [p, q] = [await as("203.0.113.3:4000"), await as("203.0.113.3:4000")];
    open.push(p, q);
    const pub = [
      await p.register("6666666666666667", "p"),
      await q.register("6666666666666668", "q"),
    ]
      .map((r) => `${r.public.host}:${r.public.port}`).sort();
    assert.deepEqual(pub, ["203.0.113.3:4000", "203.0.113.3:4001"]);
    // An entry that is no address where the server must read it: the TCP peer (nginx) it is.
    const odd = await as("unknown");
    open.push(odd);
    assert.equal((await odd.register("6666666666666669", "odd")).public.host, PROXY_FROM);
  } finally {
    open.forEach((m) => m.close());
  }
  const counts = await stopCounts(s.proc);
  assert.equal(counts.per_ip, 1, JSON.stringify(counts));
  assert.equal(counts.port_moved, 1);
  assert.equal(counts.forwarded_malformed, 1);
  assert.ok(counts.forwarded! >= 6);
});

test("a proxy outside --trust-proxy is not believed: the member is the proxy's address", async (h) => {
  const s = await startServer(h, ["--trust-proxy", "192.0.2.0/24"]);
  const ngx = await startNginx(h, s.tcp);
  const m = await Member.open(`ws://127.0.0.1:${ngx.port}/p2pchat`, {
    "X-Forwarded-For": "203.0.113.7",
  });
  try {
    assert.equal((await m.register("7777777777777777", "m")).public.host, PROXY_FROM);
  } finally {
    m.close();
  }
  const counts = await stopCounts(s.proc);
  assert.equal(counts.forwarded, undefined);
});

test("TLS ends at nginx: join over wss:// (trusting the certificate by DENO_CERT) chats both ways", async (h) => {
  const tls = await makeCert(h.configDir());
  const s = await startServer(h, ["--trust-proxy", `${PROXY_FROM}/32`]);
  const ngx = await startNginx(h, s.tcp, tls);
  const url = `wss://127.0.0.1:${ngx.port}/p2pchat`;
  const args = ["join", "--json", "--keepalive", "0.5", "--server", url];
  // Without DENO_CERT the certificate is not trusted: the TLS handshake fails, and the peer
  // gives up on the server (meanwhile the others go on).
  const doubter = h.spawn([...args, "--name", "doubter"]);
  const erin = h.spawn([...args, "--name", "erin"], { env: { DENO_CERT: tls.cert } });
  const frank = h.peer("frank", `127.0.0.1:${s.udp}`, ["--keepalive", "0.5"]);
  const ready = await erin.waitFor(isType("ready", { name: "erin" }), 20000);
  assert.equal(ready.transport, "ws");
  assert.match(String(ready.public), /^127\.0\.0\.1:\d+$/);
  await frank.waitFor(isType("ready", { name: "frank" }), 20000);
  await chatBothWays(erin, frank, "erin", "frank");
  assert.ok(s.proc.stderr.some((l) => /erin joined lobby from 127\.0\.0\.1:\d+\/tcp/.test(l)));
  assert.equal((await doubter.status).code, 1);
  assert.ok(doubter.events.some(isType("error")) && !doubter.events.some(isType("ready")));
  assert.ok(!s.proc.stderr.some((l) => l.includes("doubter joined")));
});

const errors = [
  {
    name: "--trust-proxy that is no address",
    args: ["--trust-proxy", "proxy.example"],
    err: /^p2pchat: .*--trust-proxy.* "proxy\.example" is not an IP address or ADDRESS\/BITS/,
  },
  {
    name: "--trust-proxy with a bad prefix length",
    args: ["--trust-proxy", "127.0.0.1/32,10.0.0.0/33"],
    err: /^p2pchat: .*--trust-proxy.* "10\.0\.0\.0\/33": the prefix length must be 0 to 32/,
  },
  {
    name: "--no-tcp with --trust-proxy",
    args: ["--no-tcp", "--trust-proxy", "127.0.0.1"],
    err: /^p2pchat: Cannot use --no-tcp with .*--trust-proxy/,
  },
];
for (const c of errors) {
  Deno.test({
    name: `ws proxy e2e: serve ${c.name} -> status 2 with one line`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () =>
      withHarness(async (h) => {
        const p = h.server(freePort(), c.args);
        assert.equal((await p.status).code, 2);
        const lines = p.stderr.filter((l) => l.trim() !== "");
        assert.equal(lines.length, 1, lines.join("\n"));
        assert.match(lines[0]!, c.err);
      }),
  });
}

caddyTest(
  "join through Caddy and a UDP peer chat both ways; Caddy's X-Forwarded-For is read",
  async (h) => {
    // Caddy reaches the server from 127.0.0.1, as its clients reach it.
    const s = await startServer(h, ["--trust-proxy", "127.0.0.1/32"]);
    const caddy = await startCaddy(h, s.tcp);
    const gina = h.peer("gina", `ws://127.0.0.1:${caddy.port}`, ["--keepalive", "0.5"]);
    const hal = h.peer("hal", `127.0.0.1:${s.udp}`, ["--keepalive", "0.5"]);
    const ready = await gina.waitFor(isType("ready", { name: "gina" }), 20000);
    assert.equal(ready.transport, "ws");
    assert.match(String(ready.public), /^127\.0\.0\.1:\d+$/);
    await hal.waitFor(isType("ready", { name: "hal" }), 20000);
    await chatBothWays(gina, hal, "gina", "hal");
    // The plain site replaces what the client claims (Caddy trusts no proxy before it) ...
    const liar = await Member.open(`ws://127.0.0.1:${caddy.port}/p2pchat`, {
      "X-Forwarded-For": "203.0.113.9",
    });
    // ... the chained one appends to it: the server takes the entry left of Caddy's.
    const far = await Member.open(`ws://127.0.0.1:${caddy.chained}/p2pchat`, {
      "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
    });
    try {
      assert.equal((await liar.register("8888888888888888", "liar")).public.host, "127.0.0.1");
      assert.equal((await far.register("9999999999999999", "far")).public.host, "203.0.113.9");
    } finally {
      liar.close();
      far.close();
    }
    const counts = await stopCounts(s.proc);
    assert.ok(counts.forwarded! >= 3, JSON.stringify(counts));
    assert.equal(counts.forwarded_malformed, undefined);
  },
);
