/* Bedside display page. No frameworks, no network beyond the device itself.
 * Live data arrives over Server-Sent Events (/api/live); writes go to the JSON API.
 * A triage aid, not a diagnosis: the notice is part of the page and never hidden.
 */
"use strict";

const LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
const LAYOUT = [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]];   // standard 3x4 (I aVR V1 V4 / ...)
const RHYTHM = 1;                                             // lead II rhythm strip
const SWEEP_S = 10, COL_S = 2.5, MM_PER_S = 25, MM_PER_MV = 10, ROW_MM = 25;
const GAP_S = 0.3;                                            // erase bar ahead of the sweep
const CLASS_NAMES = { NORM: "Normal", MI: "Myocardial infarction", STTC: "ST/T change",
  CD: "Conduction disturbance", HYP: "Hypertrophy" };
// Which electrodes each lead depends on (V leads use Wilson's terminal: RA, LA, LL).
const LEAD_ELECTRODES = { I: ["RA", "LA"], II: ["RA", "LL"], III: ["LA", "LL"], aVR: ["RA", "LA", "LL"],
  aVL: ["RA", "LA", "LL"], aVF: ["RA", "LA", "LL"] };
["V1", "V2", "V3", "V4", "V5", "V6"].forEach(v => { LEAD_ELECTRODES[v] = [v, "RA", "LA", "LL"]; });
const ELECTRODE_POS = { RA: [42, 40], LA: [158, 40], LL: [140, 195], V1: [88, 100], V2: [112, 100],
  V3: [120, 120], V4: [132, 138], V5: [150, 140], V6: [165, 142] };

const $ = id => document.getElementById(id);
const perf = { frames: 0, drawMsTotal: 0, drawMsMax: 0, drawMs: [], msgs: 0, msgMsTotal: 0,
  samplesIn: 0, resultDraws: 0, resultDrawMsTotal: 0 };
const st = {
  fs: 125, N: 1250, buf: [], latestSeq: 0, displaySeq: 0, drawnSeq: 0, haveData: false,
  lastSampleAt: 0, connected: false, electrodes: {}, leads: {}, quality: null, heartRate: null,
  results: [], latest: null, lastClinical: null, selectedId: null, detail: null, alarms: new Map(), lastReview: null,
  patient: { age: null, sex: null }, formSex: undefined, geom: null, rgeom: null, status: null, stale: true,
};
window.ecg = { st, perf };

/* ------------------------------------------------------------------ helpers */
const TIME_FMT = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
function fmtTime(t) {
  if (t === undefined || t === null) return "";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (isNaN(d.getTime())) return String(t);
  return TIME_FMT.format(d);
}
function pct(p) { return (100 * p).toFixed(p >= 0.995 || p < 0.005 ? 0 : 0) + "%"; }
function topClass(probs) {
  let best = null, bp = -1;
  for (const [k, v] of Object.entries(probs || {})) if (typeof v === "number" && v > bp) { best = k; bp = v; }
  return best;
}
/** Priority/label of a result (edge_app.results.TriageResult.to_dict(); tolerant of older shapes). */
function classify(r) {
  if (!r) return { prio: "none", label: "Waiting for a clean 10 s strip…", detail: "", tech: false };
  const tri = (r.triage && typeof r.triage === "object") ? r.triage : {};
  const level = String(r.triage_level ?? tri.level ?? r.level ?? "").toLowerCase();
  const prio = String(r.alarm_priority ?? tri.alarm_priority ?? tri.priority ?? r.priority ?? "").toLowerCase();
  const verdict = String((r.quality || {}).verdict || "").toLowerCase();
  const tech = level === "cannot_interpret" || /cannot|interpret/.test(level) || verdict === "unusable";
  const ex = explanationOf(r);
  const alarms = (r.alarms || []).filter(a => a && a.kind !== "technical");
  if (tech) {
    const reasons = ((r.quality || {}).reasons || []).join("; ");
    return { prio: "tech", label: "CANNOT INTERPRET", detail: reasons || "signal unusable — check electrodes", tech: true };
  }
  const positive = (ex.findings || []).map(f => f.cls || f.class).filter(Boolean);
  let p = (level === "high" || prio === "high") ? "high" : (level === "medium" || prio === "medium") ? "medium" : "low";
  let label;
  if (p === "high") label = positive.includes("MI") || !positive.length ? "SUSPECTED MI" : "HIGH PRIORITY";
  else if (p === "medium") {
    const abn = positive.filter(c => c !== "MI" && c !== "NORM");
    label = abn.length ? "ABNORMAL ECG: " + abn.map(c => CLASS_NAMES[c] || c).join(", ")
      : alarms.some(a => a.code === "extreme_heart_rate") ? "EXTREME HEART RATE" : "ABNORMAL ECG";
  } else label = "NO URGENT FINDING";
  const tc = topClass(r.probabilities);
  const detail = tc ? `top class ${CLASS_NAMES[tc] || tc} ${pct(r.probabilities[tc])}` : "";
  return { prio: p, label, detail, tech: false };
}
function electrodesOffFrom(r) {
  const q = (r && r.quality) || {};
  return q.electrodes_off || [];
}
async function api(method, path, body) {
  const opt = { method, headers: {} };
  if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
  const res = await fetch(path, opt);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new Error((data && data.error) || `HTTP ${res.status}`);
  return data;
}

