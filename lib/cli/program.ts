/**
 * The command tree. Built by a function that never exits the process: parse errors become
 * a `UsageError`, so tests can drive it without spawning.
 */
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { CommanderError } from "commander";
import { type Addr, formatAddr, ipv4Bytes, parseHostPort } from "../wire/addr.ts";
import { wsUrl } from "../wire/ws_url.ts";
import { NAME_RULE, validName } from "../wire/names.ts";
import { DEFAULT_AGENT_CONFIG } from "../peer/agent.ts";
import { DEFAULT_PATH_CONFIG } from "../peer/path.ts";
import { DEFAULT_SERVER_CONFIG } from "../server/state.ts";
import { defaultWsLimits } from "../net/ws_limits.ts";
import { type Cidr, parseCidrList } from "../server/forwarded.ts";
import { LOG_LEVELS } from "./log.ts";
import type { LockRequest } from "./secret.ts";
import { INVITE_ENV, SECRET_ENV, UsageError } from "./usage.ts";

export { INVITE_ENV, SECRET_ENV, UsageError };
import { TIMEOUT_MS } from "../nat/discovery.ts";

export const DEFAULT_PORT = 8848;
/** The STUN port (RFC 8489) `nat --stun` uses when none is given. */
export const STUN_PORT = 3478;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: (k: string) => string | undefined;
}

export type Invocation =
  | { cmd: "none" } // help or version was printed
  | { cmd: "id"; identity: string | undefined }
  | { cmd: "invite"; server: Addr; room: string }
  | {
    cmd: "serve";
    host: string;
    port: number;
    logLevel: typeof LOG_LEVELS[number];
    keepaliveMs: number;
    maxRoomMembers: number;
    maxRooms: number;
    maxPeers: number;
    nameTtlMs: number;
    maxNames: number;
    maxNamesPerIp: number;
    maxPerIp: number;
    maxPerKey: number;
    registrationsPerMinute: number;
    relayBytesPerSec: number;
    /** RFC 5780: the server's second address (STUN only). */
    altHost: string | undefined;
    /** Second STUN port; undefined: port + 1 if free; 0: none. */
    altPort: number | undefined;
    /** The WebSocket endpoint (server.ts's TcpOptions); false: --no-tcp. */
    tcp: false | {
      /** undefined: the UDP port's number, skipped with a warning if taken. */
      port: number | undefined;
      certFile: string | undefined;
      keyFile: string | undefined;
      /** --trust-proxy: reverse proxies whose X-Forwarded-For names the client; [] for none. */
      trustProxy: Cidr[];
      limits: {
        maxConnections: number;
        maxPerIp: number;
        /** Testing only (hidden flags): shorter deadlines. */
        firstMessageMs?: number;
        idleMs?: number;
      };
    };
  }
  | {
    cmd: "nat";
    target: Addr;
    kind: "p2pchat" | "stun";
    json: boolean;
    timeoutMs: number;
    /** Ask the gateway for a (short, deleted at once) port mapping to see which protocol works. */
    portmap: boolean;
  }
  | {
    cmd: "join";
    name: string | undefined;
    server: Addr;
    /**
     * The server's WebSocket endpoint: `only` when --server was a ws:// or wss:// URL (nothing
     * else is used), else the fallback for when UDP gets no answer; null: UDP only.
     */
    websocket: { url: string; only: boolean } | null;
    room: string;
    port: number;
    json: boolean;
    identity: string | undefined;
    logLevel: typeof LOG_LEVELS[number];
    keepaliveMs: number;
    ackTimeoutMs: number;
    punchWindowMs: number;
    retryDirectMs: number;
    predictPorts: number;
    portmap: boolean;
    natDiscovery: boolean;
    /** TCP hole punching after a failed UDP punch window (lib/peer/tcp_punch.ts). */
    tcpPunch: boolean;
    testDropDirect: boolean;
    /** A locked room: where its secret (or invite code) comes from; null for an open room. */
    lock: LockRequest | null;
  };

function intIn(lo: number, hi: number, what: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) {
      throw new InvalidArgumentError(`${what} must be a whole number from ${lo} to ${hi}`);
    }
    return Number(v);
  };
}

function secondsIn(v: string, lo: number, hi: number): number {
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < lo || Number(v) > hi) {
    throw new InvalidArgumentError(`must be a number of seconds from ${lo} to ${hi}`);
  }
  return Math.round(Number(v) * 1000);
}

