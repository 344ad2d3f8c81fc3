/**
 * glibc through Deno's FFI, for the few system calls the runtime does not offer (batched UDP,
 * an interface's MTU). The struct layouts its callers use are those of LP64 Linux.
 */

/**
 * `symbols` of libc.so.6, or null where they cannot be had: not Linux on x86_64 or aarch64, no
 * FFI permission (asked first, so nothing prompts on a terminal), no glibc. Callers load once.
 */
export function openLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | null {
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    return Deno.dlopen("libc.so.6", symbols).symbols;
  } catch {
    return null;
  }
}