/* ------------------------------------------------------------------ geometry + grid */
function fitCanvas(c) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(50, Math.round(c.clientWidth * dpr)), h = Math.max(50, Math.round(c.clientHeight * dpr));
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; return true; }
  return false;
}
/** Layout in device pixels: one mm scale for time and amplitude so 25 mm/s and 10 mm/mV hold. */
function geometry(W, H, seconds) {
  const mm = Math.min((W - 4) / (seconds * MM_PER_S), H / (4 * ROW_MM));
  const x0 = Math.max(2, Math.round((W - seconds * MM_PER_S * mm) / 2));
  const rowH = H / 4;
  return { W, H, mm, x0, rowH, seconds, pxPerS: MM_PER_S * mm, pxPerUv: MM_PER_MV * mm / 1000,
    base: r => rowH * (r + 0.55) };
}
function drawGrid(ctx, g, leadState, highlight) {
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, g.W, g.H);
  const w = g.seconds * MM_PER_S * g.mm;
  const lines = (step, color, lw) => {
    ctx.strokeStyle = color; ctx.lineWidth = lw; ctx.beginPath();
    for (let x = g.x0; x <= g.x0 + w + 0.5; x += step) { ctx.moveTo(Math.round(x) + .5, 0); ctx.lineTo(Math.round(x) + .5, g.H); }
    for (let y = g.H; y >= 0; y -= step) { ctx.moveTo(g.x0, Math.round(y) + .5); ctx.lineTo(g.x0 + w, Math.round(y) + .5); }
    ctx.stroke();
  };
  if (g.mm >= 2.5) lines(g.mm, "#2a0d0d", 1);
  lines(5 * g.mm, "#5a1a1a", 1);
  // column dividers + labels
  ctx.font = `bold ${Math.max(12, Math.round(g.rowH * 0.17))}px DejaVu Sans, Arial, sans-serif`;
  ctx.textBaseline = "top";
  const label = (name, x, y) => {
    const s = leadState[name] || "ok";
    const hl = highlight && highlight.has(name);
    ctx.fillStyle = s === "off" ? "#ff5252" : s === "noisy" ? "#f2c200" : hl ? "#ffb347" : "#cfd8dc";
    ctx.fillText(name + (s === "off" ? " OFF" : s === "noisy" ? " noisy" : ""), x + 4, y + 3);
  };
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) {
    const x = g.x0 + c * COL_S * g.pxPerS;
    label(LEADS[LAYOUT[r][c]], x, r * g.rowH);
    if (c > 0) { ctx.fillStyle = "#8a99a8"; ctx.fillRect(Math.round(x), g.base(r) - 0.4 * g.rowH, 1, 0.4 * g.rowH); }
  }
  label(LEADS[RHYTHM] + " (rhythm)", g.x0, 3 * g.rowH);
  // 1 mV calibration pulse at the right edge of the first row
  ctx.strokeStyle = "#cfd8dc"; ctx.lineWidth = 1.5; ctx.beginPath();
  const cx = g.x0 + w - 5 * g.mm, by = g.base(0);
  ctx.moveTo(cx - 0.5, by); ctx.lineTo(cx, by); ctx.lineTo(cx, by - 1000 * g.pxPerUv);
  ctx.lineTo(cx + 5 * g.mm * 0.4, by - 1000 * g.pxPerUv); ctx.lineTo(cx + 5 * g.mm * 0.4, by); ctx.stroke();
}
function leadStates() {
  const out = {};
  const offE = new Set(Object.entries(st.electrodes).filter(([, s]) => s === "off").map(([e]) => e));
  for (const L of LEADS) {
    const q = st.leads[L];
    if (q === "off" || (LEAD_ELECTRODES[L] || []).some(e => offE.has(e))) out[L] = "off";
    else if (q === "noisy") out[L] = "noisy";
    else out[L] = "ok";
  }
  return out;
}

