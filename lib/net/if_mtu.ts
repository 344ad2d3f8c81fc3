/**
 * An interface's MTU from the kernel itself (ioctl SIOCGIFMTU through Deno's FFI), for where
 * /sys cannot be read: Deno reads /sys only with every permission granted (denoland/deno#27564),
 * while the compiled binary grants FFI (for lib/net/mmsg.ts). Linux with glibc, x86_64 or
 * aarch64; null anywhere else, without the FFI permission, or for an unknown interface.
 */

import { openLibc } from "./_libc.ts";

const AF_INET = 2, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000;
const SIOCGIFMTU = 0x8921;
/** struct ifreq: the name (16 bytes, NUL-terminated), then a union whose int is the MTU. */
const IFREQ = 40, IFNAMSIZ = 16;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

let libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | null | undefined;

function load() {
  if (libc === undefined) libc = openLibc(SYMBOLS);
  return libc;
}

/** The MTU of interface `name` ("eth0"), or null. Never throws. */
export function ioctlMtu(name: string): number | null {
  const c = load();
  const bytes = new TextEncoder().encode(name);
  if (!c || bytes.length === 0 || bytes.length >= IFNAMSIZ) return null;
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return null;
  try {
    const req = new Uint8Array(IFREQ);
    req.set(bytes);
    if (c.ioctl(fd, BigInt(SIOCGIFMTU), req) !== 0) return null;
    const mtu = new DataView(req.buffer).getInt32(IFNAMSIZ, true);
    return mtu > 0 ? mtu : null;
  } finally {
    c.close(fd);
  }
}
