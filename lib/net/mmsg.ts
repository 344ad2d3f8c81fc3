/**
 * Batched UDP for Linux: libc's recvmmsg and sendmmsg through Deno's FFI, so one system call
 * moves up to BATCH datagrams each way, where Deno.DatagramConn costs one runtime op (and one
 * promise) per datagram. IPv4, or IPv6 (dual stack on "::": IPv4 senders are reported as plain
 * IPv4, and IPv4 destinations are sent to v4-mapped, as lib/net/udp.ts does). The receive
 * blocks on a runtime thread (a nonblocking FFI
 * call) until a datagram comes, then takes whatever else is queued, on the event loop's own
 * thread while more keeps coming: nothing polls. Sends are
 * copied into a batch that leaves at the end of the current task, with MSG_DONTWAIT: a full
 * socket buffer drops and counts them, it never blocks the event loop.
 *
 * It needs the FFI permission (which grants everything a process can do) and glibc on Linux,
 * x86_64 or aarch64 (the struct layouts below are those of LP64 Linux); `mmsgUsable` says
 * whether it can be used, openUdp falls back to Deno.DatagramConn otherwise.
 */
import { type Addr, ipFromBytes, ipv4Bytes, ipv6Bytes } from "../wire/addr.ts";
import { openLibc } from "./_libc.ts";

/** Datagrams per system call, each way: enough to empty a busy socket in a few calls. */
export const BATCH = 64;
/**
 * Batches taken without waiting after a wake-up, at most, before the event loop runs again:
 * under a flood, a handful of system calls per wake-up instead of a thread round trip per batch.
 */
const SYNC_BATCHES = 8;
/** One receive slot: any UDP payload fits, so nothing is cut short (untouched pages cost no RSS). */
const SLOT = 65536;
/** The largest datagram `send` takes (the UDP maximum for IPv4). */
const MAX_DATAGRAM = 65507;

// LP64 Linux: struct mmsghdr { struct msghdr (56 bytes); unsigned int msg_len; } padded to 64.
const MMSGHDR = 64;
const MSG_NAME = 0, MSG_NAMELEN = 8, MSG_IOV = 16, MSG_IOVLEN = 24, MSG_FLAGS = 48, MSG_LEN = 56;
const IOVEC = 16;
const SOCKADDR_IN = 16;
/** sockaddr_in6: family u16, port u16, flowinfo u32, address (16 bytes), scope id u32. */
const SOCKADDR_IN6 = 28;
/** Room for either kind of address in each slot. */
const NAME = SOCKADDR_IN6;
const AF_INET = 2, AF_INET6 = 10, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000;
const IPPROTO_IPV6 = 41, IPV6_V6ONLY = 26;
const MSG_DONTWAIT = 0x40, MSG_TRUNC = 0x20, MSG_WAITFORONE = 0x10000;
const SHUT_RDWR = 2;
const SOL_SOCKET = 1, SO_SNDBUF = 7, SO_RCVBUF = 8, SO_SNDBUFFORCE = 32, SO_RCVBUFFORCE = 33;
/**
 * The receive buffer asked for: what arrives while the event loop is busy elsewhere (a garbage
 * collection, a burst of registrations) waits here instead of being dropped; about 100 ms of
 * 40,000 small datagrams a second. The kernel caps it at net.core.rmem_max unless the process
 * may exceed that (CAP_NET_ADMIN).
 */
const RECEIVE_BUFFER_BYTES = 4 << 20;
/**
 * The send buffer asked for: sends never wait (MSG_DONTWAIT), so what a slow uplink has not
 * taken yet must fit here or be dropped; the default (about 200 KB) dropped bursts that the
 * runtime's sockets, which wait, delivered (a 20 Mbit/s link, bursts of 240 KB).
 */
const SEND_BUFFER_BYTES = 4 << 20;
const EINTR = 4, EAGAIN = 11, EAFNOSUPPORT = 97;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  recvmmsg: {
    parameters: ["i32", "buffer", "u32", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  /** The same call without a thread, for `receiveNow` (with MSG_DONTWAIT it never blocks). */
  recvmmsgNow: {
    name: "recvmmsg",
    parameters: ["i32", "buffer", "u32", "i32", "pointer"],
    result: "i32",
  },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | null | undefined;

/** libc, loaded once; null where it cannot be (see openLibc). */
function load(): Libc | null {
  if (libc === undefined) libc = openLibc(SYMBOLS);
  return libc;
}

/** Whether batched UDP can bind `host` here: Linux, FFI granted, glibc, an IP literal. */
export function mmsgUsable(host: string): boolean {
  return (ipv4Bytes(host) !== null || ipv6Bytes(host) !== null) && load() !== null;
}

function errno(c: Libc): number {
  const p = c.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

const address = (b: Uint8Array, at = 0) =>
  BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b))) + BigInt(at);

