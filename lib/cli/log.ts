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

/** Configures logging once per process; `write` defaults to synchronous stderr writes. */
export function setupLogging(
  level: Level,
  write: (line: string) => void = (l) => Deno.stderr.writeSync(enc.encode(l)),
): Logger {
  configureSync({
    reset: true,
    sinks: { stderr: (r: LogRecord) => write(defaultTextFormatter(r)) },
    loggers: [
      { category: ["p2pchat"], lowestLevel: level as LogLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  return getLogger(["p2pchat"]);
}
