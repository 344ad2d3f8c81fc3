/** Drives a probe.ts agent inside a lab node over its JSON-line stdio. */
import type { Lab } from "./lab.ts";
import { lines } from "./probe.ts";
import { agentCommand } from "./_labtest.ts";
import type { ProbeCommand, ProbeEvent } from "./probe.ts";

export type RecvEvent = Extract<ProbeEvent, { ev: "recv" }>;

const PROBE_PATH = new URL("./probe.ts", import.meta.url).pathname;

export class Probe {
  readonly events: ProbeEvent[] = [];
  #waiters = new Set<() => void>();
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #child: Deno.ChildProcess;
  #reading: Promise<void>;
  #stderr: Promise<string>;

  private constructor(readonly node: string, child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#reading = this.#read();
    this.#stderr = new Response(child.stderr).text().catch(() => "");
  }

  /** Starts a probe agent in `node` and waits until it is ready. */
  static async start(lab: Lab, node: string, timeoutMs = 20_000): Promise<Probe> {
    const child = lab.spawn(node, agentCommand(PROBE_PATH));
    const p = new Probe(node, child);
    const ready = await p.waitFor((e) => e.ev === "ready", timeoutMs);
    if (!ready) {
      const err = await p.close();
      throw new Error(`Cannot start probe in "${node}": not ready after ${timeoutMs} ms: ${err}`);
    }
    return p;
  }

  async #read(): Promise<void> {
    const input = this.#child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lines());
    for await (const line of input) {
      try {
        this.events.push(JSON.parse(line) as ProbeEvent);
      } catch {
        this.events.push({ ev: "error", message: `unparsable probe output: ${line}` });
      }
      for (const w of this.#waiters) w();
    }
  }

  async #cmd(c: ProbeCommand): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(c) + "\n"));
  }

  /** Resolves with the first event (past or future) matching `pred`, or undefined on timeout. */
  waitFor<E extends ProbeEvent>(
    pred: (e: ProbeEvent) => e is E,
    timeoutMs: number,
  ): Promise<E | undefined>;
  waitFor(pred: (e: ProbeEvent) => boolean, timeoutMs: number): Promise<ProbeEvent | undefined>;
  waitFor(pred: (e: ProbeEvent) => boolean, timeoutMs: number): Promise<ProbeEvent | undefined> {
    return new Promise((resolve) => {
      const check = () => {
        const hit = this.events.find(pred);
        if (hit) {
          finish(hit);
        }
      };
      const finish = (v: ProbeEvent | undefined) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Binds socket `id` to `port` (0: any) and returns the bound port. */
  async bind(id: string, port: number, addr = "0.0.0.0"): Promise<number> {
    await this.#cmd({ op: "bind", id, addr, port });
    const e = await this.waitFor(
      (e) => (e.ev === "bound" || e.ev === "error") && "id" in e && e.id === id,
      5_000,
    );
    if (!e || e.ev !== "bound") {
      throw new Error(
        `Cannot bind ${addr}:${port} in "${this.node}": ${
          e && "message" in e ? e.message : "timeout"
        }`,
      );
    }
    return e.port;
  }

  /** Sends `data` from socket `id`; resolves once the agent has handed it to the kernel. */
  async send(id: string, to: string, port: number, data: string): Promise<void> {
    await this.#cmd({ op: "send", id, to, port, data });
    await this.waitFor((e) => e.ev === "sent" && e.data === data && e.id === id, 5_000);
  }

  /** Waits for a datagram with payload `data` on socket `id`. */
  recv(id: string, data: string, timeoutMs: number): Promise<RecvEvent | undefined> {
    return this.waitFor(
      (e): e is RecvEvent => e.ev === "recv" && e.id === id && e.data === data,
      timeoutMs,
    );
  }

  /** Stops the agent; returns its stderr (for error messages). */
  async close(): Promise<string> {
    try {
      await this.#cmd({ op: "exit" });
      await this.#writer.close();
    } catch {
      // already exited
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited
      }
    }, 3_000);
    await this.#child.status;
    clearTimeout(timer);
    await this.#reading.catch(() => undefined);
    return (await this.#stderr).trim();
  }
}
