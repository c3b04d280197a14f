import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cdfPoints } from './bench-math.js';

const exec = promisify(execFile);

export interface CdfSeries {
  label: string;
  color: string;
  /** Completion time of each agent, seconds. */
  times: number[];
  dashed?: boolean;
}

export interface Marker {
  label: string;
  color: string;
  /** Seconds. */
  t: number;
}

export interface CdfChart {
  title: string;
  subtitle: string;
  series: CdfSeries[];
  /** Vertical lines (lower bounds, extrapolations). */
  markers: Marker[];
}

const W = 960;
const H = 560;
const PAD = { left: 70, right: 30, top: 70, bottom: 150 };

/** A step-CDF chart (fraction of agents done vs seconds) as standalone SVG, no library. */
export function renderCdfSvg(chart: CdfChart): string {
  const all = [...chart.series.flatMap((s) => s.times), ...chart.markers.map((m) => m.t)];
  const xMax = niceCeil(Math.max(1, ...all) * 1.05);
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  const x = (t: number) => PAD.left + (t / xMax) * pw;
  const y = (f: number) => PAD.top + (1 - f) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="28" text-anchor="middle" font-size="18" font-weight="bold">${esc(chart.title)}</text>`);
  out.push(`<text x="${W / 2}" y="50" text-anchor="middle" font-size="13" fill="#444">${esc(chart.subtitle)}</text>`);
  const step = niceStep(xMax / 8);
  for (let t = 0; t <= xMax + 1e-9; t += step) {
    out.push(`<line x1="${x(t)}" y1="${PAD.top}" x2="${x(t)}" y2="${PAD.top + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x(t)}" y="${PAD.top + ph + 18}" text-anchor="middle" font-size="12">${+t.toFixed(1)}</text>`);
  }
  for (let f = 0; f <= 1.0001; f += 0.25) {
    out.push(`<line x1="${PAD.left}" y1="${y(f)}" x2="${PAD.left + pw}" y2="${y(f)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${PAD.left - 8}" y="${y(f) + 4}" text-anchor="end" font-size="12">${Math.round(f * 100)}%</text>`);
  }
  out.push(`<rect x="${PAD.left}" y="${PAD.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(
    `<text x="${PAD.left + pw / 2}" y="${PAD.top + ph + 40}" text-anchor="middle" font-size="13">seconds since all pulls started</text>`,
  );
  out.push(`<text transform="translate(18 ${PAD.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="13">agents done (CDF)</text>`);
  for (const m of chart.markers) {
    out.push(
      `<line x1="${x(m.t)}" y1="${PAD.top}" x2="${x(m.t)}" y2="${PAD.top + ph}" stroke="${m.color}" stroke-width="1.5" stroke-dasharray="3 4"/>`,
    );
  }
  for (const s of chart.series) {
    if (s.times.length === 0) continue;
    let d = `M ${x(0)} ${y(0)}`;
    for (const p of cdfPoints(s.times)) {
      d += ` H ${x(p.t)} V ${y(p.fraction)}`;
    }
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="8 5"' : ''}/>`);
  }
  // Legend under the plot: series (solid) then bounds (dotted), two columns.
  const items = [
    ...chart.series.map((s) => ({ label: s.label, color: s.color, dash: s.dashed ? '8 5' : '' })),
    ...chart.markers.map((m) => ({ label: `${m.label} = ${m.t.toFixed(1)} s`, color: m.color, dash: '3 4' })),
  ];
  items.forEach((it, i) => {
    const col = i % 2;
    const row = Math.floor(i / 2);
    const lx = PAD.left + col * (pw / 2);
    const ly = PAD.top + ph + 64 + row * 20;
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 28}" y2="${ly - 4}" stroke="${it.color}" stroke-width="2.5"${it.dash ? ` stroke-dasharray="${it.dash}"` : ''}/>`,
    );
    out.push(`<text x="${lx + 36}" y="${ly}" font-size="12">${esc(it.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** SVG → PNG with rsvg-convert (Debian librsvg2-bin); false when the tool is missing. */
export async function svgToPng(svgPath: string, pngPath: string): Promise<boolean> {
  try {
    await exec('rsvg-convert', ['-w', String(W * 1.5), '-o', pngPath, svgPath]);
    return true;
  } catch {
    return false;
  }
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const k of [1, 2, 5, 10]) if (k * p >= raw) return k * p;
  return 10 * p;
}

function niceCeil(v: number): number {
  const s = niceStep(v / 8);
  return Math.ceil(v / s) * s;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
