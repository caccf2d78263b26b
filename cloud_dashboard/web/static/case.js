"use strict";
(async () => {
  await ECG.init("/worklist");
  const E = ECG.el, id = decodeURIComponent(location.pathname.split("/").pop());
  let raw = false, svg = null, current = null;
  async function load() {
    const c = await ECG.api("/api/v1/results/" + encodeURIComponent(id));
    const r = c.result;
    document.title = (c.suspected_mi ? "Suspected MI - " : "") + c.device_id + " - case";
    document.getElementById("title").replaceChildren(c.suspected_mi ? E("span", { class: "badge b-high", text: "Suspected MI" }) : ECG.badge(c.priority, "b-" + c.priority),
      " ", c.device_id, " \u2014 ", ECG.time(c.acquired_at));
    document.getElementById("sub").textContent = `received ${ECG.time(c.received_at)} (delay ${ECG.delay(c.delay_s)}${c.historical ? ", late arrival" : ""}) \u00b7 triage level ${c.triage_level} \u00b7 model ${c.model_version}`;
    // ECG
    const findings = (r.explanation && r.explanation.findings) || [];
    const chips = document.getElementById("chips"); chips.replaceChildren();
    const ecg = document.getElementById("ecg");
    if (c.strip) {
      svg = drawEcg(c.strip, { raw }); ecg.replaceChildren(svg);
      const pick = f => { current = f; svg.highlight(f); for (const b of chips.querySelectorAll("button.cam")) b.classList.toggle("on", b.dataset.cls === (f && f.cls)); };
      chips.append(E("span", { class: "muted", text: "Grad-CAM highlights: " }));
      for (const f of findings) chips.append(E("button", { class: "cam", "data-cls": f.cls, text: f.cls + " " + Math.round(f.probability * 100) + "%", onclick: () => pick(current === f ? null : f) }));
      chips.append(E("button", { text: raw ? "show filtered" : "show raw", onclick: () => { raw = !raw; load(); } }));
      pick(current ? findings.find(f => f.cls === current.cls) : findings[0] || null);
      document.getElementById("ecgnote").textContent = `25 mm/s, 10 mm/mV, ${c.strip.fs} Hz, ${c.strip.n_samples} samples; ${raw ? "raw samples" : "display filter: zero-phase 0.5 Hz high-pass"}; measured leads ${c.strip.measured_leads.join(", ")}, III/aVR/aVL/aVF derived. Orange: where the model looked (darker on its most important leads).`;
    } else {
      ecg.replaceChildren(E("p", { class: "muted", text: "No 12-lead strip received for this result (the device may send it later, or strips are off on a metered link)." }));
    }
    // probabilities vs thresholds
    const probs = r.probabilities || {};
    const pt = E("table", { id: "probabilities" }, E("tr", {}, E("th", { text: "Class" }), E("th", { text: "p" }), E("th", { text: "threshold" }), E("th", { text: "" })));
    for (const [cls, p] of Object.entries(probs)) {
      const thr = c.thresholds[cls]; const above = thr !== undefined && thr !== null && p >= thr;
      const bar = E("div", { class: "probbar" }, E("div", { class: "fill" + (above ? " above" : "") }));
      bar.firstChild.style.width = (p * 100).toFixed(1) + "%";
      if (thr !== undefined && thr !== null) { const m = E("div", { class: "thr", title: "threshold " + thr }); m.style.left = (thr * 100).toFixed(1) + "%"; bar.append(m); }
      pt.append(E("tr", {}, E("td", {}, above ? E("strong", { text: cls }) : cls), E("td", { text: p.toFixed(3) }), E("td", { text: thr === undefined || thr === null ? "\u2014" : thr.toFixed(3) }), E("td", {}, bar)));
    }
    document.getElementById("probs").replaceChildren(Object.keys(probs).length ? pt : E("p", { class: "err", text: "Cannot interpret: " + ((r.quality && r.quality.reasons) || []).join("; ") }));
    document.getElementById("summary").textContent = (r.explanation && r.explanation.summary) || "";
    // facts
    const pat = r.patient || {};
    document.getElementById("facts").replaceChildren(E("table", {},
      E("tr", {}, E("th", { text: "Heart rate" }), E("td", { text: c.heart_rate_bpm ? Math.round(c.heart_rate_bpm) + " bpm" : "\u2014" })),
      E("tr", {}, E("th", { text: "Rhythm (device's live monitor)" }), E("td", { id: "rhythm", text: (r.rhythm && r.rhythm.label) || "\u2014" })),
      E("tr", {}, E("th", { text: "Age / sex" }), E("td", { text: `${pat.age ?? "unknown"} / ${pat.sex ?? "unknown"}` })),
      E("tr", {}, E("th", { text: "Signal quality" }), E("td", { text: (r.quality && r.quality.verdict) || "\u2014" })),
      E("tr", {}, E("th", { text: "Device" }), E("td", {}, E("a", { href: "/devices/" + encodeURIComponent(c.device_id), text: c.device_id }))),
      E("tr", {}, E("th", { text: "Alarms" }), E("td", { text: (r.alarms || []).map(a => a.code).join(", ") || "none" }))));
    const q = (r.quality && r.quality.per_lead) || {};
    const qt = E("table", {}, E("tr", {}, ...["Lead", "Verdict", "Noise (uV)", "Amplitude (uV)", "Flags"].map(h => E("th", { text: h }))));
    for (const [name, v] of Object.entries(q)) qt.append(E("tr", {}, E("td", { text: name }), E("td", { text: v.verdict }), E("td", { text: v.noise_uv == null ? "\u2014" : v.noise_uv.toFixed(1) }), E("td", { text: v.amplitude_uv == null ? "\u2014" : v.amplitude_uv.toFixed(0) }), E("td", { text: (v.flags || []).join(", ") })));
    document.getElementById("quality").replaceChildren(qt);
    // reviews
    const rv = document.getElementById("reviews"); rv.replaceChildren();
    for (const x of c.reviews) rv.append(E("p", { class: "review" }, ECG.badge(x.verdict.replace("_", " "), "b-" + x.verdict), ` by ${x.reviewer}, ${ECG.time(x.reviewed_at)}`,
      x.text ? E("br") : null, x.text || null, E("br"), E("span", { class: "muted", text: x.sent_to_device_at ? "sent to the crew " + ECG.time(x.sent_to_device_at) : "waiting to be sent to the crew" })));
    if (!c.reviews.length) rv.append(E("p", { class: "muted", text: "Not reviewed yet." }));
    const rf = document.getElementById("reviewform");
    if (ECG.me.permissions.includes("review") && !rf.firstChild) {
      const f = E("form", { id: "review", class: "verdicts" },
        ...[["confirmed", "Confirmed"], ["not_confirmed", "Not confirmed"], ["repeat_ecg", "Repeat ECG"]].map(([v, l]) =>
          E("label", {}, E("input", { type: "radio", name: "verdict", value: v, required: "" }), " " + l)),
        E("textarea", { name: "text", rows: 3, maxlength: 2000, placeholder: "Message to the crew (optional)", class: "wide" }),
        E("p", {}, E("button", { class: "primary", type: "submit", id: "submit-review", text: "Send review to the crew" })), E("p", { id: "reviewmsg" }));
      f.addEventListener("submit", async ev => {
        ev.preventDefault();
        try { await ECG.api("/api/v1/results/" + encodeURIComponent(id) + "/review", { method: "POST", body: { verdict: f.elements.verdict.value, text: f.elements.text.value || null } });
          f.reset(); document.getElementById("reviewmsg").textContent = "Review stored; it is sent to the device."; await load();
        } catch (e) { document.getElementById("reviewmsg").textContent = "Not stored: " + e.message; }
      });
      rf.append(f);
    }
    document.getElementById("delivery").replaceChildren(E("ul", {}, ...c.messages.map(m => E("li", { text: `${m.kind} stored ${ECG.time(m.stored_at)}` }))),
      E("p", {}, E("a", { href: "/api/v1/results/" + encodeURIComponent(id) + "/export", id: "export", text: "Download case (WFDB + JSON)" })));
  }
  await load();
  ECG.live(() => load(), ["reviews", "results"]);
})();
