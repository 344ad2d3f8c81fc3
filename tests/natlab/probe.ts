/**
 * UDP probe agent for the NAT lab, run inside a namespace:
 *   ip netns exec NS deno run -A --unstable-net tests/natlab/probe.ts
 * Reads one JSON command per stdin line and writes one JSON event per stdout line:
 *   {"op":"bind","id":"s1","addr":"0.0.0.0","port":40000} -> {"ev":"bound","id":"s1","port":40000}
 *   {"op":"send","id":"s1","to":"198.51.100.2","port":3478,"data":"hi"}  -> {"ev":"sent",...}
 *   (datagram arrives)                            -> {"ev":"recv","id":"s1","from":"1.2.3.4","fromPort":5,"data":"hi"}
 *   {"op":"close","id":"s1"}  {"op":"exit"}
 * Errors become {"ev":"error","id":...,"message":...}. It starts with {"ev":"ready"} and exits
 * when stdin closes.
 */

export type ProbeCommand =
  | { op: "bind"; id: string; addr?: string; port: number }
  | { op: "send"; id: string; to: string; port: number; data: string }
  | { op: "close"; id: string }
  | { op: "exit" };

export type ProbeEvent =
  | { ev: "ready" }
  | { ev: "bound"; id: string; port: number }
  | { ev: "sent"; id: string; to: string; port: number; data: string }
  | { ev: "recv"; id: string; from: string; fromPort: number; data: string }
  | { ev: "closed"; id: string }
  | { ev: "error"; id?: string; message: string };

/** Splits a text stream into lines. */
export function lines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, ctl) {
      rest += chunk;
      let i: number;
      while ((i = rest.indexOf("\n")) >= 0) {
        ctl.enqueue(rest.slice(0, i));
        rest = rest.slice(i + 1);
      }
    },
    flush(ctl) {
      if (rest) ctl.enqueue(rest);
    },
  });
}

async function main(): Promise<void> {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const emit = (e: ProbeEvent) => Deno.stdout.writeSync(enc.encode(JSON.stringify(e) + "\n"));
  const sockets = new Map<string, Deno.DatagramConn>();

  const receiveLoop = async (id: string, conn: Deno.DatagramConn) => {
    while (sockets.get(id) === conn) {
      try {
        const [buf, from] = await conn.receive();
        const a = from as Deno.NetAddr;
        emit({ ev: "recv", id, from: a.hostname, fromPort: a.port, data: dec.decode(buf) });
      } catch (e) {
        if (sockets.get(id) !== conn) return; // closed on purpose
        // An ICMP error (port unreachable) must not end the loop.
        emit({ ev: "error", id, message: `receive: ${(e as Error).message}` });
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };

  emit({ ev: "ready" });
  const input = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lines());
  for await (const line of input) {
    if (!line.trim()) continue;
    let cmd: ProbeCommand;
    try {
      cmd = JSON.parse(line) as ProbeCommand;
    } catch {
      emit({ ev: "error", message: `bad command line: ${line}` });
      continue;
    }
    try {
      if (cmd.op === "bind") {
        const conn = Deno.listenDatagram({
          hostname: cmd.addr ?? "0.0.0.0",
          port: cmd.port,
          transport: "udp",
        });
        sockets.set(cmd.id, conn);
        emit({ ev: "bound", id: cmd.id, port: (conn.addr as Deno.NetAddr).port });
        receiveLoop(cmd.id, conn);
      } else if (cmd.op === "send") {
        const conn = sockets.get(cmd.id);
        if (!conn) throw new Error(`no socket "${cmd.id}"`);
        await conn.send(enc.encode(cmd.data), {
          transport: "udp",
          hostname: cmd.to,
          port: cmd.port,
        });
        emit({ ev: "sent", id: cmd.id, to: cmd.to, port: cmd.port, data: cmd.data });
      } else if (cmd.op === "close") {
        const conn = sockets.get(cmd.id);
        sockets.delete(cmd.id);
        conn?.close();
        emit({ ev: "closed", id: cmd.id });
      } else if (cmd.op === "exit") {
        break;
      }
    } catch (e) {
      emit({ ev: "error", id: "id" in cmd ? cmd.id : undefined, message: (e as Error).message });
    }
  }
  for (const c of sockets.values()) c.close();
  sockets.clear();
  Deno.exit(0);
}

if (import.meta.main) await main();
