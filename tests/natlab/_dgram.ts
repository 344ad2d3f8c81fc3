/**
 * Binary UDP agent for lab tests (probe.ts carries text only), run inside a namespace:
 *   ip netns exec NS deno run --allow-net _dgram.ts ADDR PORT
 * stdin: one `HOST PORT HEX` line per datagram to send from the bound socket.
 * stdout: `{"ev":"ready"}`, then `{"ev":"recv","from":"HOST:PORT","hex":"..."}` per datagram.
 * The test side is {@link Dgram}.
 */
import type { Lab } from "./lab.ts";
import { lines } from "./probe.ts";
import { agentCommand } from "./_labtest.ts";
import { fromHex, toHex } from "../../lib/wire/bytes.ts";

const SELF = new URL(import.meta.url).pathname;

export interface Received {
  from: string;
  bytes: Uint8Array;
}

/** Drives one `_dgram.ts` agent (one socket) in a lab node. */
export class Dgram {
  readonly received: Received[] = [];
  #ready = false;
  #stderr = "";
  #writer: WritableStreamDefaultWriter<Uint8Array>;

  private constructor(child: Deno.ChildProcess) {
    this.#writer = child.stdin.getWriter();
    child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (t) => void (this.#stderr += t) }),
    ).catch(() => {});
    (async () => {
      const input = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lines());
      for await (const line of input) {
        const e = JSON.parse(line) as { ev: string; from?: string; hex?: string };
        if (e.ev === "ready") this.#ready = true;
        if (e.ev === "recv") this.received.push({ from: e.from!, bytes: fromHex(e.hex!) });
      }
    })().catch(() => {/* killed by lab.down() */});
  }

  /** Starts an agent in `node` bound to addr:port and waits until its socket is open. */
  static async start(lab: Lab, node: string, addr: string, port: number): Promise<Dgram> {
    const child = lab.spawn(node, agentCommand(SELF, addr, String(port)));
    const d = new Dgram(child);
    await d.until(() => d.#ready, `socket ${addr}:${port} in ${node}`);
    return d;
  }

  async send(host: string, port: number, bytes: Uint8Array): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(`${host} ${port} ${toHex(bytes)}\n`));
  }

  /** Waits (up to `ms`, then throws) until `check()` holds. */
  async until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${ms} ms waiting for ${what}; agent stderr: ${this.#stderr}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function main(addr: string, port: number): Promise<void> {
  const sock = Deno.listenDatagram({ hostname: addr, port, transport: "udp" });
  const out = (o: unknown) => console.log(JSON.stringify(o));
  (async () => {
    while (true) {
      try {
        const [b, from] = await sock.receive();
        const f = from as Deno.NetAddr;
        out({ ev: "recv", from: `${f.hostname}:${f.port}`, hex: toHex(b) });
      } catch {
        // An ICMP error must not end the loop; a closed socket ends the process anyway.
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  })();
  out({ ev: "ready" });
  const input = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines());
  for await (const line of input) {
    const [host, p, hex] = line.trim().split(" ");
    if (!host || !p || hex === undefined) continue;
    await sock.send(fromHex(hex), { transport: "udp", hostname: host, port: Number(p) });
  }
  Deno.exit(0);
}

if (import.meta.main) await main(Deno.args[0] ?? "0.0.0.0", Number(Deno.args[1] ?? 0));
