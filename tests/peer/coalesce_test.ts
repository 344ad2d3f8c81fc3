/**
 * Unit tests of `coalesce` and `unmerge` (lib/peer/delivery.ts): how a sender merges runs of
 * consecutive fragments into one DATA for a path probed to carry them, and how the receiver
 * cuts such a DATA back into fragments.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  coalesce,
  DEFAULT_DELIVERY_CONFIG,
  FRAG_SIZE,
  type Fragment,
  MAX_MESSAGE,
  MAX_MESSAGE_FRAGS,
  Sender,
  type TxEvent,
  unmerge,
} from "../../lib/peer/delivery.ts";

const bytes = (n: number, seed = 1) =>
  Uint8Array.from({ length: n }, (_, i) => (i * seed + (i >> 8)) & 0xff);

/** A fragment made by hand: fragment `frag` of message `seq` (msgNo seq + 100, floor 0). */
function frag(seq: number, f: number, frags: number, chunk: Uint8Array): Fragment {
  return { seq, floor: 0, msgNo: seq + 100, frag: f, frags, direct: false, chunk };
}

/**
 * Every fragment a Sender sends for `msgs`, in order, once each: a lossless peer acknowledges
 * each tick's DATA before the next tick. Also the ticks' batches, as the agent coalesces them.
 */
function fromSender(
  msgs: Uint8Array[],
  initialWindow = DEFAULT_DELIVERY_CONFIG.initialWindow,
): { all: Fragment[]; ticks: Fragment[][] } {
  const tx = new Sender({ ...DEFAULT_DELIVERY_CONFIG, initialWindow, maxWindow: 4096 });
  const ev: TxEvent[] = [];
  msgs.forEach((m, i) => tx.send(i + 1, m, i % 2 === 0, 0));
  const all: Fragment[] = [], ticks: Fragment[][] = [];
  for (let now = 0; tx.pending > 0; now += 10) {
    assert.ok(now < 100_000, "sender did not finish");
    const due = tx.tick(now, ev);
    ticks.push(due);
    all.push(...due);
    for (const f of due) tx.onAck(f.seq, f.frag, ev, now + 5);
  }
  assert.equal(ev.filter((e) => e.type === "delivered").length, msgs.length);
  return { all, ticks };
}

/** The fields of a fragment other than its chunk, for comparing shapes. */
function head(f: Fragment) {
  const { chunk, ...rest } = f;
  return { ...rest, len: chunk.length };
}

// ---- coalesce ----

Deno.test("coalesce: maxFrags 1 (or less) returns the fragments unchanged", () => {
  const { all } = fromSender([bytes(5000), bytes(MAX_MESSAGE, 3)]);
  assert.equal(all.length, 5 + 16);
  for (const max of [1, 0, -1]) {
    const out = coalesce(all, max);
    assert.equal(out.length, all.length, `maxFrags ${max}`);
    out.forEach((f, i) => assert.equal(f, all[i], `maxFrags ${max}: fragment ${i} is the same`));
  }
  // Nothing to merge in fewer than two.
  const one = [all[0]!];
  assert.deepEqual(coalesce(one, 16), one);
  assert.equal(coalesce(one, 16)[0], all[0]);
  assert.deepEqual(coalesce([], 16), []);
});

Deno.test("coalesce: a 16 KiB message from a Sender merges into runs of up to maxFrags", () => {
  const msg = bytes(MAX_MESSAGE, 5);
  const { all } = fromSender([msg]);
  assert.equal(all.length, MAX_MESSAGE_FRAGS);
  const cases: [number, number[]][] = [
    [2, [0, 2, 4, 6, 8, 10, 12, 14]],
    [4, [0, 4, 8, 12]],
    [5, [0, 5, 10, 15]],
    [15, [0, 15]],
    [16, [0]],
    [17, [0]],
  ];
  for (const [max, starts] of cases) {
    const out = coalesce(all, max);
    assert.deepEqual(out.map((f) => f.frag), starts, `maxFrags ${max}`);
    out.forEach((f, i) => {
      const end = Math.min(16, starts[i + 1] ?? 16);
      assert.deepEqual(head(f), {
        seq: 0,
        floor: 0,
        msgNo: 1,
        frag: starts[i]!,
        frags: 16,
        direct: true,
        len: (end - starts[i]!) * FRAG_SIZE,
      }, `maxFrags ${max}, DATA ${i}`);
      assert.deepEqual(f.chunk, msg.subarray(starts[i]! * FRAG_SIZE, end * FRAG_SIZE));
    });
  }
});