function seconds(v: string): number {
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < 0.1 || Number(v) > 3600) {
    throw new InvalidArgumentError("must be a number of seconds from 0.1 to 3600");
  }
  return Math.round(Number(v) * 1000);
}

function serverAddr(v: string): Addr {
  const r = parseHostPort(v, DEFAULT_PORT);
  if (!r.ok) throw new InvalidArgumentError(`"${v}" is not HOST:PORT: ${r.reason}`);
  return r.value;
}

/** `--server` of join: HOST:PORT, or a ws:// or wss:// URL of the server's WebSocket endpoint. */
function joinServer(v: string): { addr: Addr; url: string | null } {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return { addr: serverAddr(v), url: null };
  const u = wsUrl(v);
  if (!u) {
    throw new InvalidArgumentError(`"${v}" is not HOST:PORT or a ws:// or wss:// URL`);
  }
  const port = u.port ? Number(u.port) : u.protocol === "wss:" ? 443 : 80;
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const r = parseHostPort(host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);
  if (!r.ok) throw new InvalidArgumentError(`"${v}": ${r.reason}`);
  return { addr: r.value, url: u.href };
}

/** Where --server points when neither the flag nor $P2PCHAT_SERVER says. */
const DEFAULT_SERVER: Addr = { host: "127.0.0.1", port: DEFAULT_PORT };

/** $P2PCHAT_SERVER parsed by `parse`, or `fallback` when unset; a bad value is a usage error. */
function fromEnv<T>(env: string | undefined, parse: (v: string) => T, fallback: T): T {
  if (!env) return fallback;
  try {
    return parse(env);
  } catch (e) {
    throw new UsageError(`P2PCHAT_SERVER: ${(e as Error).message}`);
  }
}

function stunAddr(v: string): Addr {
  const r = parseHostPort(v, STUN_PORT);
  if (!r.ok) throw new InvalidArgumentError(`"${v}" is not HOST:PORT: ${r.reason}`);
  return r.value;
}

function ipv4(v: string): string {
  if (!ipv4Bytes(v) || /(^|\.)0\d/.test(v)) {
    throw new InvalidArgumentError(`"${v}" is not an IPv4 address`);
  }
  return v;
}

function name(v: string): string {
  if (!validName(v)) throw new InvalidArgumentError(`"${v}" is not a valid name (${NAME_RULE})`);
  return v;
}

function levelOption() {
  return new Option("--log-level <level>", "log detail on stderr").choices(LOG_LEVELS);
}

/** What `join`'s secret flags say about the room's lock. */
interface LockFlags {
  secret?: boolean;
  secretFile?: string;
  invite?: boolean;
  inviteFile?: string;
}

/**
 * Refuses `join --secret VALUE` and `--invite CODE` (also `--secret=VALUE`) before parsing,
 * without repeating the value: the command line is visible to every user of the machine.
 */
function refuseSecretArguments(argv: string[]): void {
  if (argv[0] !== "join") return;
  argv.forEach((a, i) => {
    const next = argv[i + 1];
    const flag = ["--secret", "--invite"].find((f) =>
      a.startsWith(`${f}=`) || (a === f && next !== undefined && !next.startsWith("-"))
    );
    if (!flag) return;
    const what = flag === "--secret" ? "a room secret" : "an invite code";
    const env = flag === "--secret" ? SECRET_ENV : INVITE_ENV;
    throw new UsageError(
      `Cannot take ${what} on the command line, where other users can see it (ps): give ` +
        `${flag} alone and type it when asked, or use ${flag}-file FILE or $${env}`,
    );
  });
}

/**
 * Where a locked room's secret comes from: one of --secret (asked, or $P2PCHAT_ROOM_SECRET),
 * --secret-file, --invite (asked, or $P2PCHAT_INVITE), --invite-file, else either variable on
 * its own; null for an open room. An invite names its server and room, so it does not go with
 * --server or --room.
 */