/** BATCH message headers, each pointing at its own address and one data slot. */
class Batch {
  readonly hdr = new Uint8Array(BATCH * MMSGHDR);
  readonly hv = new DataView(this.hdr.buffer);
  readonly names = new Uint8Array(BATCH * NAME);
  readonly nv = new DataView(this.names.buffer);
  readonly iov = new Uint8Array(BATCH * IOVEC);
  readonly iv = new DataView(this.iov.buffer);
  readonly data: Uint8Array;
  constructor(readonly slot: number) {
    this.data = new Uint8Array(BATCH * slot);
    for (let i = 0; i < BATCH; i++) {
      this.iv.setBigUint64(i * IOVEC, address(this.data, i * slot), true);
      this.iv.setBigUint64(i * IOVEC + 8, BigInt(slot), true);
      const h = i * MMSGHDR;
      this.hv.setBigUint64(h + MSG_NAME, address(this.names, i * NAME), true);
      this.hv.setUint32(h + MSG_NAMELEN, NAME, true);
      this.hv.setBigUint64(h + MSG_IOV, address(this.iov, i * IOVEC), true);
      this.hv.setBigUint64(h + MSG_IOVLEN, 1n, true);
    }
  }
}

/** Dotted strings for the IPv4 addresses seen lately, so a datagram builds no string. */
class HostNames {
  private names = new Map<number, string>();
  get(ip: number): string {
    let s = this.names.get(ip);
    if (s === undefined) {
      // A bound on memory whatever the sources: forget them all and start again.
      if (this.names.size >= 65536) this.names.clear();
      s = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
      this.names.set(ip, s);
    }
    return s;
  }
}

/**
 * IPv6 destinations as the 16 bytes of a sockaddr_in6, IPv4 ones v4-mapped (for an IPv6
 * socket); null: neither.
 */
class Host6Bytes {
  private bytes = new Map<string, Uint8Array | null>();
  get(host: string): Uint8Array | null {
    let b = this.bytes.get(host);
    if (b === undefined) {
      if (this.bytes.size >= 65536) this.bytes.clear();
      const v4 = ipv4Bytes(host);
      b = v4 ? new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4]) : ipv6Bytes(host);
      this.bytes.set(host, b);
    }
    return b;
  }
}

/** The other way: IPv4 literals to 32-bit numbers (NaN: not an IPv4 literal). */
class HostNumbers {
  private nums = new Map<string, number>();
  get(host: string): number {
    let n = this.nums.get(host);
    if (n === undefined) {
      if (this.nums.size >= 65536) this.nums.clear();
      const b = ipv4Bytes(host);
      n = b ? ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 : NaN;
      this.nums.set(host, n);
    }
    return n;
  }
}

export interface MmsgUdp {
  readonly local: Addr;
  readonly batched: true;
  /** Copies `bytes` into the outgoing batch (the caller may reuse them at once). */
  send(bytes: Uint8Array, to: Addr): void;
  /** Sends the batch now rather than at the end of the task. */
  flush(): void;
  close(): void;
  readonly sendErrors: number;
  /** Datagrams the kernel would not take (socket buffer full): dropped, never waited for. */
  readonly sendDropped: number;
  /** Datagrams queued and not yet handed to the kernel (at most `maxQueued`). */
  readonly inFlight: number;
  /** Datagrams received larger than a slot: dropped (none with the default slot). */
  readonly truncated: number;
  /**
   * With `manual`: hands whatever datagrams are queued now (up to BATCH) to `onPacket`, without
   * waiting; returns how many there were.
   */
  receiveNow(): number;
  readonly done: Promise<void>;
}

export interface MmsgOptions {
  /** Datagrams queued before a send is forced (1 to BATCH); default BATCH. */
  maxQueued?: number;
  /**
   * No receiving thread: datagrams wait in the socket until `receiveNow` takes them. For a load
   * generator's busy loop (a thread round trip per wake-up costs more than a datagram).
   */
  manual?: boolean;
}

/**
 * Binds `host:port` (an IPv4 or IPv6 literal; "::" is dual stack) and calls `onPacket` for
 * every datagram, a whole batch in one task.
 * `onPacket` gets a view into a receive slot, valid until it returns: copy what you keep.
 * @throws Error if batched UDP is not usable here (see mmsgUsable) or the bind fails.
 */