/* ------------------------------------------------------------------ live sweep */
function setFs(fs) {
  st.fs = fs; st.N = Math.round(SWEEP_S * fs);
  st.buf = LEADS.map(() => new Float32Array(st.N).fill(NaN));
}
function ingest(strip) {
  if (!st.buf.length || strip.fs !== st.fs) { setFs(strip.fs); st.drawnSeq = st.displaySeq = strip.start; }
  if (strip.reset || strip.start > st.latestSeq + st.N || strip.end < st.latestSeq) {
    st.buf.forEach(b => b.fill(NaN)); st.drawnSeq = st.displaySeq = strip.start; st.needFull = true;
  }
  const rows = strip.data;
  for (let i = 0; i < rows.length; i++) {
    const p = (strip.start + i) % st.N, row = rows[i];
    for (let l = 0; l < 12; l++) st.buf[l][p] = row[l] === null ? NaN : row[l];
  }
  if (rows.length) {
    st.latestSeq = strip.end; st.lastSampleAt = performance.now(); st.haveData = true;
    perf.samplesIn += rows.length;
    if (st.latestSeq - st.displaySeq > 0.6 * st.fs || st.displaySeq > st.latestSeq) st.displaySeq = st.latestSeq - 0.15 * st.fs;
  }
}
function liveGeometry() {
  // Reading the canvas size forces a layout, so only do it when a ResizeObserver said it changed.
  if (st.geom && !st.resized) return;
  st.resized = false;
  const c = $("live"), gc = $("live-grid");
  const changed = fitCanvas(c) | fitCanvas(gc);
  if (changed || !st.geom) {
    st.geom = geometry(c.width, c.height, SWEEP_S);
    redrawLiveGrid(true);
    st.needFull = true;
  }
}
function redrawLiveGrid(force) {
  // The grid + lead labels only change with the canvas size or a lead's state: skip otherwise.
  if (!st.geom) return;
  const ls = leadStates(), key = JSON.stringify(ls) + st.geom.W + "x" + st.geom.H;
  if (!force && key === st.gridKey) return;
  st.gridKey = key;
  drawGrid($("live-grid").getContext("2d"), st.geom, ls, null);
}
/** Keep an off-scale trace inside its row's neighbourhood (no rail-to-rail lines across the screen). */
function clampY(y, base, rowH) { return y < base - 1.3 * rowH ? base - 1.3 * rowH : y > base + rowH ? base + rowH : y; }
function drawLiveRangeColumns(ctx, a, b) {
  // Column-aware wrapper: each 3x4 panel shows its lead only within its 2.5 s column.
  const g = st.geom, N = st.N, fs = st.fs, colN = Math.round(COL_S * fs);
  const xOf = p => g.x0 + (p / fs) * g.pxPerS;
  ctx.lineWidth = Math.max(1.2, g.mm * 0.35); ctx.lineJoin = "round"; ctx.strokeStyle = "#7CFC9A";
  const start = Math.max(a - 1, b - N + 1);
  ctx.beginPath();
  for (let r = 0; r < 3; r++) {
    const base = g.base(r);
    for (let c = 0; c < 4; c++) {
      const bufL = st.buf[LAYOUT[r][c]];
      let pen = false;
      for (let s = start; s < b; s++) {
        const p = s % N;
        if (Math.floor(p / colN) !== c) { pen = false; continue; }
        const v = bufL[p];
        if (v !== v || p % colN === 0) { pen = false; if (v !== v) continue; }
        const x = xOf(p), y = clampY(base - v * g.pxPerUv, base, g.rowH);
        if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
      }
    }
  }
  const bufR = st.buf[RHYTHM], baseR = g.base(3);
  let pen = false;
  for (let s = start; s < b; s++) {
    const p = s % N, v = bufR[p];
    if (v !== v || p === 0) { pen = false; if (v !== v) continue; }
    const x = xOf(p), y = clampY(baseR - v * g.pxPerUv, baseR, g.rowH);
    if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
  }
  ctx.stroke();
}
function clearAhead(ctx, a, b) {
  const g = st.geom, N = st.N, fs = st.fs;
  const xOf = p => g.x0 + (p / fs) * g.pxPerS;
  const gap = Math.round(GAP_S * fs);
  const clr = (p0, p1) => {   // phases, p0 < p1 <= N
    if (p1 <= p0) return;
    const x0 = p0 === 0 ? 0 : Math.floor(xOf(p0)) + 1;
    const x1 = p1 >= N ? g.W : Math.ceil(xOf(p1)) + 2;
    ctx.clearRect(x0, 0, x1 - x0, g.H);
  };
  if (b - a + gap >= N) { ctx.clearRect(0, 0, g.W, g.H); return; }
  const p0 = a % N, p1 = p0 + (b - a) + gap;
  if (p1 <= N) clr(p0, p1); else { clr(p0, N); clr(0, p1 - N); }
}
const MAX_FPS = 25;   // at most 25 frames/s (20 on a 60 Hz screen): the sweep stays smooth and compositing halves
function frame() {
  requestAnimationFrame(frame);
  if (!st.haveData) return;
  const now = performance.now();
  if (st.lastFrameAt && now - st.lastFrameAt < 1000 / MAX_FPS - 2) return;
  liveGeometry();
  const dt = st.lastFrameAt ? Math.min(0.25, (now - st.lastFrameAt) / 1000) : 0;
  st.lastFrameAt = now;
  // playout: advance at the sample rate, never past what arrived (smooth sweep between SSE batches)
  st.displaySeq = Math.min(st.latestSeq, st.displaySeq + dt * st.fs);
  const b = Math.floor(st.displaySeq);
  if (b <= st.drawnSeq && !st.needFull) return;
  const t0 = performance.now();
  const ctx = $("live").getContext("2d");
  let a = st.drawnSeq;
  if (st.needFull || b - a >= st.N) { ctx.clearRect(0, 0, st.geom.W, st.geom.H); a = b - st.N + 1; st.needFull = false; }
  clearAhead(ctx, Math.max(a, b - st.N), b);
  drawLiveRangeColumns(ctx, a, b);
  st.drawnSeq = b;
  const ms = performance.now() - t0;
  perf.frames++; perf.drawMsTotal += ms; perf.drawMsMax = Math.max(perf.drawMsMax, ms);
  perf.drawMs.push(ms); if (perf.drawMs.length > 2000) perf.drawMs.shift();
}

