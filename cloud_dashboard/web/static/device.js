"use strict";
(async () => {
  await ECG.init("/devices");
  const E = ECG.el, id = decodeURIComponent(location.pathname.split("/").pop()), NS = "http://www.w3.org/2000/svg";
  function spark(label, ts, ys, unit, lo, hi) {          // a 24 h time series as an SVG polyline
    const W = 720, H = 90, now = Date.now(), t0 = now - 24 * 3600e3;
    const pts = ts.map((t, i) => [new Date(t).getTime(), ys[i]]).filter(p => p[1] !== null && p[1] !== undefined);
    const vals = pts.map(p => p[1]); const min = lo ?? Math.min(0, ...vals), max = hi ?? Math.max(1, ...vals);
    const svg = document.createElementNS(NS, "svg"); svg.setAttribute("class", "spark"); svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("data-series", label);
    const line = document.createElementNS(NS, "polyline"); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2f6fbf"); line.setAttribute("stroke-width", "1.5");
    line.setAttribute("points", pts.map(([t, y]) => `${((t - t0) / 864e5 * W).toFixed(1)},${(H - 4 - (y - min) / (max - min || 1) * (H - 8)).toFixed(1)}`).join(" "));
    svg.append(line);
    return E("div", {}, E("strong", { text: label }), E("span", { class: "muted", text: ` ${pts.length} samples; range ${min}..${max} ${unit}; last ${vals.length ? vals[vals.length - 1] : "\u2014"}` }), E("br"), svg);
  }
  async function refresh() {
    const d = await ECG.api("/api/v1/devices/" + encodeURIComponent(id));
    document.getElementById("title").replaceChildren(d.device_id, " ", ECG.badge(d.online ? "online" : "offline", d.online ? "b-online" : "b-offline"));
    const fmt = v => v === null || v === undefined ? "\u2014" : typeof v === "object" ? (v.verdict || v.state || JSON.stringify(v)) : String(v);
    const row = (k, v) => E("tr", {}, E("th", { text: k }), E("td", { text: fmt(v) }));
    document.getElementById("facts").replaceChildren(E("table", {}, row("Last seen", ECG.time(d.last_seen) + " (" + ECG.ago(d.last_seen) + ")"),
      row("Online/offline since", ECG.time(d.availability_at)), row("Software", d.software_version), row("Model", d.model_version ? `${d.model_version} (sha256 ${(d.model_sha256 || "").slice(0, 12)}\u2026)` : null),
      row("Model rollout", d.rollout ? `${d.rollout.command}: ${d.rollout.state} ${d.rollout.error_code || ""} ${ECG.time(d.rollout.at)}` : "none seen"),
      row("Outbox depth", d.outbox_depth), row("Front end", d.frontend_status), row("Signal quality", d.signal_quality),
      row("CPU / temperature", `${d.cpu_percent ?? "\u2014"} % / ${d.temperature_c ?? "\u2014"} \u00b0C`), row("Config version", d.config_version)));
    const s = d.series;
    document.getElementById("plots").replaceChildren(spark("Signal quality (1 good, 0.5 acceptable, 0 unusable)", s.t, s.quality, "", 0, 1),
      spark("Outbox depth", s.t, s.outbox_depth, "msgs"), spark("CPU", s.t, s.cpu_percent, "%", 0, 100), spark("Temperature", s.t, s.temperature_c, "\u00b0C"));
    document.getElementById("replies").replaceChildren(d.replies.length ? E("table", {}, E("tr", {}, ...["When", "Command", "OK", "Error"].map(h => E("th", { text: h }))),
      ...d.replies.map(r => E("tr", {}, E("td", { text: ECG.time(r.at) }), E("td", { text: r.command }), E("td", { text: r.ok ? "yes" : "no" }), E("td", { text: r.error_code || "" }))))
      : E("p", { class: "muted", text: "No command replies seen. Roll out models with `ecg-fleet rollout`." }));
  }
  await refresh();
  ECG.live(refresh, ["devices", "online"]);
})();
