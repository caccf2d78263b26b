// The 12-lead in the standard 3x4 + rhythm (II) layout at 25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid (SVG in mm).
// Display filter: zero-phase first-order high-pass at 0.5 Hz (forward + backward, within the AHA limit of 0.67 Hz for
// zero-phase filters, so ST segments keep their level); the export carries the raw samples.
"use strict";
const NS = "http://www.w3.org/2000/svg";
const LAYOUT = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
const MM_S = 25, MM_MV = 10, ROW_MM = 37.5, LEFT_MM = 10, COLS = 4;

function highpassZeroPhase(x, fs, fc) {
  const rc = 1 / (2 * Math.PI * fc), dt = 1 / fs, a = rc / (rc + dt);
  const run = v => { const y = new Float64Array(v.length); let prev = v[0]; y[0] = 0;
    for (let i = 1; i < v.length; i++) { y[i] = a * (y[i - 1] + v[i] - prev); prev = v[i]; } return y; };
  const m = x.reduce((s, v) => s + v, 0) / x.length;
  const f = run(x.map(v => v - m)); const b = run(Array.from(f).reverse()); return b.reverse();
}

function svgEl(tag, attrs) { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }

function drawEcg(strip, opts = {}) {
  const fs = strip.fs, n = strip.n_samples, dur = n / fs;
  const colS = dur / COLS;
  const W = LEFT_MM + dur * MM_S + 2, H = ROW_MM * 4 + 4, PX = opts.pxPerMm || 4;
  const svg = svgEl("svg", { class: "ecg", viewBox: `0 0 ${W} ${H}`, width: W * PX, height: H * PX, "data-mm-per-s": MM_S, "data-mm-per-mv": MM_MV });
  const defs = svgEl("defs", {});
  const small = svgEl("pattern", { id: "g1", width: 1, height: 1, patternUnits: "userSpaceOnUse" });
  small.append(svgEl("path", { d: "M1 0H0V1", fill: "none", stroke: "#f6c9c9", "stroke-width": 0.08 }));
  const big = svgEl("pattern", { id: "g5", width: 5, height: 5, patternUnits: "userSpaceOnUse" });
  big.append(svgEl("rect", { width: 5, height: 5, fill: "url(#g1)" }), svgEl("path", { d: "M5 0H0V5", fill: "none", stroke: "#e89a9a", "stroke-width": 0.18 }));
  defs.append(small, big); svg.append(defs);
  svg.append(svgEl("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }), svgEl("rect", { x: 0, y: 0, width: W, height: H, fill: "url(#g5)" }));
  const hl = svgEl("g", { class: "highlights" }); svg.append(hl);
  const lead = {}; strip.leads.forEach((name, i) => { lead[name] = opts.raw ? strip.samples_uv[i] : highpassZeroPhase(strip.samples_uv[i], fs, 0.5); });
  const traces = svgEl("g", { fill: "none", stroke: "#000", "stroke-width": 0.25, "stroke-linejoin": "round" });
  const pathFor = (sig, i0, i1, x0, yc) => {
    let d = ""; const step = Math.max(1, Math.floor(fs / 500));
    for (let i = i0; i < i1; i += step) {
      const x = x0 + (i - i0) / fs * MM_S, y = yc - sig[i] / 1000 * MM_MV;
      d += (d ? "L" : "M") + x.toFixed(2) + " " + y.toFixed(2);
    }
    return d;
  };
  const calib = yc => `M1 ${yc}H3V${yc - MM_MV}H8V${yc}H${LEFT_MM}`;   // 1 mV x 200 ms
  for (let r = 0; r < 3; r++) {
    const yc = ROW_MM * r + ROW_MM * 0.6;
    traces.append(svgEl("path", { d: calib(yc) }));
    for (let c = 0; c < COLS; c++) {
      const name = LAYOUT[r][c], i0 = Math.round(c * colS * fs), i1 = Math.min(n, Math.round((c + 1) * colS * fs));
      const x0 = LEFT_MM + c * colS * MM_S;
      if (lead[name]) traces.append(svgEl("path", { d: pathFor(lead[name], i0, i1, x0, yc), "data-lead": name }));
      const t = svgEl("text", { x: x0 + 1, y: ROW_MM * r + 5, "font-size": 3.5, fill: "#123", "font-family": "sans-serif" });
      t.textContent = name; svg.append(t);
      if (c > 0) traces.append(svgEl("path", { d: `M${x0} ${yc - 3}V${yc + 3}`, stroke: "#123" }));
    }
  }
  const yr = ROW_MM * 3 + ROW_MM * 0.6;
  traces.append(svgEl("path", { d: calib(yr) }));
  traces.append(svgEl("path", { d: pathFor(lead["II"], 0, n, LEFT_MM, yr), "data-lead": "II-rhythm" }));
  const t = svgEl("text", { x: LEFT_MM + 1, y: ROW_MM * 3 + 5, "font-size": 3.5, fill: "#123", "font-family": "sans-serif" });
  t.textContent = "II (rhythm)"; svg.append(t);
  svg.append(traces);
  svg.highlight = finding => {                      // Grad-CAM of one finding: shade where the model looked
    hl.replaceChildren();
    if (!finding || !finding.cam || !finding.cam.length) return;
    const m = finding.cam.length, binS = dur / m, strong = new Set(finding.leads || []);
    for (let i = 0; i < m; i++) {
      const v = finding.cam[i]; if (v < 0.5) continue;     // the upper half of the activation only
      const t0 = i * binS, c = Math.min(COLS - 1, Math.floor(t0 / colS));
      for (let r = 0; r < 3; r++) {
        const w = strong.has(LAYOUT[r][c]) ? 0.55 : 0.25;
        hl.append(svgEl("rect", { x: LEFT_MM + t0 * MM_S, y: ROW_MM * r + 1, width: binS * MM_S, height: ROW_MM - 2, fill: "#ff8c00", "fill-opacity": ((v - 0.4) * w * 1.6).toFixed(3), class: "cam" }));
      }
      hl.append(svgEl("rect", { x: LEFT_MM + t0 * MM_S, y: ROW_MM * 3 + 1, width: binS * MM_S, height: ROW_MM - 2, fill: "#ff8c00", "fill-opacity": ((v - 0.4) * 0.6).toFixed(3), class: "cam" }));
    }
  };
  return svg;
}