/* ------------------------------------------------------------------ result strip + explanation */
function explanationOf(r) {
  // The daemon's explanation: {findings: [{cls, probability, leads, seconds, text, cam?}], summary}.
  const e = (r && r.explanation) || {};
  const findings = Array.isArray(e.findings) ? e.findings : [];
  const f = findings[0] || e;
  const cls = f.cls || f.class || e.class || topClass(r && r.probabilities);
  let cam = null;
  if (Array.isArray(f.cam)) cam = f.cam;
  else if (e.cam && typeof e.cam === "object") cam = Array.isArray(e.cam) ? e.cam : (e.cam[cls] || null);
  let secs = f.seconds || e.seconds || null;
  if (Array.isArray(secs) && secs.length === 2 && typeof secs[0] === "number") secs = [secs];
  return { cls, cam: Array.isArray(cam) ? cam : null, seconds: Array.isArray(secs) ? secs : [],
    leads: Array.isArray(f.leads) ? f.leads : [], findings, summary: e.summary || f.text || "" };
}
function drawResult() {
  const c = $("result");
  fitCanvas(c);
  const ctx = c.getContext("2d");
  const r = st.detail;
  const t0 = performance.now();
  if (!r || !r.strip || !r.strip.data || !r.strip.data.length) {
    const g = geometry(c.width, c.height, SWEEP_S);
    drawGrid(ctx, g, {}, null);
    ctx.fillStyle = "#8a99a8"; ctx.font = `${Math.round(g.rowH * 0.3)}px DejaVu Sans, sans-serif`;
    ctx.fillText(r ? "No stored strip for this result" : "No result yet", g.x0 + 20, g.H / 2 - 10);
    return;
  }
  const s = r.strip, fs = s.fs, n = s.data.length, dur = n / fs;
  const g = geometry(c.width, c.height, dur);
  st.rgeom = g;
  const ex = explanationOf(r);
  const hl = new Set(ex.leads);
  const qoff = new Set(electrodesOffFrom(r));
  const ls = {};
  for (const L of LEADS) ls[L] = (LEAD_ELECTRODES[L] || []).some(e => qoff.has(e)) ? "off" : "ok";
  const noisy = (r.quality && r.quality.noisy_leads) || [];
  noisy.forEach(L => { if (ls[L] === "ok") ls[L] = "noisy"; });
  drawGrid(ctx, g, ls, hl);
  const xOfT = t => g.x0 + t * g.pxPerS;
  // Grad-CAM band: shade in time, across all rows (time maps to the same x in 3x4 and rhythm rows)
  if (ex.cam && ex.cam.length) {
    let mx = 0; for (const v of ex.cam) if (v > mx) mx = v;
    if (mx > 0) {
      const dt = dur / ex.cam.length;
      for (let i = 0; i < ex.cam.length; i++) {
        const a = Math.max(0, ex.cam[i] / mx);
        if (a < 0.15) continue;
        ctx.fillStyle = `rgba(255,140,0,${(0.38 * a).toFixed(3)})`;
        const x0 = xOfT(i * dt), x1 = xOfT((i + 1) * dt);
        ctx.fillRect(x0, 0, Math.max(1, x1 - x0 + 0.5), g.H);
      }
    }
  }
  for (const se of ex.seconds) {
    if (!Array.isArray(se) || se.length < 2) continue;
    if (!ex.cam) { ctx.fillStyle = "rgba(255,140,0,0.22)"; ctx.fillRect(xOfT(se[0]), 0, xOfT(se[1]) - xOfT(se[0]), g.H); }
    ctx.strokeStyle = "#ffb347"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
    ctx.strokeRect(xOfT(se[0]), 1, xOfT(se[1]) - xOfT(se[0]), g.H - 2);
    ctx.setLineDash([]);
  }
  // panels of the leads that drove the finding
  const colW = COL_S * g.pxPerS;
  ctx.strokeStyle = "#ffb347"; ctx.lineWidth = 3;
  for (let rr = 0; rr < 3; rr++) for (let cc = 0; cc < 4; cc++) {
    if (hl.has(LEADS[LAYOUT[rr][cc]])) ctx.strokeRect(g.x0 + cc * colW + 2, rr * g.rowH + 2, colW - 4, g.rowH - 4);
  }
  if (hl.has(LEADS[RHYTHM])) ctx.strokeRect(g.x0 + 2, 3 * g.rowH + 2, dur * g.pxPerS - 4, g.rowH - 4);
  // traces
  const colN = Math.round(COL_S * fs);
  ctx.strokeStyle = "#e8eef4"; ctx.lineWidth = Math.max(1.1, g.mm * 0.3); ctx.lineJoin = "round";
  ctx.beginPath();
  const trace = (lead, base, i0, i1) => {
    let pen = false;
    for (let i = i0; i < i1; i++) {
      const v = s.data[i][lead];
      if (v === null) { pen = false; continue; }
      const x = xOfT(i / fs), y = clampY(base - v * g.pxPerUv, base, g.rowH);
      if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
    }
  };
  for (let rr = 0; rr < 3; rr++) for (let cc = 0; cc < 4; cc++) {
    trace(LAYOUT[rr][cc], g.base(rr), Math.min(n, cc * colN), Math.min(n, (cc + 1) * colN));
  }
  trace(RHYTHM, g.base(3), 0, n);
  ctx.stroke();
  perf.resultDraws++; perf.resultDrawMsTotal += performance.now() - t0;
}
async function showResult(id) {
  try {
    st.detail = await api("GET", `/api/results/${encodeURIComponent(id)}`);
  } catch (e) {
    st.detail = null;
  }
  drawResult();
  renderResultTitle();
  renderStation();
  renderHistory();
}
function renderResultTitle() {
  const r = st.detail;
  const t = $("result-title"), e = $("result-expl");
  if (!r) { t.textContent = "Result strip — none yet"; e.textContent = ""; t.dataset.id = ""; return; }
  const c = classify(r);
  const following = st.selectedId === null;
  t.textContent = `Result ${fmtTime(r.time)} — ${c.label}${following ? "" : "  (from history)"}`;
  t.dataset.id = r.id;
  const ex = explanationOf(r);
  const bits = [];
  if (ex.cls && (ex.leads.length || ex.seconds.length || ex.cam)) bits.push(`Explanation for ${ex.cls}`);
  if (ex.leads.length) bits.push(`leads ${ex.leads.join(", ")}`);
  if (ex.seconds.length) bits.push(ex.seconds.map(s => `${(+s[0]).toFixed(1)}–${(+s[1]).toFixed(1)} s`).join(", "));
  e.textContent = bits.join(" · ");
}

