/**
 * Sliding anti-replay window for 64-bit message counters, after RFC 6479 and WireGuard: a ring
 * of 32-bit blocks, so moving the window forward clears whole blocks instead of shifting bits.
 * Pure: no I/O, no clock.
 * @module
 */

/** Largest counter a window accepts (2^64 - 1 is reserved as a Noise nonce). */
export const MAX_COUNTER = 0xffff_ffff_ffff_fffen;

const BLOCK_BITS = 32;

/**
 * Tracks which counters have been seen. Usage per datagram: `check(n)` before decrypting (cheap
 * early drop), then `accept(n)` only after authentication succeeds, so forged packets can
 * neither mark counters as used nor slide the window.
 * @example
 * const win = new ReplayWindow();
 * if (!win.check(n)) return; // duplicate or too old
 * const pt = receive.decryptWithAd(ad, ct); // after receive.setNonce(n)
 * if (pt.ok) win.accept(n);
 */
export class ReplayWindow {
  /** How far behind the highest accepted counter a counter may still be accepted. */
  readonly windowSize: bigint;
  readonly #blocks: Uint32Array;
  readonly #mask: bigint;
  // One past the highest accepted counter; 0 means none yet, so counter 0 is usable.
  #top = 0n;

  /**
   * @param bits bitmap size, a power of two ≥ 64; one block is kept spare as in RFC 6479, so
   *   the effective window is `bits - 32` counters.
   */
  constructor(bits = 2048) {
    if (!Number.isInteger(bits) || bits < 64 || (bits & (bits - 1)) !== 0) {
      throw new Error(`Cannot create replay window: ${bits} bits is not a power of two >= 64`);
    }
    this.#blocks = new Uint32Array(bits / BLOCK_BITS);
    this.#mask = BigInt(bits / BLOCK_BITS - 1);
    this.windowSize = BigInt(bits - BLOCK_BITS);
  }

  /** The highest accepted counter, or -1 before any. */
  get highest(): bigint {
    return this.#top - 1n;
  }

  /** Whether `counter` would be accepted now; changes nothing. */
  check(counter: bigint): boolean {
    if (counter < 0n || counter > MAX_COUNTER) return false;
    if (counter >= this.#top) return true;
    if (counter + this.windowSize + 1n < this.#top) return false;
    const [block, bit] = this.#locate(counter);
    return (this.#blocks[block]! & bit) === 0;
  }

  /** Record `counter` as seen; returns false (and changes nothing) if it is a replay or too old. */
  accept(counter: bigint): boolean {
    if (!this.check(counter)) return false;
    if (counter >= this.#top) {
      // Clear the blocks the window slides over; a jump past the whole ring clears them all.
      const from = (this.#top - 1n) >> 5n;
      const to = counter >> 5n;
      const steps = to - from > BigInt(this.#blocks.length)
        ? BigInt(this.#blocks.length)
        : to - from;
      for (let i = 1n; i <= steps; i++) this.#blocks[Number((from + i) & this.#mask)] = 0;
      this.#top = counter + 1n;
    }
    const [block, bit] = this.#locate(counter);
    this.#blocks[block]! |= bit;
    return true;
  }

  #locate(counter: bigint): [number, number] {
    return [Number((counter >> 5n) & this.#mask), (1 << Number(counter & 31n)) >>> 0];
  }
}
