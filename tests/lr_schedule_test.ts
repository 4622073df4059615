import assert from "node:assert/strict";
import { cosineDecay, scheduleFn, scheduleSpec } from "../lib/train/lr_schedule.ts";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

Deno.test("cosineDecay: Keras's CosineDecay at hand-computed steps", () => {
  const lr = cosineDecay(1e-3, 100);
  close(lr(0), 1e-3); // the first step uses the initial rate
  close(lr(25), 1e-3 * 0.5 * (1 + Math.SQRT1_2)); // cos(π/4) = √½: 0.853553…e-3
  close(lr(50), 5e-4);
  close(lr(75), 1e-3 * 0.5 * (1 - Math.SQRT1_2)); // 0.146447…e-3
  close(lr(100), 0);
  close(lr(150), 0); // past decay_steps the rate stays at alpha × initial
  const floor = cosineDecay(1e-3, 100, 0.1);
  close(floor(0), 1e-3);
  close(floor(50), 1e-3 * (0.9 * 0.5 + 0.1));
  close(floor(200), 1e-4);
  assert.throws(() => cosineDecay(1e-3, 0), /decaySteps > 0/);
});

Deno.test("scheduleSpec: none for a constant rate; a cosine one spans the whole run", () => {
  assert.equal(scheduleSpec(undefined, 10, 600), undefined);
  assert.equal(scheduleSpec("constant", 10, 600), undefined);
  const spec = scheduleSpec("cosine", 10, 600)!;
  assert.deepEqual(spec, { name: "cosine_decay", decaySteps: 6000, alpha: 0 });
  const lr = scheduleFn(1e-3, spec);
  close(lr(0), 1e-3);
  close(lr(3000), 5e-4);
  close(lr(5999), 1e-3 * 0.5 * (1 + Math.cos(Math.PI * 5999 / 6000)));
});