Deno.test("coalesce: the short last fragment ends its message's run", () => {
  // 3000 bytes: 1024 + 1024 + 952, then a second message of 2500: 1024 + 1024 + 452.
  const a = bytes(3000, 7), b = bytes(2500, 11);
  const { all } = fromSender([a, b]);
  assert.deepEqual(all.map((f) => [f.seq, f.frag, f.chunk.length]), [
    [0, 0, 1024],
    [0, 1, 1024],
    [0, 2, 952],
    [1, 0, 1024],
    [1, 1, 1024],
    [1, 2, 452],
  ]);
  const out = coalesce(all, 16);
  assert.deepEqual(out.map(head), [
    { seq: 0, floor: 0, msgNo: 1, frag: 0, frags: 3, direct: true, len: 3000 },
    { seq: 1, floor: 0, msgNo: 2, frag: 0, frags: 3, direct: false, len: 2500 },
  ]);
  assert.deepEqual(out[0]!.chunk, a);
  assert.deepEqual(out[1]!.chunk, b);
  // maxFrags 2: the full pair, then the short one alone, for each message.
  assert.deepEqual(coalesce(all, 2).map((f) => [f.seq, f.frag, f.chunk.length]), [
    [0, 0, 2048],
    [0, 2, 952],
    [1, 0, 2048],
    [1, 2, 452],
  ]);
});

Deno.test("coalesce: a short chunk may end a run but never continues one", () => {
  const full = () => bytes(FRAG_SIZE, 3).slice();
  const f0 = frag(4, 0, 4, full()), f1 = frag(4, 1, 4, bytes(500, 5).slice());
  const f2 = frag(4, 2, 4, full()), f3 = frag(4, 3, 4, full());
  const out = coalesce([f0, f1, f2, f3], 16);
  assert.deepEqual(out.map(head), [
    { ...head(f0), len: 1524 },
    { ...head(f2), len: 2048 },
  ]);
  // Short first: nothing joins it.
  const s0 = frag(5, 0, 2, bytes(10).slice()), s1 = frag(5, 1, 2, full());
  const both = coalesce([s0, s1], 16);
  assert.equal(both.length, 2);
  assert.equal(both[0], s0);
  assert.equal(both[1], s1);
  // An empty message (one empty chunk) stays as it is, and ends nothing before it wrongly.
  const e = frag(6, 0, 1, new Uint8Array(0));
  const x = coalesce([e, frag(7, 0, 1, bytes(3).slice())], 16);
  assert.equal(x[0], e);
  assert.equal(x.length, 2);
});

Deno.test("coalesce: another seq, msgNo or floor, or a gap, breaks a run", () => {
  const c0 = bytes(FRAG_SIZE, 3).slice(), c1 = bytes(FRAG_SIZE, 9).slice();
  const a = frag(2, 3, 8, c0);
  const cases: [string, Fragment][] = [
    ["another seq", { ...frag(2, 4, 8, c1), seq: 3 }],
    ["another msgNo", { ...frag(2, 4, 8, c1), msgNo: 999 }],
    ["another floor", { ...frag(2, 4, 8, c1), floor: 1 }],
    ["a gap", frag(2, 5, 8, c1)],
    ["the same fragment again", frag(2, 3, 8, c1)],
    ["an earlier fragment", frag(2, 2, 8, c1)],
  ];
  for (const [what, b] of cases) {
    const out = coalesce([a, b], 16);
    assert.equal(out.length, 2, what);
    assert.equal(out[0], a, what);
    assert.equal(out[1], b, what);
  }
  // And the control: fragment 4 of the same message joins.
  const ok = coalesce([a, frag(2, 4, 8, c1)], 16);
  assert.deepEqual(ok.map(head), [{ ...head(a), len: 2048 }]);
  assert.deepEqual(ok[0]!.chunk.subarray(0, FRAG_SIZE), c0);
  assert.deepEqual(ok[0]!.chunk.subarray(FRAG_SIZE), c1);
});

