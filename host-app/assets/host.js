// The host panel's live pages: values and states from /api/events without reload,
// writes that wait for their echo in DATA, Rebirth requests, the users and tokens forms
// and the audit filter's local times. Needs panel.js.
"use strict";
(() => {
  // How long a write waits for the new value to come back before saying so.
  const CONFIRM_MS = 10000;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const keyOf = (e) => e.device ? `${e.group}/${e.node}/${e.device}:${e.metric}`
    : `${e.group}/${e.node}:${e.metric}`;
  // As the server writes values (panel::value_text): Float to 7 significant digits.
  const text = (v, datatype) => v === null || v === undefined ? "–"
    : typeof v === "string" ? v
    : typeof v === "number" && !Number.isInteger(v)
      ? String(Number(v.toPrecision(datatype === "Float" ? 7 : 12)))
      : JSON.stringify(v);
  const qualityText = (q) => q === 192 ? "GOOD" : q === 500 ? "STALE" : q === 0 ? "BAD" : "OTHER";

  function setBadge(el, state) {
    if (!el) return;
    el.textContent = state;
    el.className = "badge state " + state.toLowerCase();
  }
  function setSince(timeEl, ageEl, ts) {
    if (timeEl) { timeEl.dataset.ms = ts; timeEl.textContent = Panel.time(ts); }
    if (ageEl) { ageEl.dataset.age = ts; ageEl.textContent = Panel.age(ts); }
  }

  // ---- writes: sent, then done only when the value comes back ----
  const pending = new Map(); // key -> {value, timer, name}
  const status = (msg, bad) => {
    const out = $("#write-status");
    if (!out) return;
    out.textContent = msg;
    out.className = bad ? "error" : "notice";
  };
  function same(a, b) {
    if (typeof a === "number" && typeof b === "number") {
      return a === b || Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b));
    }
    return JSON.stringify(a) === JSON.stringify(b);
  }
  function confirmWrite(key, value) {
    const p = pending.get(key);
    if (!p || !same(p.value, value)) return;
    clearTimeout(p.timer);
    pending.delete(key);
    status(`done: ${p.name} = ${text(value, p.datatype)} (confirmed by the edge node)`);
  }

  function parseValue(raw, datatype, low, high) {
    const t = raw.trim();
    if (datatype === "Boolean") {
      if (/^(true|1|on)$/i.test(t)) return { value: true };
      if (/^(false|0|off)$/i.test(t)) return { value: false };
      return { error: "Enter true or false." };
    }
    if (datatype === "String" || datatype === "Text") return { value: raw };
    const n = Number(t);
    if (t === "" || !Number.isFinite(n)) return { error: "Enter a number." };
    if (/Int/.test(datatype) && !Number.isInteger(n)) return { error: "Enter a whole number." };
    if (/^UInt/.test(datatype) && n < 0) return { error: "Enter a number of 0 or more." };
    if (low !== "" && high !== "" && (n < Number(low) || n > Number(high))) {
      return { error: `Outside the limits ${low} to ${high}.` };
    }
    return { value: n };
  }

  function setupWrites(page) {
    const dialog = $("#write-dialog");
    if (!dialog) return;
    let row = null;
    $$("button.write", page).forEach((btn) => btn.addEventListener("click", () => {
      row = btn.closest("tr");
      const d = btn.dataset;
      $("#w-name").textContent = row.dataset.name;
      $("#w-current").textContent = text(JSON.parse(d.value), d.datatype);
      $("#w-datatype").textContent = d.datatype;
      $("#w-units").textContent = d.units || "–";
      $("#w-limits").textContent = d.low !== "" ? `${d.low} to ${d.high}` : "none given";
      $("#w-error").textContent = "";
      $("#w-value").value = "";
      $("#w-value").placeholder = d.datatype === "Boolean" ? "true or false" : "";
      dialog.showModal();
      $("#w-value").focus();
    }));
    $("#w-cancel").addEventListener("click", () => dialog.close());
    $("#write-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const btn = $("button.write", row);
      const parsed = parseValue($("#w-value").value, btn.dataset.datatype, btn.dataset.low, btn.dataset.high);
      if (parsed.error) { $("#w-error").textContent = parsed.error; return; }
      const body = { group: page.dataset.group, node: page.dataset.node, metric: row.dataset.name, value: parsed.value };
      if (page.dataset.device) body.device = page.dataset.device;
      const key = row.dataset.key, name = row.dataset.name;
      const old = pending.get(key);
      if (old) clearTimeout(old.timer);
      // Waiting starts before sending: the echo may overtake the answer to the POST.
      const timer = setTimeout(() => {
        pending.delete(key);
        status(`sent, not confirmed: ${name} = ${text(parsed.value)} did not come back within ${CONFIRM_MS / 1000} s`, true);
      }, CONFIRM_MS);
      const entry = { value: parsed.value, timer, name, datatype: btn.dataset.datatype };
      pending.set(key, entry);
      $("#w-confirm").disabled = true;
      const res = await Panel.send("POST", "/api/write", body);
      $("#w-confirm").disabled = false;
      if (!res.ok) {
        clearTimeout(timer);
        if (pending.get(key) === entry) pending.delete(key);
        $("#w-error").textContent = Panel.errorText(res);
        return;
      }
      dialog.close();
      if (pending.get(key) !== entry) return; // already confirmed
      status(`sent: ${name} = ${text(parsed.value)}, waiting for the edge node…`);
    });
  }

  // ---- the tag table ----
  function tagsPage(page) {
    const rows = new Map($$("tr[data-key]", page).map((tr) => [tr.dataset.key, tr]));
    rows.forEach((tr) => { $("td.hist", tr).textContent = "no"; });
    setupWrites(page);
    const mine = (e) => e.group === page.dataset.group && e.node === page.dataset.node
      && (e.device === null || e.device === undefined || e.device === (page.dataset.device || null));
    $$("[data-format]", page).forEach((el) => showFigure(el, JSON.parse(el.dataset.value)));
    return (e) => {
      updateFigures(e);
      if (e.type === "value") {
        const tr = rows.get(keyOf(e));
        if (!tr) return;
        if (e.is_historical) {
          $("td.hist", tr).textContent = "replayed " + Panel.time(e.ts);
          return;
        }
        $("td.value", tr).textContent = text(e.value, tr.dataset.datatype);
        const q = $("span.quality", tr);
        q.textContent = qualityText(e.quality);
        q.className = "badge quality " + q.textContent.toLowerCase();
        // A STALE mark carries the death's time: the cell keeps the last value's age.
        if (e.quality !== 500) {
          $("td.ts", tr).innerHTML = "<time></time>";
          setSince($("td.ts time", tr), $("td.age span", tr), e.ts);
        }
        $("td.hist", tr).textContent = "no";
        tr.classList.toggle("stale", e.quality === 500);
        const btn = $("button.write", tr);
        if (btn) btn.dataset.value = JSON.stringify(e.value);
        confirmWrite(keyOf(e), e.value);
      } else if (e.type === "state" && mine(e)) {
        // The node's own death takes its devices with it.
        if (e.device || !page.dataset.device || e.state === "offline") {
          setBadge($("#state"), e.state.toUpperCase());
          setSince($("#since"), $("#since-age"), e.ts);
        }
        if (e.state === "offline") rows.forEach((tr) => tr.classList.add("stale"));
      }
    };
  }

  // ---- figures outside the tag table (the overview's store columns, the node's link bill) ----
  // A byte count as a bill reads it (as the edge node's status page does): exact below
  // 10 kB, else three significant digits in decimal units.
  const bytesText = (n) => {
    if (n < 10000) return n.toLocaleString("en-US") + " B";
    const units = ["kB", "MB", "GB", "TB"];
    let v = n, u = -1;
    while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
    return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
  };
  const figureText = {
    bytes: bytesText,
    budget: (n) => (n ? bytesText(n) : "none"),
    replay: (paused) => (paused ? "paused (daily budget spent)" : "running"),
  };
  function showFigure(el, value) {
    const format = figureText[el.dataset.format];
    if (format && value !== null && value !== undefined) {
      el.textContent = format(value);
      if (typeof value === "number") el.title = `${value.toLocaleString("en-US")} bytes`;
    } else {
      el.textContent = text(value) + (el.dataset.units ? " " + el.dataset.units : "");
    }
  }
  function updateFigures(e) {
    if (e.type !== "value" || e.is_historical) return;
    $$(`[data-metric="${CSS.escape(keyOf(e))}"]`).forEach((el) => showFigure(el, e.value));
  }

  // ---- the overview ----
  function overviewPage() {
    return (e) => {
      if (e.type === "state") {
        const sel = e.device
          ? `tr.device[data-node="${CSS.escape(e.group + "/" + e.node)}"][data-device="${CSS.escape(e.device)}"]`
          : `tr.node[data-node="${CSS.escape(e.group + "/" + e.node)}"]`;
        const tr = $(sel);
        if (!tr) { location.reload(); return; } // a node or device not on the page yet
        setBadge($("span.state", tr), e.state.toUpperCase());
        setSince($("time.since", tr), $("span.since-age", tr), e.ts);
        if (!e.device && e.state === "offline") {
          $("td.last-death", tr).innerHTML = "<time></time>";
          setSince($("td.last-death time", tr), null, e.ts);
        }
      } else {
        updateFigures(e);
      }
    };
  }

  function listen(handle) {
    const source = new EventSource("/api/events");
    source.onmessage = (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      // Skipped changes or the host's own session: the page is redrawn from the source.
      if (e.type === "lagged" || e.type === "host") { location.reload(); return; }
      handle(e);
    };
    window.addEventListener("beforeunload", () => source.close());
    document.documentElement.dataset.live = "1";
  }

  // ---- operator and admin actions ----
  function rebirthButtons() {
    $$("button.rebirth").forEach((btn) => btn.addEventListener("click", async () => {
      const out = $("#rebirth-status");
      const res = await Panel.send("POST", "/api/rebirth", { group: btn.dataset.group, node: btn.dataset.node });
      out.className = res.ok ? "notice" : "error";
      out.textContent = res.ok ? `Rebirth requested from ${btn.dataset.group}/${btn.dataset.node}.` : Panel.errorText(res);
    }));
  }

  function usersPage() {
    const form = $("#add-user");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const res = await Panel.send("POST", "/auth/users", {
        username: form.username.value, password: form.password.value, role: form.role.value,
      });
      if (res.ok) location.reload(); else $("#user-error").textContent = Panel.errorText(res);
    });
    $$("button.delete-user").forEach((btn) => btn.addEventListener("click", async () => {
      if (!confirm(`Remove user ${btn.dataset.user}?`)) return;
      const res = await Panel.send("DELETE", "/auth/users/" + encodeURIComponent(btn.dataset.user));
      if (res.ok) location.reload(); else $("#user-error").textContent = Panel.errorText(res);
    }));
    const tokenForm = $("#add-token");
    tokenForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const res = await Panel.send("POST", "/auth/tokens", { name: tokenForm.name.value, scope: tokenForm.scope.value });
      if (!res.ok) { $("#token-error").textContent = Panel.errorText(res); return; }
      $("#new-token-value").textContent = res.body.token;
      $("#new-token").hidden = false;
    });
    $$("button.revoke-token").forEach((btn) => btn.addEventListener("click", async () => {
      const res = await Panel.send("DELETE", "/auth/tokens/" + btn.dataset.id);
      if (res.ok) location.reload(); else $("#token-error").textContent = Panel.errorText(res);
    }));
  }

  // datetime-local inputs beside hidden ms fields (the audit filter).
  function localTimeFields() {
    const toLocal = (ms) => {
      const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
      return d.toISOString().slice(0, 19);
    };
    $$("input[data-ms-field]").forEach((input) => {
      const hidden = document.getElementById(input.dataset.msField);
      if (hidden.value) input.value = toLocal(Number(hidden.value));
      input.form.addEventListener("submit", () => {
        hidden.value = input.value ? String(new Date(input.value).getTime()) : "";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    rebirthButtons();
    usersPage();
    localTimeFields();
    const page = $("#tags-page");
    if (page) listen(tagsPage(page));
    else if ($("#overview")) listen(overviewPage());
  });
})();