function lockRequest(o: LockFlags, given: (flag: string) => boolean, io: Io): LockRequest | null {
  const flags = [
    o.secret && "--secret",
    o.secretFile !== undefined && "--secret-file",
    o.invite && "--invite",
    o.inviteFile !== undefined && "--invite-file",
  ].filter((f): f is string => typeof f === "string");
  if (flags.length > 1) throw new UsageError(`Cannot use ${flags.join(" and ")} together`);
  const envSecret = io.env(SECRET_ENV) ? SECRET_ENV : undefined;
  const envInvite = io.env(INVITE_ENV) ? INVITE_ENV : undefined;
  let lock: LockRequest | null = null;
  if (o.secret) {
    lock = {
      kind: "secret",
      source: envSecret ? { from: "env", name: envSecret } : { from: "prompt" },
    };
  } else if (o.secretFile !== undefined) {
    lock = { kind: "secret", source: { from: "file", path: o.secretFile } };
  } else if (o.invite) {
    lock = {
      kind: "invite",
      source: envInvite ? { from: "env", name: envInvite } : { from: "prompt" },
    };
  } else if (o.inviteFile !== undefined) {
    lock = { kind: "invite", source: { from: "file", path: o.inviteFile } };
  } else if (envSecret && envInvite) {
    throw new UsageError(`Cannot join: both $${SECRET_ENV} and $${INVITE_ENV} are set`);
  } else if (envInvite) {
    lock = { kind: "invite", source: { from: "env", name: envInvite } };
  } else if (envSecret) {
    lock = { kind: "secret", source: { from: "env", name: envSecret } };
  }
  if (lock?.kind === "invite" && (given("server") || given("room"))) {
    throw new UsageError(
      "Cannot use --server or --room with an invite: the invite names its server and room",
    );
  }
  return lock;
}

