/** Logging: @logtape/logtape, always to stderr (stdout belongs to chat output and --json). */
import {
  configureSync,
  defaultTextFormatter,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
export type Level = typeof LOG_LEVELS[number];

const enc = new TextEncoder();

/** Writes all of a line to stderr (writeSync may write only part of a buffer). */
export function writeStderr(line: string): void {
  let b = enc.encode(line);
  while (b.length > 0) b = b.subarray(Deno.stderr.writeSync(b));
}

let sink: (line: string) => void = writeStderr;

/**
 * Routes log lines through `write` from now on (the interactive chat uses this to keep them
 * from garbling the line being typed); `writeStderr` restores the default.
 */
export function setLogWriter(write: (line: string) => void): void {
  sink = write;
}

/** Configures logging once per process; `write` defaults to synchronous stderr writes. */
export function setupLogging(level: Level, write?: (line: string) => void): Logger {
  if (write) sink = write;
  configureSync({
    reset: true,
    sinks: { stderr: (r: LogRecord) => sink(defaultTextFormatter(r)) },
    loggers: [
      { category: ["p2pchat"], lowestLevel: level as LogLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  return getLogger(["p2pchat"]);
}
