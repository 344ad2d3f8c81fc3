/**
 * Port-mapping agent for lab tests, run inside a namespace:
 *   ip netns exec NS deno run --allow-net --unstable-net _portmap_agent.ts map PORT [OPTIONS]
 *   ip netns exec NS deno run --allow-net --unstable-net _portmap_agent.ts send HOST PORT TEXT
 * `map` binds UDP 0.0.0.0:PORT, runs a PortMapper for it and writes JSON lines on stdout:
 * `{"ev":"bound"}`, `{"ev":"result","mapping":...,"ms":N}`, `{"ev":"recv","from":..,"text":..}`
 * per datagram, `{"ev":"change",...}`, `{"ev":"log","msg":...}`; on the stdin line "stop" it
 * stops the mapper, writes `{"ev":"stopped","ms":N}` and exits. OPTIONS: --protocols a,b
 * --timeout MS --lease SEC --min-renew-ms MS --gateway IP|none.
 * `send` sends TEXT five times, 50 ms apart, from an ephemeral port and exits.
 * The test side is PortmapAgent in _upnp.ts.
 */
import { PortMapper, type Protocol } from "../../lib/portmap/mod.ts";

const say = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function send(host: string, port: number, text: string): Promise<void> {
  const s = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
  for (let i = 0; i < 5; i++) {
    try {
      await s.send(new TextEncoder().encode(text), { transport: "udp", hostname: host, port });
    } catch (e) {
      say({ ev: "send-error", error: String(e) });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  s.close();
}

async function map(port: number, args: string[]): Promise<void> {
  const sock = Deno.listenDatagram({ hostname: "0.0.0.0", port, transport: "udp" });
  say({ ev: "bound", port });
  (async () => {
    const buf = new Uint8Array(2048);
    for (;;) {
      try {
        const [data, from] = await sock.receive(buf);
        const f = from as Deno.NetAddr;
        say({ ev: "recv", from: `${f.hostname}:${f.port}`, text: new TextDecoder().decode(data) });
      } catch {
        return; // closed
      }
    }
  })();
  const gw = flag(args, "--gateway");
  const protocols = flag(args, "--protocols")?.split(",") as Protocol[] | undefined;
  const minRenew = flag(args, "--min-renew-ms");
  const pm = new PortMapper({
    internalPort: port,
    gateway: gw === undefined ? undefined : gw === "none" ? null : gw,
    protocols,
    timeoutMs: Number(flag(args, "--timeout") ?? 250),
    leaseSec: Number(flag(args, "--lease") ?? 3600),
    lease: minRenew ? { minRenewMs: Number(minRenew) } : undefined,
    log: (msg) => say({ ev: "log", msg }),
    onChange: (m) => say({ ev: "change", mapping: m }),
  });
  const t0 = performance.now();
  const m = await pm.start();
  say({ ev: "result", mapping: m, ms: Math.round(performance.now() - t0) });
  const input = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let text = "";
  for await (const chunk of input) {
    text += chunk;
    if (text.includes("stop\n")) break;
  }
  const t1 = performance.now();
  await pm.stop();
  say({ ev: "stopped", ms: Math.round(performance.now() - t1) });
  sock.close();
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode === "send") await send(rest[0]!, Number(rest[1]), rest[2] ?? "");
  else if (mode === "map") await map(Number(rest[0]), rest.slice(1));
  else {
    console.error("usage: _portmap_agent.ts map PORT [OPTIONS] | send HOST PORT TEXT");
    Deno.exit(2);
  }
}