/** Parses argv (without the program name) into what to run. Throws UsageError on mistakes. */
export function parseArgs(argv: string[], io: Io, version: string): Invocation {
  let result: Invocation = { cmd: "none" };
  const program = new Command()
    .name("p2pchat")
    .description(
      "Peer-to-peer chat that gets through NATs: direct where possible, relayed where not.",
    )
    .version(version, "-V, --version")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err, outputError: () => {} });

  program.command("serve")
    .description(
      "run the rendezvous server (UDP, and WebSocket over TCP; also answers STUN Binding requests)",
    )
    .option("--host <addr>", "address to listen on (:: for IPv4 and IPv6 on one socket)", "0.0.0.0")
    .option("--port <port>", "UDP port", intIn(0, 65535, "--port"), DEFAULT_PORT)
    .addOption(
      // Kept in ms; help shows the default in seconds, as the flag takes it.
      new Option(
        "--keepalive <seconds>",
        "keepalive interval peers are told to use; silent for 3 of them = gone",
      )
        .argParser(seconds)
        .default(
          DEFAULT_SERVER_CONFIG.keepaliveMs,
          String(DEFAULT_SERVER_CONFIG.keepaliveMs / 1000),
        ),
    )
    .option(
      "--max-room-members <n>",
      "members per room",
      intIn(1, 100000, "--max-room-members"),
      DEFAULT_SERVER_CONFIG.maxMembersPerRoom,
    )
    .option(
      "--max-rooms <n>",
      "rooms",
      intIn(1, 1e6, "--max-rooms"),
      DEFAULT_SERVER_CONFIG.maxRooms,
    )
    .option(
      "--max-peers <n>",
      "peers in total",
      intIn(1, 1e7, "--max-peers"),
      DEFAULT_SERVER_CONFIG.maxPeers,
    )
    .addOption(
      // Kept in ms; help shows the default in seconds, as the flag takes it.
      new Option(
        "--name-ttl <seconds>",
        "how long a name stays reserved for its key after its owner left",
      )
        .argParser((v: string) => secondsIn(v, 0, 365 * 86400))
        .default(DEFAULT_SERVER_CONFIG.nameTtlMs, String(DEFAULT_SERVER_CONFIG.nameTtlMs / 1000)),
    )
    .option(
      "--max-names <n>",
      "names bound to keys, held or within their TTL (new names are refused beyond this)",
      intIn(1, 1e7, "--max-names"),
      DEFAULT_SERVER_CONFIG.maxNameBindings,
    )
    .option(
      "--max-names-per-ip <n>",
      "names bound by one source IP (IPv4 address or IPv6 /64)",
      intIn(1, 1e7, "--max-names-per-ip"),
      DEFAULT_SERVER_CONFIG.maxNamesPerIp,
    )
    .option(
      "--max-per-ip <n>",
      "live registrations per source IP (IPv4 address or IPv6 /64)",
      intIn(1, 1e7, "--max-per-ip"),
      DEFAULT_SERVER_CONFIG.maxPeersPerIp,
    )
    .option(
      "--max-per-key <n>",
      "live registrations per identity key",
      intIn(1, 1e7, "--max-per-key"),
      DEFAULT_SERVER_CONFIG.maxPeersPerKey,
    )
    .option(
      "--max-registrations <n>",
      "registration attempts per source IP per minute",
      intIn(1, 1e6, "--max-registrations"),
      DEFAULT_SERVER_CONFIG.registrationsPerMinute,
    )
    .option(
      "--relay-rate <bytes>",
      "relayed bytes per second per peer",
      intIn(1024, 1e9, "--relay-rate"),
      DEFAULT_SERVER_CONFIG.relayBytesPerSec,
    )
    .option(
      "--alt-host <addr>",
      "the server's second IPv4 address: answer RFC 5780 NAT discovery (STUN) on it too; " +
        "--host must then be an address of the server, not 0.0.0.0",
      ipv4,
    )
    .option(
      "--alt-port <port>",
      "second STUN port for NAT discovery (default: --port + 1, if free; 0 = none)",
      intIn(0, 65535, "--alt-port"),
    )
    .option(
      "--tcp-port <port>",
      "TCP port of the WebSocket endpoint, path /p2pchat (default: the UDP port's number; " +
        "0 = any free port)",
      intIn(0, 65535, "--tcp-port"),
    )
    .option("--no-tcp", "no WebSocket endpoint: UDP only")
    .option("--tls-cert <file>", "PEM certificate chain: serve the WebSocket endpoint as wss://")
    .option("--tls-key <file>", "PEM private key of --tls-cert")
    .option(
      "--max-tcp-connections <n>",
      "open WebSocket connections in total (each holds a file descriptor, and up to 64 MiB " +
        "while a message arrives)",
      intIn(1, 1e7, "--max-tcp-connections"),
      defaultWsLimits(DEFAULT_SERVER_CONFIG.keepaliveMs).maxConnections,
    )
    .option(
      "--trust-proxy <cidr,...>",
      "reverse proxies (IP or CIDR, comma list, repeatable) whose X-Forwarded-For names the " +
        "WebSocket client: per-IP caps and public addresses then count the client, not the proxy",
      (v: string, prev: Cidr[] = []) => {
        const r = parseCidrList(v);
        if (!r.ok) throw new InvalidArgumentError(r.reason);
        return [...prev, ...r.value];
      },
    )
    .option(
      "--max-tcp-per-ip <n>",
      "open WebSocket connections per source IP (IPv4 address or IPv6 /64; behind a reverse " +
        "proxy every connection comes from the proxy, unless --trust-proxy names it)",
      intIn(1, 1e7, "--max-tcp-per-ip"),
      defaultWsLimits(DEFAULT_SERVER_CONFIG.keepaliveMs).maxPerIp,
    )
    .addOption(
      new Option("--test-ws-first-message <seconds>", "testing: WebSocket first-message deadline")
        .argParser(seconds).hideHelp(),
    )
    .addOption(
      new Option("--test-ws-idle <seconds>", "testing: WebSocket idle deadline")
        .argParser(seconds).hideHelp(),
    )
    .addOption(levelOption().default("info" as const))
    .exitOverride()
    .action((o) => {
      if (!o.tcp && (o.tcpPort !== undefined || o.tlsCert || o.tlsKey || o.trustProxy)) {
        throw new UsageError(
          "Cannot use --no-tcp with --tcp-port, --tls-cert, --tls-key or --trust-proxy",
        );
      }
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
        throw new UsageError("Cannot serve TLS: give both --tls-cert and --tls-key");
      }
      if (o.altHost !== undefined) {
        if (!ipv4Bytes(o.host) || o.host === "0.0.0.0") {
          throw new UsageError(
            `Cannot use --alt-host: --host must be one of the server's IPv4 addresses, not "${o.host}"`,
          );
        }
        if (o.altHost === o.host) {
          throw new UsageError("Cannot use --alt-host: it must differ from --host");
        }
        if (o.altPort === 0) {
          throw new UsageError("Cannot use --alt-host with --alt-port 0: RFC 5780 needs both");
        }
      }
      if (o.altPort !== undefined && o.altPort !== 0 && o.altPort === o.port) {
        throw new UsageError("Cannot use --alt-port: it must differ from --port");
      }
      result = {
        cmd: "serve",
        host: o.host,
        port: o.port,
        logLevel: o.logLevel,
        keepaliveMs: o.keepalive,
        maxRoomMembers: o.maxRoomMembers,
        maxRooms: o.maxRooms,
        maxPeers: o.maxPeers,
        nameTtlMs: o.nameTtl,
        maxNames: o.maxNames,
        maxNamesPerIp: o.maxNamesPerIp,
        maxPerIp: o.maxPerIp,
        maxPerKey: o.maxPerKey,
        registrationsPerMinute: o.maxRegistrations,
        relayBytesPerSec: o.relayRate,
        altHost: o.altHost,
        altPort: o.altPort,
        tcp: o.tcp && {
          port: o.tcpPort,
          certFile: o.tlsCert,
          keyFile: o.tlsKey,
          trustProxy: o.trustProxy ?? [],
          limits: {
            maxConnections: o.maxTcpConnections,
            maxPerIp: o.maxTcpPerIp,
            ...(o.testWsFirstMessage !== undefined ? { firstMessageMs: o.testWsFirstMessage } : {}),
            ...(o.testWsIdle !== undefined ? { idleMs: o.testWsIdle } : {}),
          },
        },
      };
    });

  program.command("id")
    .description("print your identity's public key fingerprint (creating the identity if needed)")
    .option("--identity <file>", "identity file (default: in your config directory)")
    .exitOverride()
    .action((o) => {
      result = { cmd: "id", identity: o.identity };
    });

  const envServer = io.env("P2PCHAT_SERVER");
  program.command("nat")
    .description(
      "find out how your NAT behaves: mapping, filtering, port allocation, hairpinning " +
        "(RFC 5780 tests against the server's STUN)",
    )
    .option(
      "--server <host:port>",
      "p2pchat server to test against (env P2PCHAT_SERVER)",
      serverAddr,
    )
    .option("--stun <host:port>", "any RFC 5780 STUN server instead (port default 3478)", stunAddr)
    .option("--json", "one JSON object on stdout", false)
    .option(
      "--no-portmap",
      "do not try a port mapping on the gateway (UPnP, NAT-PMP, PCP; made and deleted at once)",
    )
    .addOption(
      // Kept in ms; help shows the default in seconds, as the flag takes it.
      new Option("--timeout <seconds>", "give up on each request after this long (a run takes ~2x)")
        .argParser((v: string) => secondsIn(v, 0.2, 30))
        .default(TIMEOUT_MS, String(TIMEOUT_MS / 1000)),
    )
    .exitOverride()
    .action((o) => {
      if (o.server && o.stun) throw new UsageError("Cannot use --server and --stun together");
      const target = o.stun ?? o.server ?? fromEnv(envServer, serverAddr, DEFAULT_SERVER);
      result = {
        cmd: "nat",
        target,
        kind: o.stun ? "stun" : "p2pchat",
        json: o.json,
        timeoutMs: o.timeout,
        portmap: o.portmap,
      };
    });

  program.command("invite")
    .description(
      "make a locked room's secret and print an invite code for it (share it privately; " +
        "everyone, you too, joins with: p2pchat join --invite)",
    )
    .requiredOption("--room <room>", "the room to lock", name)
    .addOption(
      new Option("--server <host:port>", "the server the room is on (env P2PCHAT_SERVER)")
        .argParser(serverAddr),
    )
    .exitOverride()
    .action((o) => {
      const server = o.server ?? fromEnv(envServer, serverAddr, DEFAULT_SERVER);
      result = { cmd: "invite", server, room: o.room };
    });

  program.command("join")
    .description("join a room as a peer and chat (type /help once in)")
    .option("--name <name>", `your name in the room (${NAME_RULE})`, name)
    .addOption(
      new Option(
        "--server <host:port|url>",
        "rendezvous server; a ws:// or wss:// URL uses its WebSocket only (env P2PCHAT_SERVER)",
      )
        .argParser(joinServer)
        .default(
          envServer ? undefined : { addr: DEFAULT_SERVER, url: null },
          envServer ? `$P2PCHAT_SERVER = ${envServer}` : formatAddr(DEFAULT_SERVER),
        ),
    )
    .option(
      "--websocket-url <url>",
      "where the server's WebSocket is, for networks that block UDP (default ws://SERVER/p2pchat)",
    )
    .option("--no-websocket", "UDP only: never fall back to the server's WebSocket")
    .option("--room <room>", "room to join", name, "lobby")
    .option("--port <port>", "local UDP port (0 = any)", intIn(0, 65535, "--port"), 0)
    .option("--json", "machine-readable events on stdout, one JSON object per line", false)
    .option(
      "--secret",
      `the room is locked: type its secret when asked, hidden (or $${SECRET_ENV})`,
    )
    .option("--secret-file <file>", "the room is locked: its secret is the first line of FILE")
    .option(
      "--invite",
      `join with an invite code (p2pchat invite), typed when asked, hidden (or $${INVITE_ENV}); ` +
        "it names the server and room",
    )
    .option("--invite-file <file>", "join with the invite code in the first line of FILE")
    .option("--identity <file>", "identity file (default: in your config directory)")
    .addOption(
      // Kept in ms; help shows the default in seconds, as the flag takes it.
      new Option("--keepalive <seconds>", "keepalive interval to the server and on direct paths")
        .argParser(seconds)
        .default(DEFAULT_AGENT_CONFIG.keepaliveMs, String(DEFAULT_AGENT_CONFIG.keepaliveMs / 1000)),
    )
    .option(
      "--ack-timeout <ms>",
      "wait this long for a LAN handshake ACK before asking the server to help punch",
      intIn(50, 10000, "--ack-timeout"),
      DEFAULT_PATH_CONFIG.ackTimeoutMs,
    )
    .option(
      "--punch-window <ms>",
      "how long to probe for a direct path before relaying",
      intIn(200, 60000, "--punch-window"),
      DEFAULT_PATH_CONFIG.punchWindowMs,
    )
    .addOption(
      // Kept in ms; help shows the default in seconds, as the flag takes it.
      new Option(
        "--retry-direct <seconds>",
        "while relayed, try for a direct path again this often",
      )
        .argParser(seconds)
        .default(
          DEFAULT_PATH_CONFIG.retryDirectMs,
          String(DEFAULT_PATH_CONFIG.retryDirectMs / 1000),
        ),
    )
    .option(
      "--predict-ports <n>",
      "how many ports above a peer's public port to probe, for NATs that allocate ports in sequence",
      intIn(0, 64, "--predict-ports"),
      DEFAULT_PATH_CONFIG.predictPorts,
    )
    .option(
      "--no-portmap",
      "do not ask the gateway (UPnP, NAT-PMP, PCP) to map our port",
    )
    .option(
      "--no-nat-discovery",
      "do not test how our NAT behaves (used to pick birthday punching)",
    )
    .option(
      "--no-tcp-punch",
      "do not try TCP hole punching when UDP punching fails",
    )
    .addOption(levelOption().default("warning" as const))
    .addOption(
      new Option("--test-drop-direct", "testing: drop all peer-to-peer datagrams").hideHelp(),
    )
    .exitOverride()
    .action((o, cmd) => {
      const lock = lockRequest(o, (flag) => cmd.getOptionValueSource(flag) === "cli", io);
      const server = o.server ??
        fromEnv(envServer, joinServer, { addr: DEFAULT_SERVER, url: null });
      if (server.url && o.websocketUrl !== undefined) {
        throw new UsageError("Cannot use --websocket-url with a ws:// --server: it names one");
      }
      if (server.url && o.websocket === false) {
        throw new UsageError("Cannot use --no-websocket with a ws:// --server");
      }
      let fallback: string | null = null;
      if (o.websocketUrl !== undefined) {
        const u = wsUrl(o.websocketUrl);
        if (!u) {
          throw new UsageError(`--websocket-url: "${o.websocketUrl}" is not a ws:// or wss:// URL`);
        }
        fallback = u.href;
      } else if (o.websocket !== false) {
        // Through the URL parser, so an IPv6 literal is written the canonical way.
        fallback = wsUrl(`ws://${formatAddr(server.addr)}/p2pchat`)?.href ?? null;
      }
      result = {
        cmd: "join",
        name: o.name,
        server: server.addr,
        websocket: server.url
          ? { url: server.url, only: true }
          : fallback && o.websocket !== false
          ? { url: fallback, only: false }
          : null,
        room: o.room,
        port: o.port,
        json: o.json,
        identity: o.identity,
        logLevel: o.logLevel,
        keepaliveMs: o.keepalive,
        ackTimeoutMs: o.ackTimeout,
        punchWindowMs: o.punchWindow,
        retryDirectMs: o.retryDirect,
        predictPorts: o.predictPorts,
        portmap: o.portmap,
        natDiscovery: o.natDiscovery,
        tcpPunch: o.tcpPunch,
        testDropDirect: o.testDropDirect === true,
        lock,
      };
    });

  refuseSecretArguments(argv);
  try {
    program.parse(argv, { from: "user" });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (e instanceof CommanderError) {
      if (
        e.code === "commander.helpDisplayed" || e.code === "commander.version" ||
        e.code === "commander.help"
      ) return { cmd: "none" };
      // One line: what was wrong, and where to look.
      throw new UsageError(`${e.message.replace(/^error: /, "")} (add --help for usage)`);
    }
    throw e;
  }
  return result;
}
