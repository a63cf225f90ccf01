// The dashboard's login: sends the token once, gets an HttpOnly session cookie, reloads into the dashboard.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("login-error");
  out.textContent = "";
  const token = document.getElementById("token").value.trim();
  if (!token) {
    out.textContent = "Paste the node's admin token.";
    return;
  }
  try {
    const r = await fetch("/dashboard/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    if (r.status === 204) {
      location.reload();
      return;
    }
    const doc = await r.json().catch(() => null);
    out.textContent = (doc && doc.error && doc.error.message) || ("login failed: HTTP " + r.status);
  } catch (e) {
    out.textContent = "cannot reach the node: " + e;
  }
});