/* ------------------------------------------------------------------ word from the hospital */
const VERDICTS = { confirmed: "CONFIRMED", not_confirmed: "NOT CONFIRMED", repeat_ecg: "REPEAT ECG" };
/** Receipt and review of the result on screen (docs/display.md "Word back from the hospital"). */
function renderStation() {
  const box = $("station"), del = $("delivery"), rev = $("review");
  const r = st.detail, fb = r && r.feedback;
  // The review shown: the one of the result on screen, else the hospital's newest (new windows keep coming
  // every stride, so a review of an ECG from minutes ago must stay visible until the crew looks at it).
  const shown = fb && fb.review ? { result_id: r.id, result_time: r.time, review: fb.review } : st.lastReview;
  const local = fb && (fb.delivery || {}).state === "local_only";     // no uplink: nothing to say
  if ((!fb || local) && !shown) { box.classList.add("hidden"); return; }
  box.classList.remove("hidden");
  del.className = "delivery";
  del.dataset.state = "";
  del.textContent = "";
  if (fb) {
    const d = fb.delivery || {};
    const which = `ECG ${fmtTime(r.time)}: `;                     // the result on screen, as in its title
    del.dataset.state = d.state || "";
    if (d.state === "received") {
      del.textContent = which + `received by ${d.station} at ${fmtTime(d.stored_at)}` +
        (d.strip_received ? " (with 12-lead strip)" : "");
      del.classList.add("received");
    } else if (d.state === "sent") {
      del.textContent = which + "sent, awaiting receipt from the hospital";
      del.classList.add("waiting");
    } else if (d.state === "queued") {
      del.textContent = which + `not yet delivered, ${d.queued ?? "?"} queued`;
      del.classList.add("waiting");
    } else {
      del.textContent = which + "kept on this device only (no uplink)";
    }
  }
  const v = shown && shown.review;
  rev.className = "review" + (v ? " " + v.verdict : " hidden");
  rev.dataset.verdict = v ? v.verdict : "";
  rev.dataset.resultId = v ? shown.result_id : "";
  rev.innerHTML = "";
  if (!v) return;
  const other = !r || shown.result_id !== r.id;
  const head = document.createElement("span");
  head.className = "verdict";
  head.textContent = `Hospital review${other ? ` of ECG ${fmtTime(shown.result_time)}` : ""}: ` +
    (VERDICTS[v.verdict] || v.verdict);
  const who = document.createElement("span");
  who.textContent = ` — ${v.reviewer}, ${v.station}, ${fmtTime(v.reviewed_at)}`;
  rev.append(head, who);
  if (other) {
    const btn = document.createElement("button");
    btn.type = "button"; btn.className = "btn btn-show"; btn.id = "review-show"; btn.textContent = "Show that ECG";
    btn.addEventListener("click", () => { st.selectedId = shown.result_id; showResult(shown.result_id).then(renderProbs); });
    rev.appendChild(btn);
  }
  if (v.text) {
    const t = document.createElement("span");
    t.className = "review-text"; t.textContent = v.text;
    rev.appendChild(t);
  }
}
function noteReview(lr) {
  if (!lr || !lr.review) return;
  const cur = st.lastReview && st.lastReview.review;
  if (!cur || (lr.review.received_at || "") >= (cur.received_at || "")) st.lastReview = lr;
}
function onFeedback(d) {
  for (const r of st.results) if (r.id === d.result_id) r.feedback = d.feedback;
  const before = st.lastReview && st.lastReview.review.review_id;
  if (d.feedback && d.feedback.review)
    noteReview({ result_id: d.result_id, result_time: d.feedback.result_time, review: d.feedback.review });
  if (st.detail && st.detail.id === d.result_id) st.detail.feedback = d.feedback;
  renderStation();
  if (st.lastReview && st.lastReview.review.review_id !== before) {   // a new word from the hospital: draw the eye
    $("station").classList.add("fresh");
    clearTimeout(st.freshTimer);
    st.freshTimer = setTimeout(() => $("station").classList.remove("fresh"), 15000);
  }
}