Deno.test("coalesce: a message sent over two ticks with the floor moved between stays apart", () => {
  // The first tick's window ends inside the 16 KiB message; the second tick's DATA carry the
  // floor past the messages acknowledged meanwhile, so its fragments do not join the first's.
  const { ticks, all } = fromSender([bytes(5000), bytes(MAX_MESSAGE)]);
  assert.deepEqual(ticks.filter((t) => t.length > 0).map((t) => t.length), [16, 5]);
  assert.deepEqual(all.map((f) => f.floor), [...Array(16).fill(0), ...Array(5).fill(1)]);
  assert.deepEqual(coalesce(all, 16).map((f) => [f.seq, f.frag, f.floor, f.chunk.length]), [
    [0, 0, 0, 5000],
    [1, 0, 0, 11 * FRAG_SIZE],
    [1, 11, 1, 5 * FRAG_SIZE],
  ]);
});

Deno.test("coalesce: order is kept where runs interleave", () => {
  const c = () => bytes(FRAG_SIZE).slice();
  const frags = [
    frag(1, 0, 3, c()),
    frag(2, 0, 3, c()),
    frag(1, 1, 3, c()),
    frag(2, 1, 3, c()),
    frag(2, 2, 3, bytes(9).slice()),
    frag(1, 2, 3, bytes(8).slice()),
  ];
  const out = coalesce(frags, 16);
  assert.deepEqual(out.map((f) => [f.seq, f.frag, f.chunk.length]), [
    [1, 0, 1024],
    [2, 0, 1024],
    [1, 1, 1024],
    [2, 1, 1033],
    [1, 2, 8],
  ]);
  // A resent fragment ahead of new ones, as a Sender's tick puts them.
  const resend = frag(0, 7, 16, c());
  const fresh = [frag(3, 0, 2, c()), frag(3, 1, 2, bytes(1).slice())];
  const out2 = coalesce([resend, ...fresh], 16);
  assert.deepEqual(out2.map((f) => [f.seq, f.frag, f.chunk.length]), [[0, 7, 1024], [3, 0, 1025]]);
  assert.equal(out2[0], resend);
});

Deno.test("coalesce: adjacent chunks (as split makes them) merge into a view, not a copy", () => {
  const msg = bytes(10_000, 13);
  const { all } = fromSender([msg]);
  assert.equal(all.length, 10);
  const out = coalesce(all, 4);
  assert.deepEqual(out.map((f) => [f.frag, f.chunk.length]), [[0, 4096], [4, 4096], [8, 1808]]);
  out.forEach((f, i) => {
    assert.equal(f.chunk.buffer, msg.buffer, `DATA ${i} shares the message's buffer`);
    assert.equal(f.chunk.byteOffset, msg.byteOffset + i * 4 * FRAG_SIZE, `DATA ${i} offset`);
  });
  // A view: what the message's bytes say, it says.
  msg[4096] = msg[4096]! ^ 0xff;
  assert.equal(out[1]!.chunk[0], msg[4096]);
  // Also a message at an offset into a larger buffer.
  const big = new Uint8Array(5000);
  const inner = big.subarray(300, 300 + 3000);
  inner.set(bytes(3000, 17));
  const [m] = coalesce(fromSender([inner]).all, 16);
  assert.equal(m!.chunk.buffer, big.buffer);
  assert.equal(m!.chunk.byteOffset, 300);
  assert.equal(m!.chunk.length, 3000);
  assert.deepEqual(m!.chunk, bytes(3000, 17));
});

