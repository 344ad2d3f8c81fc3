/**
 * What keeps a bench from outliving its run: a hard deadline, and Ctrl-C, both of which call
 * `kill` (to stop what the bench started) and exit (1 and 130).
 * @returns the function that disarms both, for the bench's `finally`
 */
export function guard(name: string, budgetMs: number, kill: () => void): () => void {
  const watchdog = setTimeout(() => {
    console.error(`${name}: Cannot finish: still running after ${budgetMs} ms; giving up`);
    kill();
    Deno.exit(1);
  }, budgetMs);
  const onSignal = () => {
    kill();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  return () => {
    clearTimeout(watchdog);
    Deno.removeSignalListener("SIGINT", onSignal);
  };
}
