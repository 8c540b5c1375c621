// Timing shared by the benchmarks: medians, so one slow run (a GC, the VM's neighbour) does not
// decide a number.

/** The median of a list of numbers. */
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The median wall-clock seconds of `runs` calls of `f`. */
export function medianSeconds(runs, f) {
  const times = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    f();
    times.push((performance.now() - t) / 1000);
  }
  return median(times);
}