/* ------------------------------------------------------------------ side panels */
function renderElectrodes() {
  const g = $("electrode-dots");
  if (!g.childElementCount) {
    for (const [name, [x, y]] of Object.entries(ELECTRODE_POS)) {
      const el = document.createElementNS("http://www.w3.org/2000/svg", "g");
      el.setAttribute("class", "edot ok"); el.id = "el-" + name;
      el.innerHTML = `<circle cx="${x}" cy="${y}" r="11"></circle><text x="${x}" y="${y}">${name}</text>`;
      g.appendChild(el);
    }
  }
  for (const name of Object.keys(ELECTRODE_POS)) {
    const s = st.electrodes[name] === "off" ? "off" : "ok";
    $("el-" + name).setAttribute("class", "edot " + s);
    $("el-" + name).dataset.state = s;
  }
  const ls = leadStates();
  const grid = $("lead-grid");
  if (!grid.childElementCount) for (const L of LEADS) {
    const d = document.createElement("div"); d.className = "lead"; d.id = "lead-" + L; d.textContent = L; grid.appendChild(d);
  }
  for (const L of LEADS) { $("lead-" + L).className = "lead " + ls[L]; $("lead-" + L).dataset.state = ls[L]; }
  const off = Object.entries(st.electrodes).filter(([, s]) => s === "off").map(([e]) => e);
  const q = st.quality || {};
  const qt = $("quality-text");
  const reasons = (q.reasons || []).join("; ");
  qt.textContent = off.length ? `Electrode off: ${off.join(", ")}` + (reasons ? ` · ${reasons}` : "")
    : (q.verdict ? `Signal: ${q.verdict}` + (reasons ? ` · ${reasons}` : "") : "");
  qt.className = "quality-text" + (off.length || (q.verdict && q.verdict !== "ok" && q.verdict !== "good") ? " bad" : "");
  redrawLiveGrid();
  renderTech();
}
function renderTech() {
  const off = Object.entries(st.electrodes).filter(([, s]) => s === "off").map(([e]) => e);
  const lr = st.latest, lc = lr ? classify(lr) : null;
  let label = null, detail = "";
  const age = (performance.now() - st.lastSampleAt) / 1000;
  if (!st.connected) { label = "DISPLAY NOT CONNECTED"; detail = "reconnecting to the device…"; }
  else if (!st.haveData || age > 3) { label = "NO SIGNAL"; detail = "no samples from the ECG front end"; }
  else if (off.length) { label = "CANNOT INTERPRET — ELECTRODE OFF"; detail = off.join(", ") + " — check electrode contact"; }
  else if (lc && lc.tech) { label = lc.label; detail = lc.detail || (lr.quality && (lr.quality.reasons || []).join("; ")) || ""; }
  else if (st.quality && ["unusable", "bad"].includes(String(st.quality.verdict).toLowerCase())) {
    label = "CANNOT INTERPRET — SIGNAL QUALITY"; detail = (st.quality.reasons || []).join("; ");
  }
  $("tech").classList.toggle("hidden", !label);
  $("tech").dataset.state = label ? "on" : "off";
  $("tech-label").textContent = label || ""; $("tech-detail").textContent = detail ? "· " + detail : "";
  const stale = !st.connected || !st.haveData || age > 3;
  document.querySelector(".live-wrap").classList.toggle("stale", stale);
  if (stale !== st.stale) { st.stale = stale; renderHr(); }
  const ls = $("live-state");
  ls.textContent = !st.connected ? "not connected" : (!st.haveData || age > 3) ? "NO SIGNAL" : `live · ${st.fs} Hz display`;
  ls.className = "live-state " + ((st.connected && st.haveData && age <= 3) ? "ok" : "bad");
}
function alarmForResult(r) {
  // The most urgent unacknowledged physiological alarm of this result (else its first one).
  if (!r) return null;
  const mine = [...st.alarms.values()].filter(a => a.result_id === r.id && a.kind !== "technical");
  const rank = a => ({ high: 0, medium: 1, low: 2 })[a.priority] ?? 3;
  mine.sort((a, b) => (a.acknowledged - b.acknowledged) || (rank(a) - rank(b)));
  return mine[0] || null;
}
function renderBanner() {
  const r = st.lastClinical;
  const c = classify(r);
  const b = $("banner");
  const alarm = alarmForResult(r);
  const unacked = alarm && !alarm.acknowledged;
  b.className = `banner prio-${r ? c.prio : "none"}` + (r && (c.prio === "high" || c.prio === "medium") && unacked ? " flash" : "");
  b.dataset.prio = r ? c.prio : "none";
  b.dataset.id = r ? r.id : "";
  $("banner-label").textContent = c.label;
  const when = r ? ` · ${fmtTime(r.time)}` : "";
  const ack = alarm && alarm.acknowledged ? ` · acknowledged${alarm.acknowledged_by ? " by " + alarm.acknowledged_by : ""}` : "";
  $("banner-detail").textContent = r ? `${c.detail}${when}${ack}` : "";
  const btn = $("banner-ack");
  btn.classList.toggle("hidden", !unacked);
  btn.dataset.alarm = unacked ? alarm.id : "";
}
function renderProbs() {
  const r = st.detail || st.latest;
  const box = $("probs");
  const probs = r && r.probabilities;
  if (!probs || !Object.keys(probs).length) {
    box.innerHTML = r ? '<div class="muted">Not interpreted — no probabilities for an unusable signal</div>'
      : '<div class="muted">No result yet</div>';
    return;
  }
  const top = topClass(probs);
  box.innerHTML = "";
  for (const [k, v] of Object.entries(probs)) {
    const d = document.createElement("div");
    d.className = "prob" + (k === top ? " top" : ""); d.title = CLASS_NAMES[k] || k;
    const name = document.createElement("span"); name.textContent = k;
    const bar = document.createElement("span"); bar.className = "bar";
    const fill = document.createElement("span"); fill.className = "fill";
    fill.style.width = (100 * Math.max(0, Math.min(1, Number(v) || 0))).toFixed(1) + "%";
    bar.appendChild(fill);
    const pc = document.createElement("span"); pc.className = "pct"; pc.textContent = pct(Number(v) || 0);
    d.append(name, bar, pc);
    box.appendChild(d);
  }
}
function timeKey(t) { return typeof t === "number" ? t * 1000 : (Date.parse(t) || 0); }
function alarmPrio(a) {
  const p = String(a.priority || "").toLowerCase();
  if (a.kind === "technical" || p === "technical") return "tech";
  return ["high", "medium", "low"].includes(p) ? p : "none";
}
function renderAlarms() {
  const ul = $("alarms");
  const list = [...st.alarms.values()].sort((a, b) => timeKey(b.time) - timeKey(a.time));
  const show = list.filter(a => !a.acknowledged).concat(list.filter(a => a.acknowledged).slice(0, 3));
  ul.innerHTML = "";
  if (!show.length) { ul.innerHTML = '<li class="muted">None</li>'; return; }
  for (const a of show) {
    const li = document.createElement("li");
    li.className = `alarm prio-${alarmPrio(a)}` + (a.acknowledged ? " acked" : "");
    li.dataset.id = a.id; li.dataset.acked = a.acknowledged ? "1" : "0";
    const txt = document.createElement("span"); txt.className = "txt";
    txt.textContent = `${a.message || a.label || a.code || "Alarm"} · ${fmtTime(a.time)}` +
      (a.active === false ? " · condition ended" : "") +
      (a.acknowledged ? ` · ack ${a.acknowledged_by || ""}` : "");
    li.appendChild(txt);
    if (!a.acknowledged) {
      const btn = document.createElement("button");
      btn.className = "btn btn-ack"; btn.type = "button"; btn.textContent = "Ack"; btn.dataset.alarm = a.id;
      btn.addEventListener("click", () => ackAlarm(a.id));
      li.appendChild(btn);
    }
    ul.appendChild(li);
  }
}
async function ackAlarm(id) {
  try {
    const res = await api("POST", `/api/alarms/${encodeURIComponent(id)}/ack`, { by: "bedside" });
    if (res && res.alarm) st.alarms.set(String(res.alarm.id), res.alarm);
  } catch (e) {
    const a = st.alarms.get(String(id));
    if (a && /already/.test(e.message)) a.acknowledged = true;
    else { $("alarm-msg").textContent = "Could not acknowledge: " + e.message; setTimeout(() => { $("alarm-msg").textContent = ""; }, 8000); }
  }
  renderAlarms(); renderBanner();
}
function renderHistory() {
  const ul = $("history");
  ul.innerHTML = "";
  if (!st.results.length) { ul.innerHTML = '<li class="muted">None yet</li>'; return; }
  const viewing = st.detail && st.detail.id;
  st.results.slice(0, 12).forEach((r, i) => {
    const c = classify(r);
    const li = document.createElement("li");
    const btn = document.createElement("button");
    btn.type = "button"; btn.className = "btn" + (r.id === viewing ? " sel" : ""); btn.dataset.id = r.id;
    btn.innerHTML = `<span class="sw prio-${c.prio}"></span><span></span>`;
    btn.lastChild.textContent = `${fmtTime(r.time)}  ${c.label}`;
    btn.addEventListener("click", () => { st.selectedId = i === 0 ? null : r.id; showResult(r.id).then(renderProbs); });
    li.appendChild(btn); ul.appendChild(li);
  });
}
function renderPatient() {
  const p = Object.assign({}, st.patient || {});
  if (p.age === "unknown") p.age = null;
  if (p.sex === "unknown") p.sex = null;
  const parts = [];
  parts.push(p.age === null || p.age === undefined ? "age unknown" : `${Math.round(p.age)} y`);
  parts.push(p.sex ? p.sex : "sex unknown");
  $("patient-now").textContent = "Patient: " + parts.join(", ");
  $("patient-now").dataset.age = p.age ?? ""; $("patient-now").dataset.sex = p.sex ?? "";
}
function renderHr() {
  const hr = st.heartRate;
  // No live signal: a heart rate from before would be a stale number, so show none.
  $("hr").textContent = (!st.stale && typeof hr === "number" && isFinite(hr)) ? Math.round(hr) : "--";
  const rh = st.latest && st.latest.rhythm;
  $("rhythm").textContent = (!st.stale && rh && rh.label) ? rh.label : "rhythm --";
}

