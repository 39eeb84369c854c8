// What every panel page shares: the CSRF header on writes, logout, the login and setup
// forms, local times and live ages. Plain JS, no build step.
"use strict";
const Panel = (() => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  // A JSON request with the session's CSRF token; resolves to {ok, status, body}.
  async function send(method, url, body) {
    const headers = { "x-csrf-token": csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let parsed = null;
    const text = await r.text();
    try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = text; }
    return { ok: r.ok, status: r.status, body: parsed };
  }

  function errorText(res) {
    if (res.body && res.body.error) return res.body.error;
    return "request failed (HTTP " + res.status + ")";
  }

  const pad = (n) => String(n).padStart(2, "0");
  // Local time, to the second; with the date when not today.
  function time(ms) {
    if (!ms) return "–";
    const d = new Date(ms);
    const t = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return t;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + t;
  }

  function age(ms) {
    if (!ms) return "–";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  // <time data-ms> shows local time; [data-age] shows the age of its ms value, kept fresh.
  function refreshTimes(root) {
    root.querySelectorAll("time[data-ms]").forEach((el) => {
      el.textContent = time(Number(el.dataset.ms));
    });
  }
  function refreshAges() {
    document.querySelectorAll("[data-age]").forEach((el) => {
      el.textContent = age(Number(el.dataset.age));
    });
  }

  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  // Saves rows (arrays) as a CSV file named `name`.
  function downloadCsv(name, rows) {
    const text = rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 0);
  }

  function nextPage() {
    const next = new URLSearchParams(location.search).get("next");
    // Only a path on this site: never an open redirect.
    return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
  }

  async function login(form) {
    const out = form.querySelector(".error");
    out.textContent = "";
    const res = await send("POST", form.action, {
      username: form.username.value, password: form.password.value,
    });
    if (res.ok) { location.assign(nextPage()); return; }
    out.textContent = res.status === 401 ? "Wrong username or password." : errorText(res);
  }

  async function setup(form) {
    const out = form.querySelector(".error");
    out.textContent = "";
    if (form.password.value !== form.confirm.value) {
      out.textContent = "The two passwords differ.";
      return;
    }
    const token = new URLSearchParams(location.search).get("token") || form.setup_token.value;
    const res = await send("POST", form.action, {
      setup_token: token, username: form.username.value, password: form.password.value,
    });
    if (!res.ok) { out.textContent = errorText(res); return; }
    const logged = await send("POST", form.dataset.login, {
      username: form.username.value, password: form.password.value,
    });
    location.assign(logged.ok ? "/" : "/login");
  }

  document.addEventListener("DOMContentLoaded", () => {
    refreshTimes(document);
    refreshAges();
    setInterval(refreshAges, 1000);
    document.querySelectorAll("form[data-auth]").forEach((form) => {
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        (form.dataset.auth === "setup" ? setup : login)(form);
      });
    });
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", async () => {
      await send("POST", out.dataset.url);
      location.assign("/login");
    });
  });

  return { csrf, send, errorText, time, age, refreshTimes, downloadCsv };
})();
