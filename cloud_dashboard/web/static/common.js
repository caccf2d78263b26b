// Shared by every page: the session (who am I, CSRF token), the JSON API, the header, live updates (SSE).
"use strict";
const ECG = {
  me: null,
  NOTICE: "Triage aid, not a diagnosis. A clinician must read the ECG.",
  async api(path, opts = {}) {
    opts.headers = Object.assign({ "Accept": "application/json" }, opts.headers || {});
    if (opts.body && typeof opts.body !== "string") {
      opts.body = JSON.stringify(opts.body);
      opts.headers["Content-Type"] = "application/json";
    }
    if (opts.method && opts.method !== "GET" && ECG.me) opts.headers["X-CSRF-Token"] = ECG.me.csrf_token;
    opts.credentials = "same-origin";
    const r = await fetch(path, opts);
    if (r.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const j = await r.json(); msg = j.detail ? (typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail)) : msg; } catch (e) {}
      throw new Error(msg);
    }
    return r.json();
  },
  el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k.nodeType ? k : document.createTextNode(String(k)));
    return e;
  },
  time(iso) { if (!iso) return "\u2014"; const d = new Date(iso); return d.toLocaleString(undefined, { hour12: false }); },
  ago(iso) {
    if (!iso) return "\u2014"; const s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (s < 90) return Math.round(s) + " s ago"; if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago"; return Math.round(s / 86400) + " d ago";
  },
  delay(s) { if (s === null || s === undefined) return "\u2014"; return s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h"; },
  badge(text, cls) { return ECG.el("span", { class: "badge " + (cls || ""), text }); },
  async init(active) {
    ECG.me = await ECG.api("/api/v1/me");
    const nav = [["/worklist", "Worklist", "read_results"], ["/history", "History & search", "read_results"],
                 ["/devices", "Devices", "read_devices"]];
    const h = ECG.el("header", {}, ECG.el("strong", { text: ECG.me.station }));
    for (const [href, label, perm] of nav) if (ECG.me.permissions.includes(perm))
      h.append(ECG.el("a", { href, class: href === active ? "active" : "", text: label }));
    ECG.liveEl = ECG.el("span", { class: "live", text: "live" });
    h.append(ECG.el("span", { class: "who" }, ECG.liveEl, "  ", ECG.me.display_name + " (" + ECG.me.role + ")  ",
      ECG.el("button", { id: "logout", text: "Log out", onclick: async () => {
        await ECG.api("/auth/logout", { method: "POST" }); location.href = "/login"; } })));
    document.body.prepend(h, ECG.el("div", { class: "notice", text: ECG.NOTICE }));
  },
  // Re-run `refresh` whenever the station's data changes (Server-Sent Events from /api/v1/live).
  live(refresh, keys) {
    const es = new EventSource("/api/v1/live");
    let last = null;
    es.addEventListener("change", ev => {
      const v = JSON.parse(ev.data); const sig = JSON.stringify(keys ? keys.map(k => v[k]) : v);
      if (last !== null && sig !== last) refresh(v);
      last = sig;
    });
    es.onopen = () => ECG.liveEl && ECG.liveEl.classList.add("on");
    es.onerror = () => ECG.liveEl && ECG.liveEl.classList.remove("on");
    return es;
  },
};
