import assert from "node:assert/strict";
import fc from "fast-check";
import { Fifo } from "../../lib/util/fifo.ts";

Deno.test("fifo: behaves like an array used as a queue, across compactions", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.nat(), fc.constant(-1), fc.constant(-2)), { maxLength: 5000 }),
      (ops) => {
        const q = new Fifo<number>();
        const model: number[] = [];
        for (const op of ops) {
          if (op === -1) assert.equal(q.shift(), model.shift());
          else if (op === -2) {
            q.clear();
            model.length = 0;
          } else {
            q.push(op);
            model.push(op);
          }
          assert.equal(q.length, model.length);
          assert.equal(q.peek(), model[0]);
          assert.equal(q.at(model.length - 1), model.at(-1));
        }
        assert.deepEqual([...q], model);
        assert.equal(q.at(-1), undefined);
      },
    ),
    { numRuns: 50 },
  );
});

Deno.test("fifo: many shifts compact without losing order", () => {
  const q = new Fifo<number>();
  for (let i = 0; i < 10_000; i++) q.push(i);
  for (let i = 0; i < 9_000; i++) assert.equal(q.shift(), i);
  assert.equal(q.length, 1000);
  assert.equal(q.at(0), 9000);
  assert.deepEqual([...q].slice(0, 3), [9000, 9001, 9002]);
  assert.equal(q.shift(), 9000);
});
