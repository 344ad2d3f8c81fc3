/**
 * Stop signals, portably: SIGINT and SIGTERM where they exist; Windows only has Ctrl-C (SIGINT)
 * and Ctrl-Break (SIGBREAK), and Deno throws when asked for SIGTERM there.
 */
const STOP_SIGNALS: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];

/** Calls `fn` on a stop signal until the returned function is called. */
export function onStopSignal(fn: () => void): () => void {
  for (const s of STOP_SIGNALS) Deno.addSignalListener(s, fn);
  return () => {
    for (const s of STOP_SIGNALS) Deno.removeSignalListener(s, fn);
  };
}
