"use strict";
(async () => {
  await ECG.init("/history");
  const form = document.getElementById("search");
  const params = new URLSearchParams(location.search);
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  async function run() {
    const q = new URLSearchParams({ order: "recent", limit: "500" });
    for (const el of form.elements) {
      if (!el.name || !el.value) continue;
      q.set(el.name, el.type === "datetime-local" ? new Date(el.value).toISOString() : el.value);
    }
    const j = await ECG.api("/api/v1/results?" + q);
    document.getElementById("count").textContent = j.total + (j.total_is_lower_bound ? "+" : "") + " matching results" + (j.total > j.results.length ? " (newest " + j.results.length + " shown)" : "");
    document.getElementById("list").replaceChildren(resultsTable(j.results));
  }
  form.addEventListener("submit", ev => { ev.preventDefault(); run().catch(e => alert(e.message)); });
  await run();
  ECG.live(run, ["results", "reviews"]);
})();
