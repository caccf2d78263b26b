"use strict";
(async () => {
  await ECG.init("/devices");
  const E = ECG.el;
  const q = v => v === null || v === undefined ? "\u2014" : (typeof v === "object" ? (v.verdict || v.state || JSON.stringify(v)) : String(v));
  async function refresh() {
    const j = await ECG.api("/api/v1/devices");
    const online = j.devices.filter(d => d.online).length;
    document.getElementById("count").textContent = `(${online} online of ${j.devices.length})`;
    const t = E("table", { id: "devices" }, E("tr", {}, ...["Device", "Status", "Last seen", "Software", "Model", "Rollout", "Outbox", "Front end", "Signal", "Results"].map(h => E("th", { text: h }))));
    for (const d of j.devices) {
      t.append(E("tr", { class: "row", "data-device-id": d.device_id, onclick: () => { location.href = "/devices/" + encodeURIComponent(d.device_id); } },
        E("td", { text: d.device_id }), E("td", {}, ECG.badge(d.online ? "online" : "offline", d.online ? "b-online" : "b-offline")),
        E("td", { text: ECG.ago(d.last_seen) }), E("td", { text: d.software_version || "\u2014" }), E("td", { text: d.model_version || "\u2014" }),
        E("td", { text: d.rollout ? `${d.rollout.command}: ${d.rollout.state}${d.rollout.version ? " " + d.rollout.version : ""}` : "\u2014" }),
        E("td", { text: d.outbox_depth ?? "\u2014" }), E("td", { text: q(d.frontend_status) }), E("td", { text: q(d.signal_quality) }), E("td", { text: d.results })));
    }
    document.getElementById("list").replaceChildren(t);
    if (ECG.me.permissions.includes("admin_fleet")) {
      const qz = await ECG.api("/api/v1/quarantine?limit=20");
      const box = E("div", { class: "card" }, E("h2", { text: `Quarantined messages: ${qz.total}` }),
        E("p", { class: "muted", text: (Object.entries(qz.by_reason).map(([k, v]) => k + " " + v).join(", ") || "none")
          + (qz.not_stored ? `; ${qz.not_stored} more refused but not stored (flood limit)` : "") }),
        E("p", { class: "muted", text: "Ingest workers: " + qz.workers.map(w => `${w.client_id}@${w.host} ${w.subscribed ? "subscribed" : "NOT subscribed"}, last heartbeat ${ECG.ago(w.heartbeat_at)}, stored ${(w.counters || {}).stored ?? 0}`).join("; ") }));
      if (qz.items.length) box.append(E("table", { id: "quarantine" }, E("tr", {}, ...["When", "Topic", "Reason", "Detail"].map(h => E("th", { text: h }))),
        ...qz.items.map(x => E("tr", {}, E("td", { text: ECG.time(x.received_at) }), E("td", { text: x.topic }), E("td", { text: x.reason }), E("td", { text: x.detail.slice(0, 200) })))));
      document.getElementById("admin").replaceChildren(box);
    }
  }
  await refresh();
  ECG.live(refresh, ["devices", "online", "quarantine"]);
})();
