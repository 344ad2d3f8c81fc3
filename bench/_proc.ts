/**
 * Linux /proc readings for the bench: a process's memory and CPU time, and a UDP socket's drop
 * counter. Every reader returns undefined fields rather than throwing (not Linux, process gone).
 */

export interface ProcReading {
  /** Resident set size now (VmRSS). */
  rssKiB?: number;
  /** Peak resident set size over the process's life (VmHWM). */
  peakKiB?: number;
  /** User + system CPU time, in clock ticks (see USER_HZ). */
  cpuTicks?: number;
}

/** Clock ticks per second in /proc/<pid>/stat (USER_HZ): 100 on every mainstream Linux. */
export const USER_HZ = 100;

export function readProc(pid: number): ProcReading {
  const out: ProcReading = {};
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kib = (key: string) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
      return m ? Number(m[1]) : undefined;
    };
    out.rssKiB = kib("VmRSS");
    out.peakKiB = kib("VmHWM");
    // Fields after the ")" that ends the command name start at field 3; utime is 14, stime 15.
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(f[11]) + Number(f[12]);
    if (Number.isFinite(ticks)) out.cpuTicks = ticks;
  } catch { /* not Linux, or the process is gone */ }
  return out;
}

/**
 * Datagrams the kernel dropped for the IPv4 UDP socket bound to 127.0.0.1:`port` because its
 * receive buffer was full (the `drops` column of /proc/net/udp), or undefined.
 */
export function udpSocketDrops(port: number): number | undefined {
  try {
    const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
    for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === want) return Number(f[f.length - 1]);
    }
  } catch { /* not Linux */ }
  return undefined;
}

/** A socket a process holds: protocol and local address, as /proc/net shows them. */
export interface ProcSocket {
  proto: "udp" | "udp6" | "tcp" | "tcp6";
  /** Dotted IPv4, or the kernel's hex for IPv6 ("::1" for loopback). */
  host: string;
  port: number;
}

/** The IP sockets process `pid` has open (from /proc/<pid>/fd and /proc/net), or undefined. */
export function socketsOf(pid: number): ProcSocket[] | undefined {
  try {
    const inodes = new Set<string>();
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
        if (m) inodes.add(m[1]!);
      } catch { /* closed meanwhile */ }
    }
    const out: ProcSocket[] = [];
    for (const proto of ["udp", "udp6", "tcp", "tcp6"] as const) {
      let text: string;
      try {
        text = Deno.readTextFileSync(`/proc/net/${proto}`);
      } catch {
        continue;
      }
      for (const line of text.split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10 || !inodes.has(f[9]!)) continue;
        const [hex, portHex] = f[1]!.split(":");
        out.push({ proto, host: hostOf(hex!), port: parseInt(portHex!, 16) });
      }
    }
    return out;
  } catch {
    return undefined;
  }
}

function hostOf(hex: string): string {
  if (hex.length === 8) {
    // Little-endian on every Linux the bench runs on: 0100007F is 127.0.0.1.
    const n = parseInt(hex, 16);
    return `${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${n >>> 24}`;
  }
  return hex === "00000000000000000000000001000000" ? "::1" : hex;
}

/** The 1-minute load average (other work on the machine skews every figure), or undefined. */
export function loadAverage(): number | undefined {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return undefined;
  }
}

/**
 * Kernel drops (receive buffer full) summed over the UDP sockets that `ss` lists for `filter`
 * (ss's own filter language, e.g. "src 127.1.0.0/16"), or undefined without `ss`. Fast with
 * many sockets, where reading /proc/net/udp takes minutes for 100,000 of them.
 */
export async function ssDrops(filter: string[]): Promise<number | undefined> {
  try {
    const r = await new Deno.Command("ss", {
      args: ["-u", "-a", "-n", "-m", "-H", ...filter],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!r.success) return undefined;
    let n = 0;
    for (const m of new TextDecoder().decode(r.stdout).matchAll(/skmem:\([^)]*\bd(\d+)\)/g)) {
      n += Number(m[1]);
    }
    return n;
  } catch {
    return undefined;
  }
}
