"use strict";
document.getElementById("login").addEventListener("submit", async ev => {
  ev.preventDefault();
  const msg = document.getElementById("msg"); msg.textContent = "";
  try {
    const c = await (await fetch("/auth/csrf", { credentials: "same-origin" })).json();
    const r = await fetch("/auth/login", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": c.csrf_token },
      body: JSON.stringify({ username: document.getElementById("username").value,
                             password: document.getElementById("password").value }) });
    const j = await r.json();
    if (!r.ok) { msg.textContent = j.detail || ("sign-in failed: " + r.status); return; }
    location.href = j.role === "fleet_admin" ? "/devices" : "/worklist";
  } catch (e) { msg.textContent = "sign-in failed: " + e.message; }
});
