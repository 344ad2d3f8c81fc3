/**
 * What decoders and parsers return instead of throwing: the value, or why the input was
 * refused. `reason` is short and stable, since drop counters are keyed by it.
 */
export type Result<T> = { ok: true; value: T } | { ok: false; reason: string };
