// Number formats the CLI commands share (cli.ts, cli-batches.ts).

/** `8 s`, `2 min 5 s`, `1 h 3 min`. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return ms < 1000 && ms > 0 ? `${(ms / 1000).toFixed(1)} s` : `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ""}`;
}

/** `$1.23`, `$0.0123`, `$0.000135`: three significant digits below a dollar. */
export function formatUsd(value: number): string {
  if (value === 0) return "$0.00";
  if (value >= 1) return `$${value.toFixed(2)}`;
  if (value < 0.000001) return "<$0.000001";
  return `$${Number(value.toPrecision(3)).toFixed(Math.min(8, Math.max(2, 2 - Math.floor(Math.log10(value)))))}`;
}
