/** A `p2pchat serve` with its WebSocket endpoint, for the WebSocket e2e tests. */
import assert from "node:assert/strict";
import { freePort, type Harness, type Proc } from "./harness.ts";

/** A server with its WebSocket endpoint on a free TCP port; resolves once both listen. */
export async function startWsServer(h: Harness, extra: string[] = []) {
  const udp = freePort();
  const proc = h.server(udp, ["--keepalive", "0.5", "--tcp-port", "0", ...extra]);
  await proc.waitStderr(/\(TCP; WebSocket \/p2pchat/);
  const line = proc.stderr.find((l) => l.includes("(TCP; WebSocket"))!;
  const tcp = Number(/listening on [^ ]*:(\d+) \(TCP/.exec(line)![1]);
  return { proc, udp, tcp, url: `ws://127.0.0.1:${tcp}/p2pchat` };
}

/** The server's stop report: its `WebSocket:` counts, after SIGTERM. */
export async function stopCounts(p: Proc): Promise<Record<string, number>> {
  p.kill("SIGTERM");
  const st = await p.status;
  assert.equal(st.code, 0, p.stderr.join("\n"));
  const line = p.stderr.find((l) => l.includes("WebSocket: ")) ?? "";
  const counts: Record<string, number> = {};
  for (const [, k, v] of line.matchAll(/(\w+)=(\d+)/g)) counts[k!] = Number(v);
  return counts;
}
