/**
 * Learning-rate schedules as Keras defines them (keras.optimizers.schedules), as functions of
 * the optimizer's step: the number of updates applied before this one, so the first step uses
 * the initial rate. `fit` sets the optimizer's rate from one before every step; the step comes
 * from the epoch and batch, so a resumed run continues the same curve.
 */

/** The schedules a run can name: "constant" (Keras's default) or "cosine" (`CosineDecay`). */
export type LrScheduleName = "constant" | "cosine";

export const LR_SCHEDULES: readonly LrScheduleName[] = ["constant", "cosine"];

/** How a scheduled run's optimizer changes its rate, as it goes into the run key. */
export interface LrScheduleSpec {
  name: "cosine_decay";
  /** Steps over which the rate falls to `alpha` × the initial rate (then stays there). */
  decaySteps: number;
  alpha: number;
}

/**
 * Keras's `CosineDecay(initial, decay_steps, alpha)`:
 * lr(step) = initial · ((1 − α) · ½ · (1 + cos(π · min(step, decay_steps) / decay_steps)) + α).
 */
export function cosineDecay(
  initial: number,
  decaySteps: number,
  alpha = 0,
): (step: number) => number {
  if (!(decaySteps > 0)) throw new Error(`cosine decay needs decaySteps > 0, got ${decaySteps}`);
  return (step) => {
    const done = Math.min(step, decaySteps) / decaySteps;
    return initial * ((1 - alpha) * 0.5 * (1 + Math.cos(Math.PI * done)) + alpha);
  };
}

/**
 * The key spec of a schedule over a whole run (`epochs` × `stepsPerEpoch` steps, decaying to
 * zero at the last), or undefined for a constant rate, so that runs without a schedule keep the
 * keys they had before schedules existed.
 */
export function scheduleSpec(
  name: LrScheduleName | undefined,
  epochs: number,
  stepsPerEpoch: number,
): LrScheduleSpec | undefined {
  if (name === undefined || name === "constant") return undefined;
  return { name: "cosine_decay", decaySteps: epochs * stepsPerEpoch, alpha: 0 };
}

/** The rate per step of a key's schedule spec. */
export function scheduleFn(initial: number, spec: LrScheduleSpec): (step: number) => number {
  return cosineDecay(initial, spec.decaySteps, spec.alpha);
}
