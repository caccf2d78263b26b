// The results table of the worklist and of history/search.
"use strict";
function resultsTable(rows) {
  const E = ECG.el;
  const t = E("table", { id: "results" }, E("thead", {}, E("tr", {},
    ...["Priority", "Findings", "Device", "Acquired", "Received", "Delay", "HR", "Quality", "Review"].map(h => E("th", { text: h })))));
  const tb = E("tbody");
  for (const r of rows) {
    const cls = ["row", r.suspected_mi && !r.reviewed ? "mi" : "", r.reviewed ? "reviewed" : ""].join(" ");
    const tr = E("tr", { class: cls, "data-result-id": r.result_id, onclick: () => { location.href = "/cases/" + encodeURIComponent(r.result_id); } },
      E("td", {}, ECG.badge(r.priority, "b-" + r.priority)),
      E("td", {}, r.suspected_mi ? E("strong", { text: "Suspected MI " }) : null,
        r.triage_level === "cannot_interpret" ? E("span", { class: "muted", text: "cannot interpret" }) : (r.findings.join(", ") || "no finding")),
      E("td", { text: r.device_id }),
      E("td", { text: ECG.time(r.acquired_at) }),
      E("td", { text: ECG.time(r.received_at) }),
      E("td", {}, ECG.delay(r.delay_s), r.historical ? E("span", { class: "muted", text: " (late)" }) : null),
      E("td", { text: r.heart_rate_bpm ? Math.round(r.heart_rate_bpm) + " bpm" : "\u2014" }),
      E("td", { text: r.quality || "\u2014" }),
      E("td", {}, r.reviewed ? ECG.badge(r.verdict.replace("_", " "), "b-" + r.verdict) : E("span", { class: "muted", text: "unreviewed" })));
    tb.append(tr);
  }
  t.append(tb);
  return t;
}