/* ------------------------------------------------------------------ events */
function onResult(summary) {
  st.results = [summary].concat(st.results.filter(r => r.id !== summary.id)).slice(0, 50);
  st.latest = summary;
  if (!classify(summary).tech) st.lastClinical = summary;
  const hr = summary.heart_rate_bpm ?? summary.heart_rate;
  if (typeof hr === "number") st.heartRate = hr;
  for (const a of (summary.alarms || []).concat(summary.alarm ? [summary.alarm] : [])) {
    if (a && a.id && !st.alarms.has(String(a.id))) st.alarms.set(String(a.id), Object.assign({ result_id: summary.id }, a));
  }
  if (st.selectedId === null) showResult(summary.id).then(renderProbs);
  renderBanner(); renderHistory(); renderHr(); renderTech(); renderAlarms();
}
function applyStatus(s) {
  st.status = s;
  st.electrodes = s.electrodes || {}; st.leads = s.leads || {}; st.quality = s.quality;
  if (s.heart_rate !== undefined && s.heart_rate !== null) st.heartRate = s.heart_rate;
  if (s.patient) st.patient = s.patient;
  for (const a of s.alarms || []) st.alarms.set(String(a.id), a);
  noteReview(s.last_review);
  renderElectrodes(); renderHr(); renderPatient(); renderAlarms(); renderStation();
}
function connect() {
  const es = new EventSource("/api/live");
  const on = (name, fn) => es.addEventListener(name, ev => {
    const t0 = performance.now();
    perf.msgs++;
    try { fn(JSON.parse(ev.data)); } catch (e) { console.error(name, e); }
    perf.msgMsTotal += performance.now() - t0;
  });
  on("hello", async d => {
    st.connected = true;
    applyStatus(d.status);
    if (d.strip) ingest(Object.assign({}, d.strip, { reset: true }));
    try {
      const [res, al] = await Promise.all([api("GET", "/api/results?limit=20"), api("GET", "/api/alarms")]);
      for (const a of al.alarms || []) st.alarms.set(String(a.id), a);
      st.results = res.results || [];
      st.latest = st.results[0] || null;
      st.lastClinical = st.results.find(r => !classify(r).tech) || null;
      if (st.latest && st.selectedId === null) await showResult(st.latest.id);
      renderProbs(); renderBanner(); renderHistory(); renderAlarms(); renderTech();
    } catch (e) { console.error(e); }
  });
  on("samples", d => ingest(d));
  on("result", d => onResult(d));
  on("quality", d => {
    st.quality = d.quality; st.electrodes = d.electrodes || st.electrodes; st.leads = d.leads || st.leads;
    if (d.heart_rate !== undefined && d.heart_rate !== null) st.heartRate = d.heart_rate;
    renderElectrodes(); renderHr();
  });
  on("electrodes", d => { st.electrodes = d.electrodes || {}; st.leads = d.leads || st.leads; renderElectrodes(); });
  on("heart_rate", d => { st.heartRate = d; renderHr(); });
  on("alarm", d => { st.alarms.set(String(d.id), d); renderAlarms(); renderBanner(); });
  on("patient", d => { st.patient = d; renderPatient(); });
  on("status", d => { st.daemon = d; });
  on("feedback", d => onFeedback(d));
  on("resync", d => applyStatus(d));
  es.onerror = () => { st.connected = false; renderTech(); };
  es.onopen = () => { st.connected = true; renderTech(); };
  st.es = es;
}