Deno.test("coalesce: chunks apart in memory merge into a correct copy", () => {
  const c0 = bytes(FRAG_SIZE, 3).slice(), c1 = bytes(FRAG_SIZE, 5).slice();
  const c2 = bytes(700, 7).slice();
  const want = new Uint8Array([...c0, ...c1, ...c2]);
  // Separate buffers.
  const [sep] = coalesce([frag(1, 0, 3, c0), frag(1, 1, 3, c1), frag(1, 2, 3, c2)], 16);
  assert.deepEqual(sep!.chunk, want);
  assert.notEqual(sep!.chunk.buffer, c0.buffer);
  // One buffer, out of order (so not adjacent in the order they are merged in).
  const buf = new Uint8Array(3 * FRAG_SIZE);
  buf.set(c1, 0);
  buf.set(c0, FRAG_SIZE);
  buf.set(c2, 2 * FRAG_SIZE);
  const [swapped] = coalesce([
    frag(1, 0, 3, buf.subarray(FRAG_SIZE, 2 * FRAG_SIZE)),
    frag(1, 1, 3, buf.subarray(0, FRAG_SIZE)),
    frag(1, 2, 3, buf.subarray(2 * FRAG_SIZE, 2 * FRAG_SIZE + 700)),
  ], 16);
  assert.deepEqual(swapped!.chunk, want);
  assert.notEqual(swapped!.chunk.buffer, buf.buffer);
  // One buffer, in order but with a hole between two chunks.
  const holed = new Uint8Array(2 * FRAG_SIZE + 1);
  holed.set(c0, 0);
  holed.set(c1, FRAG_SIZE + 1);
  const [h] = coalesce([
    frag(1, 0, 3, holed.subarray(0, FRAG_SIZE)),
    frag(1, 1, 3, holed.subarray(FRAG_SIZE + 1)),
  ], 16);
  assert.deepEqual(h!.chunk, new Uint8Array([...c0, ...c1]));
  assert.notEqual(h!.chunk.buffer, holed.buffer);
  // A copy: later writes to the sources do not show.
  c0[0] = c0[0]! ^ 0xff;
  holed[0] = holed[0]! ^ 0xff;
  assert.deepEqual(sep!.chunk, want);
  assert.equal(h!.chunk[0], want[0]);
});

Deno.test("coalesce: the inputs are left as they were", () => {
  const { all } = fromSender([bytes(6000, 3)]);
  const before = all.map((f) => ({ ...f, chunk: f.chunk.slice() }));
  const copy = [...all];
  coalesce(all, 16);
  assert.deepEqual(all, before);
  copy.forEach((f, i) => assert.equal(all[i], f));
});

// ---- unmerge ----

Deno.test("unmerge: a chunk of at most FRAG_SIZE is the fragment itself", () => {
  for (const n of [0, 1, 500, FRAG_SIZE]) {
    const f = frag(1, 2, 3, bytes(n).slice());
    const out = unmerge(f);
    assert.ok(out !== null);
    assert.equal(out.length, 1, `${n} bytes`);
    assert.equal(out[0], f, `${n} bytes: the same object`);
  }
});

Deno.test("unmerge: a bigger chunk is cut into views of FRAG_SIZE, the last one shorter", () => {
  const cases: [number, number, number, number[]][] = [
    // chunk length, frag, frags, lengths wanted
    [FRAG_SIZE + 1, 0, 2, [1024, 1]],
    [2 * FRAG_SIZE, 3, 5, [1024, 1024]],
    [3 * FRAG_SIZE + 1, 12, 16, [1024, 1024, 1024, 1]],
    [3 * FRAG_SIZE, 13, 16, [1024, 1024, 1024]],
    [MAX_MESSAGE, 0, 16, Array(16).fill(1024)],
    [MAX_MESSAGE - 1, 0, 16, [...Array(15).fill(1024), 1023]],
    [2 * FRAG_SIZE, 0, 32, [1024, 1024]],
  ];
  for (const [len, at, frags, lens] of cases) {
    const chunk = bytes(len, 19);
    const f: Fragment = { seq: 8, floor: 2, msgNo: 77, frag: at, frags, direct: true, chunk };
    const out = unmerge(f);
    const what = `${len} bytes at ${at} of ${frags}`;
    assert.ok(out !== null, what);
    assert.deepEqual(out.map((g) => [g.frag, g.chunk.length]), lens.map((l, k) => [at + k, l]));
    out.forEach((g, k) => {
      assert.deepEqual(
        { ...g, chunk: null },
        { seq: 8, floor: 2, msgNo: 77, frag: at + k, frags, direct: true, chunk: null },
        what,
      );
      assert.equal(g.chunk.buffer, chunk.buffer, `${what}: a view`);
      assert.equal(g.chunk.byteOffset, chunk.byteOffset + k * FRAG_SIZE, `${what}: offset`);
    });
  }
});