export function openMmsgUdp(
  host: string,
  port: number,
  onPacket: (bytes: Uint8Array, from: Addr) => void,
  opts: MmsgOptions = {},
): MmsgUdp {
  const c = load();
  let ip4 = ipv4Bytes(host);
  const ip6 = ip4 ? null : ipv6Bytes(host);
  if (!c || !(ip4 || ip6)) throw new Error(`Cannot use batched UDP on ${host}: not available here`);
  let fd = c.socket(ip4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 && !ip4 && host === "::" && errno(c) === EAFNOSUPPORT) {
    // A kernel without IPv6 sockets: the dual-stack host is IPv4's any address there (as
    // lib/net/udp.ts does for the runtime's sockets).
    host = "0.0.0.0";
    ip4 = new Uint8Array(4);
    fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) throw new Error(`Cannot open a UDP socket: errno ${errno(c)}`);
  const ip = (ip4 ?? ip6)!;
  const v6 = ip4 === null;
  const family = v6 ? AF_INET6 : AF_INET;
  const nameLen = v6 ? SOCKADDR_IN6 : SOCKADDR_IN;
  const maxQueued = Math.max(1, Math.min(BATCH, opts.maxQueued ?? BATCH));
  const sa = new Uint8Array(nameLen);
  const sv = new DataView(sa.buffer);
  sv.setUint16(0, family, true);
  sv.setUint16(2, port, false);
  sa.set(ip, v6 ? 8 : 4);
  if (v6) {
    // Dual stack on "::" whatever the system default (net.ipv6.bindv6only).
    const off = new Uint8Array(4);
    c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, off, 4);
  }
  if (c.bind(fd, sa, nameLen) !== 0) {
    const e = errno(c);
    c.close(fd);
    throw new Error(
      `Cannot bind ${host}:${port}: errno ${e}${e === 98 ? " (address in use)" : ""}`,
    );
  }
  const size = new Uint8Array(4);
  new DataView(size.buffer).setInt32(0, RECEIVE_BUFFER_BYTES, true);
  if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) !== 0) {
    c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4); // capped, but more than the default
  }
  new DataView(size.buffer).setInt32(0, SEND_BUFFER_BYTES, true);
  if (c.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, size, 4) !== 0) {
    c.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, size, 4); // capped at net.core.wmem_max
  }
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, nameLen, true);
  c.getsockname(fd, sa, len);
  const local: Addr = { host, port: sv.getUint16(2, false) };

  const rx = new Batch(SLOT);
  const tx = new Batch(2048);
  const txBig = new Map<number, Uint8Array>(); // slot -> a larger datagram's own buffer
  const hostNames = new HostNames();
  const hostNums = new HostNumbers();
  const host6 = new Host6Bytes();
  let closed = false;
  let queued = 0;
  let flushPending = false;
  let sendErrors = 0, sendDropped = 0, truncated = 0;

  const flush = () => {
    flushPending = false;
    let at = 0;
    while (at < queued && !closed) {
      const n = c.sendmmsg(fd, tx.hdr.subarray(at * MMSGHDR), queued - at, MSG_DONTWAIT);
      if (n > 0) {
        at += n;
        continue;
      }
      const e = errno(c);
      if (e === EINTR) continue;
      if (e === EAGAIN) {
        sendDropped += queued - at; // egress is full: drop the rest, as a lossy link would
        break;
      }
      sendErrors++; // this one failed (no route, port 0, ...): skip it, send the rest
      at++;
    }
    for (const [i] of txBig) resetSlot(i);
    txBig.clear();
    queued = 0;
  };
  function resetSlot(i: number) {
    tx.iv.setBigUint64(i * IOVEC, address(tx.data, i * tx.slot), true);
  }

  const send = (bytes: Uint8Array, to: Addr) => {
    if (closed) return;
    const n = v6 ? 0 : hostNums.get(to.host);
    const b6 = v6 ? host6.get(to.host) : null;
    if (
      (v6 ? b6 === null : Number.isNaN(n)) || !(to.port > 0 && to.port < 65536) ||
      bytes.length > MAX_DATAGRAM
    ) {
      sendErrors++;
      return;
    }
    const i = queued++;
    const name = i * NAME;
    tx.nv.setUint16(name, family, true);
    tx.nv.setUint16(name + 2, to.port, false);
    if (v6) {
      tx.nv.setUint32(name + 4, 0); // flow info
      tx.names.set(b6!, name + 8);
      tx.nv.setUint32(name + 24, 0); // scope id
    } else tx.nv.setUint32(name + 4, n, false);
    tx.hv.setUint32(i * MMSGHDR + MSG_NAMELEN, nameLen, true);
    if (bytes.length <= tx.slot) {
      tx.data.set(bytes, i * tx.slot);
    } else {
      const own = bytes.slice(); // rare (over 2 KiB): its own copy, pointed at until sent
      txBig.set(i, own);
      tx.iv.setBigUint64(i * IOVEC, address(own), true);
    }
    tx.iv.setBigUint64(i * IOVEC + 8, BigInt(bytes.length), true);
    if (queued >= maxQueued) flush();
    else if (!flushPending) {
      flushPending = true;
      queueMicrotask(flush);
    }
  };

  const resetNames = () => {
    for (let i = 0; i < BATCH; i++) rx.hv.setUint32(i * MMSGHDR + MSG_NAMELEN, nameLen, true);
  };
  /** The sender's address in rx's slot at `name`: plain IPv4 for an IPv4 or v4-mapped one. */
  const senderHost = (name: number): string => {
    if (rx.nv.getUint16(name, true) !== AF_INET6) {
      return hostNames.get(rx.nv.getUint32(name + 4, false));
    }
    const mapped = rx.nv.getUint32(name + 8) === 0 && rx.nv.getUint32(name + 12) === 0 &&
      rx.nv.getUint32(name + 16) === 0xffff;
    return mapped
      ? hostNames.get(rx.nv.getUint32(name + 20, false))
      : ipFromBytes(rx.names.subarray(name + 8, name + 24));
  };
  /** Hands the `got` datagrams in `rx` to onPacket. */
  const dispatch = (got: number) => {
    for (let i = 0; i < got; i++) {
      const h = i * MMSGHDR;
      if (rx.hv.getInt32(h + MSG_FLAGS, true) & MSG_TRUNC) {
        truncated++;
        continue;
      }
      const n = rx.hv.getUint32(h + MSG_LEN, true);
      const name = i * NAME;
      const from: Addr = { host: senderHost(name), port: rx.nv.getUint16(name + 2, false) };
      try {
        onPacket(rx.data.subarray(i * SLOT, i * SLOT + n), from);
      } catch (e) {
        console.error(
          `internal error handling a datagram: ${e instanceof Error ? e.message : e}`,
        );
      }
      if (closed) break;
    }
  };
  const loop = async () => {
    let failures = 0;
    while (!closed) {
      resetNames();
      const got = await c.recvmmsg(fd, rx.hdr, BATCH, MSG_WAITFORONE, null);
      if (closed) break;
      if (got < 0) {
        // errno is the receiving thread's, out of reach here. EINTR, a queued ICMP error and
        // friends pass; should one persist, wait a little between tries rather than spin.
        if (++failures > 8) await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      failures = 0;
      dispatch(got);
      // While datagrams keep coming, take them here, without a round trip through the thread
      // (which costs more than a batch): a few batches, then back to the event loop for timers.
      for (let more = 0; more < SYNC_BATCHES && !closed; more++) {
        if (queued > 0) flush(); // answers leave before we read on
        resetNames();
        const n = c.recvmmsgNow(fd, rx.hdr, BATCH, MSG_DONTWAIT, null);
        if (n <= 0) break;
        dispatch(n);
      }
    }
    c.close(fd); // only now: the receiving thread is done with the descriptor
  };
  let closeManual = () => {};
  const done = opts.manual ? new Promise<void>((r) => closeManual = r) : loop();
  const receiveNow = () => {
    if (!opts.manual || closed) return 0;
    resetNames();
    const got = c.recvmmsgNow(fd, rx.hdr, BATCH, MSG_DONTWAIT, null);
    if (got <= 0) return 0;
    dispatch(got);
    return got;
  };

  return {
    local,
    batched: true,
    send,
    flush,
    done,
    get sendErrors() {
      return sendErrors;
    },
    get sendDropped() {
      return sendDropped;
    },
    get inFlight() {
      return queued;
    },
    get truncated() {
      return truncated;
    },
    receiveNow,
    close() {
      if (closed) return;
      if (queued > 0) flush();
      closed = true;
      if (opts.manual) {
        c.close(fd);
        closeManual();
        return;
      }
      // Wakes the receive blocked on its thread (it returns at once); the loop then closes.
      c.shutdown(fd, SHUT_RDWR);
    },
  };
}