/* ------------------------------------------------------------------ patient form */
function setFormSex(s) {
  st.formSex = s;
  document.querySelectorAll(".btn-sex").forEach(b => b.classList.toggle("sel", b.dataset.sex === (s ?? "\u0000")));
}
function setupForm() {
  const msg = (t, ok) => { const m = $("patient-msg"); m.textContent = t; m.className = "form-msg " + (ok ? "ok" : "err"); };
  document.querySelectorAll(".btn-sex").forEach(b => b.addEventListener("click", () => setFormSex(b.dataset.sex)));
  document.querySelectorAll(".btn-step").forEach(b => b.addEventListener("click", () => {
    const inp = $("age"); const v = inp.value === "" ? (st.patient.age ?? 50) : +inp.value;
    inp.value = Math.max(0, Math.min(130, Math.round(v + +b.dataset.step)));
  }));
  $("patient-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = {};
    const raw = $("age").value.trim();
    if (raw !== "") {
      const a = Number(raw);
      if (!Number.isFinite(a) || a < 0 || a > 130) { msg("Age must be 0–130 years", false); return; }
      body.age = a;
    }
    if (st.formSex !== undefined) body.sex = st.formSex === "" ? null : st.formSex;
    if (!Object.keys(body).length) { msg("Enter an age or choose a sex", false); return; }
    try {
      const res = await api("POST", "/api/patient", body);
      st.patient = res.patient; renderPatient();
      msg("Applied — used from the next result", true);
    } catch (e) { msg(e.message, false); }
  });
  let armed = 0;
  $("new-patient").addEventListener("click", async () => {
    const btn = $("new-patient");
    if (Date.now() - armed > 4000) {
      armed = Date.now(); btn.textContent = "Tap again to clear";
      setTimeout(() => { if (Date.now() - armed >= 4000) btn.textContent = "New patient"; }, 4100);
      return;
    }
    armed = 0; btn.textContent = "New patient";
    try {
      const res = await api("DELETE", "/api/patient");
      st.patient = res.patient; renderPatient();
      $("age").value = ""; setFormSex(undefined);
      msg("New patient: age and sex cleared", true);
    } catch (e) { msg(e.message, false); }
  });
  $("banner-ack").addEventListener("click", () => { const id = $("banner-ack").dataset.alarm; if (id) ackAlarm(id); });
}

/* ------------------------------------------------------------------ start */
window.addEventListener("resize", () => { st.resized = true; drawResult(); });
if (window.ResizeObserver) new ResizeObserver(() => { st.resized = true; }).observe(document.querySelector(".live-wrap"));
setupForm();
renderElectrodes(); renderPatient(); renderBanner(); drawResult();
setInterval(renderTech, 1000);
connect();
requestAnimationFrame(frame);
