/**
 * p2pchat command-line entry: parse flags, call into lib/ and server.ts, map errors to exit
 * codes (0 ok, 1 network or runtime failure, 2 a user mistake).
 */
import denoJson from "./deno.json" with { type: "json" };
import { type Invocation, parseArgs, UsageError } from "./lib/cli/program.ts";
import { setupLogging } from "./lib/cli/log.ts";
import { writeAll } from "./lib/cli/output.ts";
import { NAME_RULE, validName } from "./lib/wire/names.ts";
import { serve } from "./server.ts";
import { runJoin } from "./lib/cli/join.ts";
import { lockedRoom, terminalSecretIo } from "./lib/cli/secret.ts";
import { inviteHint, newInvite } from "./lib/cli/invite.ts";
import { portmapLines, runNat } from "./lib/cli/nat.ts";
import { DEFAULT_AGENT_CONFIG } from "./lib/peer/agent.ts";
import { DEFAULT_PATH_CONFIG } from "./lib/peer/path.ts";
import { resolveAddr } from "./lib/net/resolve.ts";
import { formatAddr } from "./lib/wire/addr.ts";
import {
  configDir,
  IDENTITY_FILE,
  KNOWN_PEERS_FILE,
  KnownPeersFile,
  loadOrCreateIdentity,
} from "./lib/identity/store.ts";
import { fingerprint, type Identity, sign } from "./lib/identity/identity.ts";

export const VERSION: string = denoJson.version;

async function askName(): Promise<string> {
  const { input } = await import("@inquirer/prompts");
  return await input({
    message: "Your name:",
    validate: (v) => validName(v) || `use ${NAME_RULE}`,
  });
}

async function identity(
  path: string | undefined,
): Promise<{ id: Identity; path: string; created: boolean }> {
  const p = path ?? `${configDir()}/${IDENTITY_FILE}`;
  const { identity, created } = await loadOrCreateIdentity(p);
  return { id: identity, path: p, created };
}

async function run(inv: Invocation): Promise<number> {
  switch (inv.cmd) {
    case "none":
      return 0;
    case "id": {
      const { id, path, created } = await identity(inv.identity);
      writeAll(Deno.stdout, `${fingerprint(id.edPublic)}\n`);
      writeAll(Deno.stderr, `${created ? "created" : "identity"} ${path}\n`);
      return 0;
    }
    case "serve":
      return await serve({
        host: inv.host,
        port: inv.port,
        config: {
          keepaliveMs: inv.keepaliveMs,
          maxMembersPerRoom: inv.maxRoomMembers,
          maxRooms: inv.maxRooms,
          maxPeers: inv.maxPeers,
          nameTtlMs: inv.nameTtlMs,
          maxNameBindings: inv.maxNames,
          maxNamesPerIp: inv.maxNamesPerIp,
          maxPeersPerIp: inv.maxPerIp,
          maxPeersPerKey: inv.maxPerKey,
          registrationsPerMinute: inv.registrationsPerMinute,
          relayBytesPerSec: inv.relayBytesPerSec,
        },
        altHost: inv.altHost,
        altPort: inv.altPort,
        tcp: inv.tcp,
        log: setupLogging(inv.logLevel),
      });
    case "nat":
      return await runNat(inv, {
        out: (s) => writeAll(Deno.stdout, s),
        portmap: inv.portmap ? portmapLines : undefined,
      });
    case "invite":
      writeAll(Deno.stdout, `${newInvite(inv.server, inv.room)}\n`);
      writeAll(Deno.stderr, inviteHint(inv.server, inv.room));
      return 0;
    case "join": {
      let name = inv.name;
      if (name === undefined) {
        if (!Deno.stdin.isTerminal() || inv.json) {
          throw new UsageError(`Cannot join: --name is required (${NAME_RULE})`);
        }
        name = await askName();
      }
      // A locked room: its keys from its secret; an invite also names the server and room.
      const lock = inv.lock
        ? await lockedRoom(inv.lock, { server: inv.server, room: inv.room }, terminalSecretIo)
        : null;
      const room = lock?.room ?? inv.room;
      const serverAt = lock?.server ?? inv.server;
      const log = setupLogging(inv.logLevel);
      const me = await identity(inv.identity);
      if (me.created) log.info(`created identity ${me.path} (${fingerprint(me.id.edPublic)})`);
      const server = await resolveAddr(serverAt);
      const known = await KnownPeersFile.open(`${configDir()}/${KNOWN_PEERS_FILE}`);
      // Pins are per server and room: that is where a name is bound to a key.
      const pinKey = (peer: string) => `${formatAddr(serverAt)}/${room}/${peer}`;
      const trust = {
        check: (peer: string, fp: string) => known.check(pinKey(peer), fp),
        pin: (peer: string, fp: string) => {
          known.pin(pinKey(peer), fp).catch((e) => log.warn(e.message));
        },
      };
      return await runJoin({
        json: inv.json,
        log,
        host: {
          // Dual stack: IPv4 and IPv6 on one socket ("0.0.0.0" where IPv6 is off; udp.ts).
          bindHost: "::",
          port: inv.port,
          dropDirect: inv.testDropDirect,
          portmap: inv.portmap,
          // Discovery is STUN over UDP to the server: nothing to learn when it is WebSocket only.
          discovery: inv.natDiscovery && !inv.websocket?.only,
          ws: inv.websocket
            ? { url: inv.websocket.url, mode: inv.websocket.only ? "ws" : "auto" }
            : undefined,
          agent: {
            ...DEFAULT_AGENT_CONFIG,
            name,
            room,
            server,
            roomKeys: lock?.keys,
            identity: {
              key: me.id.edPublic,
              sign: (m) => sign(me.id, m),
              staticKey: { publicKey: me.id.xPublic, privateKey: me.id.xSecret },
            },
            trust,
            keepaliveMs: inv.keepaliveMs,
            path: {
              ...DEFAULT_PATH_CONFIG,
              ackTimeoutMs: inv.ackTimeoutMs,
              punchWindowMs: inv.punchWindowMs,
              keepaliveMs: inv.keepaliveMs,
              retryDirectMs: inv.retryDirectMs,
              predictPorts: inv.predictPorts,
            },
            tcpPunch: inv.tcpPunch ? DEFAULT_AGENT_CONFIG.tcpPunch : null,
          },
        },
      });
    }
  }
}

/** Runs the CLI and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const io = {
    out: (s: string) => writeAll(Deno.stdout, s),
    err: (s: string) => writeAll(Deno.stderr, s),
    env: (k: string) => Deno.env.get(k),
  };
  try {
    if (argv.length === 0) {
      parseArgs(["--help"], { ...io, out: io.err }, VERSION);
      return 2;
    }
    return await run(parseArgs(argv, io, VERSION));
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`p2pchat: ${e.message}\n`);
      return 2;
    }
    // Ctrl-C at the name prompt.
    if (e instanceof Error && e.name === "ExitPromptError") return 130;
    if (e instanceof Error && e.message.startsWith("Cannot ")) {
      io.err(`p2pchat: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
