"use strict";
(async () => {
  await ECG.init("/worklist");
  async function refresh() {
    const j = await ECG.api("/api/v1/results?order=worklist&limit=200");
    const unrev = j.results.filter(r => !r.reviewed).length;
    document.getElementById("count").textContent = "(" + j.total + (j.total_is_lower_bound ? "+" : "") + " results, " + unrev + " unreviewed shown)";
    document.getElementById("list").replaceChildren(resultsTable(j.results));
  }
  async function alarms() {               // the crews' alarms of the last 30 minutes, newest first
    const j = await ECG.api("/api/v1/alarms?minutes=30&kind=physiological");
    const E = ECG.el, box = document.getElementById("alarms");
    if (!j.alarms.length) { box.replaceChildren(); return; }
    box.replaceChildren(E("div", { class: "card alarms" }, E("h2", { text: "Alarms from the field (last 30 min)" }),
      E("table", { id: "alarm-table" }, ...j.alarms.map(a => E("tr", { class: a.priority === "high" ? "mi" : "", "data-device-id": a.device_id },
        E("td", {}, ECG.badge(a.priority, "b-" + a.priority)), E("td", { text: a.code }), E("td", { text: a.device_id }),
        E("td", { text: ECG.time(a.time) + (a.historical ? " (late)" : "") }), E("td", { text: a.message || "" }))))));
  }
  await refresh();
  await alarms();
  ECG.live(refresh, ["results", "reviews"]);
  ECG.live(alarms, ["alarms"]);
})();
