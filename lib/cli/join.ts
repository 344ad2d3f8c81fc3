/** `p2pchat join`: wires stdin lines and the chat output to a PeerHost. */
import * as readline from "node:readline";
import process from "node:process";
import type { Logger } from "@logtape/logtape";
import { PeerHost, type PeerHostOptions } from "../net/peer_host.ts";
import type { PeerEvent } from "../peer/events.ts";
import { ChatOutput, JsonOutput, type Output, type SelfNat, writeAll } from "./output.ts";
import { parseLine } from "./input.ts";
import { setLogWriter, writeStderr } from "./log.ts";
import { onStopSignal } from "./signals.ts";

export interface JoinOptions {
  host: PeerHostOptions;
  json: boolean;
  log: Logger;
}

/** Runs until the user leaves or a fatal error; returns the exit code. */
export async function runJoin(o: JoinOptions): Promise<number> {
  const stdinTty = Deno.stdin.isTerminal();
  const stdoutTty = Deno.stdout.isTerminal();
  const interactive = stdinTty && stdoutTty && !o.json;
  const rl = readline.createInterface({
    input: process.stdin,
    output: interactive ? process.stdout : undefined,
    terminal: interactive,
    prompt: "> ",
  });
  // Once closed (/quit, Ctrl-D), readline throws on prompt(): lines after it print plainly.
  let rlClosed = false;
  rl.on("close", () => rlClosed = true);
  const screen = {
    print(line: string) {
      if (!interactive) return writeAll(Deno.stdout, line + "\n");
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
      process.stdout.write(line + "\n");
      if (!rlClosed) rl.prompt(true);
    },
    prompt() {
      if (interactive && !rlClosed) rl.prompt(true);
    },
  };
  if (interactive) {
    // Logs still go to stderr, but above the input line like everything else.
    setLogWriter((line) => {
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
      writeStderr(line);
      rl.prompt(true);
    });
  }
  const color = stdoutTty && !Deno.env.get("NO_COLOR");
  const locked = o.host.agent.roomKeys !== undefined;
  const out: Output = o.json
    ? new JsonOutput((l) => writeAll(Deno.stdout, l), locked)
    : new ChatOutput(screen, color, o.host.agent.name, locked);

  let ready = false;
  const queued: string[] = [];
  const host = new PeerHost(o.host, (e: PeerEvent) => {
    out.event(e);
    if (e.type === "ready") {
      ready = true;
      for (const l of queued.splice(0)) handle(l);
      screen.prompt();
    }
  }, (level, message) => o.log[level === "warn" ? "warn" : level](message));

  try {
    host.start();
  } catch (e) {
    rl.close();
    const why = e instanceof Error ? e.message : String(e);
    writeAll(Deno.stderr, `p2pchat: Cannot open UDP port ${o.host.port}: ${why}\n`);
    return 1;
  }

  let leaving = false;
  const leave = () => {
    if (leaving) return;
    leaving = true;
    if (interactive) process.stdout.write("\n"); // leave the shell prompt on a fresh line
    rl.close();
    void host.leave();
  };

  function handle(line: string): void {
    const c = parseLine(line);
    switch (c.kind) {
      case "say":
        host.say(c.text);
        break;
      case "msg":
        host.msg(c.to, c.text);
        break;
      case "peers":
        out.peers(host.peers(), selfNat(host));
        break;
      case "trust":
        host.trust(c.name);
        break;
      case "stats":
        out.stats(host.stats(), host.counters());
        break;
      case "help":
        out.help();
        break;
      case "quit":
        leave();
        break;
      case "error":
        out.event({ type: "error", message: c.message });
        break;
      case "none":
        break;
    }
    screen.prompt();
  }

  rl.on("line", (line: string) => {
    if (leaving) return;
    if (ready) handle(line);
    else queued.push(line);
  });
  rl.on("SIGINT", leave);
  rl.on("close", () => {
    if (leaving) return;
    if (interactive) return leave();
    // End of scripted input: send what was queued, wait (bounded) for acknowledgements, leave.
    void drainThenLeave();
  });
  const onSignal = () => leave();
  const offSignals = onStopSignal(onSignal);

  async function drainThenLeave(): Promise<void> {
    const limit = o.host.agent.registerTimeoutMs + o.host.agent.delivery.giveUpMs + 2000;
    await host.drain(limit);
    leave();
  }

  const exit = await host.done;
  setLogWriter(writeStderr);
  offSignals();
  rl.close();
  if (exit.message) {
    if (o.json) out.event({ type: "error", message: exit.message });
    writeAll(Deno.stderr, `p2pchat: ${exit.message}\n`);
  }
  return exit.code;
}

/** Our NAT as the host knows it so far, for `/peers`. */
function selfNat(host: PeerHost): SelfNat {
  const { report, mapping } = host.natSummary();
  return {
    mapping: report?.mapping ?? "unknown",
    mapped: mapping ? `${mapping.external.host}:${mapping.external.port}` : null,
    portmap: mapping?.protocol ?? null,
  };
}
