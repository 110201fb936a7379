/** Plain-text tables for the CLI (no dependencies). */
export function table(header: string[], rows: (string | number)[][], align?: ('l' | 'r')[]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((s, c) => ((align?.[c] ?? (c === 0 ? 'l' : 'r')) === 'l' ? s.padEnd(widths[c]) : s.padStart(widths[c])))
      .join('  ')
      .trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(fmt)].join('\n');
}

/** A single-line progress bar on stderr (TTY only). */
export class Progress {
  private done = 0;
  private readonly tty = Boolean(process.stderr.isTTY);
  constructor(private total: number, private readonly label = '') {}
  tick(what = ''): void {
    this.set(this.done + 1, this.total, what);
  }
  set(done: number, total: number, what = ''): void {
    this.done = done;
    this.total = total;
    if (!this.tty) return;
    const w = 30, f = Math.round((this.done / this.total) * w);
    process.stderr.write(`\r${this.label} [${'#'.repeat(f)}${'.'.repeat(w - f)}] ${this.done}/${this.total} ${what}`.slice(0, 120).padEnd(120));
  }
  end(): void {
    if (this.tty) process.stderr.write('\r' + ' '.repeat(120) + '\r');
  }
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}
