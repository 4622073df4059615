/**
 * Quantities as a reader takes them in, one way everywhere: durations ("1 h 05 min") for plans,
 * progress, locks and pages; byte counts ("17 MB") for the space a write needs.
 */

/** "1 h 05 min", "12 min", "40 s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "unknown";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const min = Math.round(seconds / 60);
  return min < 60
    ? `${min} min`
    : `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, "0")} min`;
}

/** A byte count as a reader takes it in: "17 MB", "420 kB". */
export function formatBytes(n: number): string {
  return n >= 1e9
    ? `${(n / 1e9).toFixed(1)} GB`
    : n >= 1e6
    ? `${Math.ceil(n / 1e6)} MB`
    : `${Math.ceil(n / 1e3)} kB`;
}