Deno.test("unmerge: refuses a chunk past the message's last fragment, or over 16 fragments", () => {
  const cases: [string, number, number, number][] = [
    ["three fragments from 14 of 16", 3 * FRAG_SIZE, 14, 16],
    ["four (the last short) from 13 of 16", 3 * FRAG_SIZE + 1, 13, 16],
    ["two in a one-fragment message", FRAG_SIZE + 1, 0, 1],
    ["two from the last", 2 * FRAG_SIZE, 4, 5],
    ["17 fragments", 17 * FRAG_SIZE, 0, 32],
    ["17 fragments, the last of one byte", MAX_MESSAGE + 1, 0, 32],
    ["32 fragments", 32 * FRAG_SIZE, 0, 32],
  ];
  for (const [what, len, at, frags] of cases) {
    assert.equal(unmerge(frag(1, at, frags, new Uint8Array(len))), null, what);
  }
  // Right up to the end is fine.
  assert.equal(unmerge(frag(1, 14, 16, new Uint8Array(2 * FRAG_SIZE)))?.length, 2);
});

// ---- both ----

Deno.test("coalesce: unmerge undoes it, field by field, for any messages and maxFrags", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: MAX_MESSAGE }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 16 }),
      fc.array(fc.boolean(), { maxLength: 100 }),
      (sizes, maxFrags, drop) => {
        const msgs = sizes.map((n, i) => bytes(n, i + 3));
        const { all, ticks } = fromSender(msgs);
        // The ticks' batches as the agent sends them, and the whole stream with some dropped
        // (gaps, and runs of other messages next to each other).
        const sparse = all.filter((_, i) => !drop[i]);
        for (const input of [...ticks, all, sparse]) {
          const merged = coalesce(input, maxFrags);
          assert.ok(merged.length <= input.length);
          for (const m of merged) {
            assert.ok(m.chunk.length <= maxFrags * FRAG_SIZE, `${m.chunk.length} > ${maxFrags}`);
          }
          const back = merged.map((m) => {
            const parts = unmerge(m);
            assert.ok(parts !== null, `unmerge refused ${JSON.stringify(head(m))}`);
            return parts;
          }).flat();
          assert.equal(back.length, input.length);
          back.forEach((f, i) => {
            const x = input[i]!;
            assert.deepEqual(head(f), head(x), `fragment ${i}`);
            assert.deepEqual(f.chunk, x.chunk, `fragment ${i}'s bytes`);
          });
          assert.deepEqual(back, input);
        }
        // Each message's bytes are intact.
        msgs.forEach((m, seq) => {
          const got = all.filter((f) => f.seq === seq).sort((a, b) => a.frag - b.frag);
          assert.deepEqual(new Uint8Array(got.flatMap((f) => [...f.chunk])), m);
        });
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("coalesce: a Sender's tick makes as few DATA as maxFrags allows", () => {
  // A window that sends all in one tick: ceil(fragments / maxFrags) DATA per message.
  const sizes = [0, 1, 1024, 1025, 5000, MAX_MESSAGE];
  const msgs = sizes.map((n) => bytes(n));
  const { ticks } = fromSender(msgs, 64);
  assert.equal(ticks[0]!.length, 26);
  const all = ticks[0]!;
  for (const max of [1, 2, 3, 8, 16]) {
    const want = sizes.reduce((n, s) => n + Math.ceil(Math.max(1, Math.ceil(s / 1024)) / max), 0);
    assert.equal(coalesce(all, max).length, want, `maxFrags ${max}`);
  }
});
