/**
 * A dependency-free SVG line chart for `kvtrim eval`: one panel per metric, x = compression ratio, one line per
 * method, legend, grid and ticks. Good enough to look at in a browser or an image viewer.
 */

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

export interface Panel {
  title: string;
  yLabel: string;
  series: Series[];
  /** log10 y axis (for errors spanning decades) */
  logY?: boolean;
  /** fixed y range, e.g. [0, 1] for recall */
  yRange?: [number, number];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) => (Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toPrecision(2));

function niceTicks(lo: number, hi: number, n = 5): number[] {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Renders panels side by side into one SVG document. */
export function lineChart(panels: Panel[], opts: { title?: string; xLabel?: string; width?: number; height?: number } = {}): string {
  const W = opts.width ?? 520 * panels.length, Hh = opts.height ?? 420;
  const pw = W / panels.length;
  const m = { l: 64, r: 16, t: opts.title ? 56 : 32, b: 96 };
  const names = [...new Set(panels.flatMap((p) => p.series.map((s) => s.name)))];
  const color = (name: string) => COLORS[names.indexOf(name) % COLORS.length];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh}" viewBox="0 0 ${W} ${Hh}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${Hh}" fill="white"/>`,
  ];
  if (opts.title) parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(opts.title)}</text>`);
  panels.forEach((p, pi) => {
    const x0 = pi * pw + m.l, x1 = (pi + 1) * pw - m.r, y0 = Hh - m.b, y1 = m.t;
    const pts = p.series.flatMap((s) => s.points).filter((q) => Number.isFinite(q.y) && (!p.logY || q.y > 0));
    const xs = pts.map((q) => q.x);
    const xmin = Math.min(...xs), xmax = Math.max(...xs);
    const ty = (v: number) => (p.logY ? Math.log10(v) : v);
    let ylo: number, yhi: number;
    if (p.yRange) [ylo, yhi] = p.yRange.map(ty) as [number, number];
    else {
      const ys = pts.map((q) => ty(q.y));
      ylo = Math.min(...ys);
      yhi = Math.max(...ys);
      if (p.logY) {
        ylo = Math.floor(ylo);
        yhi = Math.ceil(yhi);
      } else {
        const pad = (yhi - ylo) * 0.08 || 0.1;
        ylo = Math.max(0, ylo - pad);
        yhi += pad;
      }
      if (yhi === ylo) yhi = ylo + 1;
    }
    const X = (v: number) => x0 + ((v - xmin) / (xmax - xmin || 1)) * (x1 - x0);
    const Y = (v: number) => y0 - ((ty(v) - ylo) / (yhi - ylo)) * (y0 - y1);
    parts.push(`<text x="${(x0 + x1) / 2}" y="${y1 - 10}" text-anchor="middle" font-size="13" font-weight="bold">${esc(p.title)}</text>`);
    // grid + ticks
    const yt = p.logY ? Array.from({ length: yhi - ylo + 1 }, (_, i) => 10 ** (ylo + i)) : niceTicks(ylo, yhi);
    for (const v of yt) {
      const y = Y(v);
      if (y < y1 - 1 || y > y0 + 1) continue;
      parts.push(`<line x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" stroke="#e6e6e6"/>`);
      parts.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end" fill="#444">${p.logY ? `1e${Math.round(Math.log10(v))}` : fmt(v)}</text>`);
    }
    for (const v of [...new Set(xs)].sort((a, b) => a - b)) {
      const x = X(v);
      parts.push(`<line x1="${x}" x2="${x}" y1="${y0}" y2="${y1}" stroke="#f0f0f0"/>`);
      parts.push(`<text x="${x}" y="${y0 + 16}" text-anchor="middle" fill="#444">${fmt(v)}</text>`);
    }
    parts.push(`<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#888"/>`);
    parts.push(`<text x="${(x0 + x1) / 2}" y="${y0 + 34}" text-anchor="middle">${esc(opts.xLabel ?? 'compression ratio (fraction evicted)')}</text>`);
    parts.push(`<text transform="translate(${x0 - 48} ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">${esc(p.yLabel)}</text>`);
    for (const s of p.series) {
      const ok = s.points.filter((q) => Number.isFinite(q.y) && (!p.logY || q.y > 0)).sort((a, b) => a.x - b.x);
      if (!ok.length) continue;
      const c = color(s.name);
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${ok.map((q) => `${X(q.x).toFixed(1)},${Y(q.y).toFixed(1)}`).join(' ')}"/>`);
      for (const q of ok) parts.push(`<circle cx="${X(q.x).toFixed(1)}" cy="${Y(q.y).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(`${s.name}: ${q.x} → ${q.y}`)}</title></circle>`);
    }
  });
  // legend along the bottom
  const lx = 20, ly = Hh - 30;
  let x = lx;
  for (const n of names) {
    parts.push(`<line x1="${x}" x2="${x + 22}" y1="${ly}" y2="${ly}" stroke="${color(n)}" stroke-width="3"/>`);
    parts.push(`<text x="${x + 28}" y="${ly + 4}">${esc(n)}</text>`);
    x += 44 + n.length * 8;
  }
  parts.push('</svg>');
  return parts.join('\n');
}
