/** Command-line pieces the bench scripts share: a usage error and checked numbers. */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake on the command line: the script prints its usage and exits 2. */
export class UsageError extends Error {}

/** `text` as a number within [min, max], or `dflt` when the flag was not given. */
export function num(
  text: string | undefined,
  flag: string,
  min: number,
  max: number,
  dflt = NaN,
): number {
  if (text === undefined) return dflt;
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v) || v < min || v > max) {
    throw new UsageError(`Cannot parse ${flag} "${text}": use a number from ${min} to ${max}`);
  }
  return v;
}

/** `text` as a whole number within [min, max], or `dflt` when the flag was not given. */
export function int(
  text: string | undefined,
  flag: string,
  min: number,
  max: number,
  dflt: number,
): number {
  if (text === undefined) return dflt;
  const v = Number(text);
  if (text.trim() === "" || !Number.isInteger(v) || v < min || v > max) {
    throw new UsageError(`Cannot parse ${flag} "${text}": use an integer from ${min} to ${max}`);
  }
  return v;
}

/** Strict flag parsing (no positionals); a malformed command line is a UsageError. */
export function flags<O extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: O,
) {
  try {
    return parseArgs({ args, strict: true, allowPositionals: false, options }).values;
  } catch (e) {
    throw new UsageError(`Cannot parse arguments: ${e instanceof Error ? e.message : e}`);
  }
}
