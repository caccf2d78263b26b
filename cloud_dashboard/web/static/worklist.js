"use strict";
(async () => {
  await ECG.init("/worklist");
  async function refresh() {
    const j = await ECG.api("/api/v1/results?order=worklist&limit=200");
    const unrev = j.results.filter(r => !r.reviewed).length;
    document.getElementById("count").textContent = "(" + j.total + (j.total_is_lower_bound ? "+" : "") + " results, " + unrev + " unreviewed shown)";
    document.getElementById("list").replaceChildren(resultsTable(j.results));
  }
  await refresh();
  ECG.live(refresh, ["results", "reviews"]);
})();
