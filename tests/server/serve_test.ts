/**
 * The serve host on a real socket: it wakes at the state machine's deadlines (no fixed tick),
 * so a silent member is dropped when its silence runs out, not at the next whole second.
 */
import assert from "node:assert/strict";
import type { Logger } from "@logtape/logtape";
import { serve } from "../../server.ts";
import { newIdentity } from "../../lib/identity/identity.ts";
import { decode, encode } from "../../lib/wire/codec.ts";
import { ID1, reg } from "./_server.ts";

/** A logger that records its lines with the time they came. */
function recorder() {
  const lines: { at: number; text: string }[] = [];
  const put = (text: string) => lines.push({ at: performance.now(), text });
  const log = { debug: put, info: put, warn: put } as unknown as Logger;
  return { lines, log };
}

Deno.test("serve: a silent member is dropped when its silence runs out, not on a tick", async () => {
  const keepaliveMs = 100; // silence: 3 × 100 + 1000 = 1300 ms
  const { lines, log } = recorder();
  let stop!: () => void;
  let listening!: (port: number) => void;
  const port = new Promise<number>((r) => listening = r);
  const done = serve({
    host: "127.0.0.1",
    port: 0,
    config: { keepaliveMs },
    log,
    stop: new Promise<void>((r) => stop = r),
    onListening: listening,
  });
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const server = { transport: "udp" as const, hostname: "127.0.0.1", port: await port };
    const alice = newIdentity();
    const ask = async (bytes: Uint8Array) => {
      await sock.send(bytes, server);
      const d = decode((await sock.receive())[0]);
      assert.ok(d.ok);
      return d.value;
    };
    const c = await ask(encode(reg(ID1, "alice", alice)));
    assert.equal(c.type, "cookie");
    const ok = await ask(encode(reg(ID1, "alice", alice, (c as { cookie: Uint8Array }).cookie)));
    assert.equal(ok.type, "register_ok");
    const registeredAt = performance.now();
    const left = () => lines.find((l) => l.text.startsWith("alice left lobby (timed out)"));
    while (!left() && performance.now() - registeredAt < 3000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const after = left()!.at - registeredAt;
    // A 1 s tick would have found her at 2000 ms at the latest, and 1300 ms only by chance.
    assert.ok(after >= 1300 - 5 && after < 1300 + 300, `dropped after ${after.toFixed(0)} ms`);
  } finally {
    sock.close();
    stop();
    assert.equal(await done, 0);
  }
});
