// The Trends page: several metrics on one uPlot chart from /api/history at the chart's
// pixel width (each bucket's min and max drawn as a band, so spikes stay visible),
// preset and custom ranges, drag to zoom (a new query), CSV export of what is shown.
"use strict";
(() => {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const COLORS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
  const HOUR = 3600000;

  let chart = null, shown = null, range = null;
  const zooms = [];
  let loads = 0;

  const chosen = () => $$("#chosen li").map((li) => li.dataset.key);
  const toLocal = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19);

  function remember() {
    const q = new URLSearchParams();
    chosen().forEach((k) => q.append("m", k));
    q.set("from", String(Math.round(range.from)));
    q.set("to", String(Math.round(range.to)));
    history.replaceState(null, "", "/trends?" + q.toString());
    $("#from").value = toLocal(range.from);
    $("#to").value = toLocal(range.to);
  }

  async function query(key, from, to, points) {
    const q = new URLSearchParams({ metric: key, from: String(Math.floor(from)), to: String(Math.ceil(to)), points: String(points) });
    const r = await fetch("/api/history?" + q.toString(), { credentials: "same-origin" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${key}: ${body.error || "HTTP " + r.status}`);
    return body;
  }

  // One x axis (bucket starts) for every metric; a metric without a bucket there is null.
  function align(keys, answers) {
    const xs = new Set();
    answers.forEach((a) => a.points.forEach((p) => xs.add(p.start)));
    const x = Array.from(xs).sort((a, b) => a - b);
    const at = new Map(x.map((v, i) => [v, i]));
    const columns = keys.map((key, i) => {
      const col = { key, min: new Array(x.length).fill(null), max: new Array(x.length).fill(null), avg: new Array(x.length).fill(null) };
      answers[i].points.forEach((p) => {
        const j = at.get(p.start);
        col.min[j] = p.min; col.max[j] = p.max; col.avg[j] = p.avg;
      });
      return col;
    });
    return { x, columns };
  }

  function draw(data) {
    const el = $("#chart");
    const series = [{}];
    const bands = [];
    const rows = [data.x.map((t) => t / 1000)];
    data.columns.forEach((c, i) => {
      const color = COLORS[i % COLORS.length];
      const base = series.length;
      series.push({ label: c.key + " max", stroke: color, width: 1, spanGaps: false });
      series.push({ label: c.key + " min", stroke: color, width: 1, spanGaps: false });
      series.push({ label: c.key, stroke: color, width: 2, dash: [4, 3], spanGaps: false });
      rows.push(c.max, c.min, c.avg);
      bands.push({ series: [base, base + 1], fill: color + "33" });
    });
    const opts = {
      width: el.clientWidth, height: 320, series, bands,
      scales: { x: { time: true, range: () => [range.from / 1000, range.to / 1000] } },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [(u) => {
        if (u.select.width < 3) return;
        const a = u.posToVal(u.select.left, "x") * 1000;
        const b = u.posToVal(u.select.left + u.select.width, "x") * 1000;
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        zooms.push(range);
        load({ from: a, to: b });
      }] },
    };
    if (chart) chart.destroy();
    chart = new uPlot(opts, rows, el);
  }

  async function load(next) {
    const keys = chosen();
    range = next;
    remember();
    $("#trend-error").textContent = "";
    const el = $("#chart");
    if (keys.length === 0) {
      if (chart) { chart.destroy(); chart = null; }
      shown = null;
      $("#trend-status").textContent = "Add a metric to draw its trend.";
      return;
    }
    const load = ++loads;
    const points = Math.max(10, Math.min(10000, Math.floor(el.clientWidth || 800)));
    const t0 = performance.now();
    let answers;
    try {
      answers = await Promise.all(keys.map((k) => query(k, range.from, range.to, points)));
    } catch (e) {
      $("#trend-error").textContent = e.message;
      return;
    }
    if (load !== loads) return; // a newer range was asked for meanwhile
    const t1 = performance.now();
    shown = align(keys, answers);
    draw(shown);
    // uPlot finishes its first paint in a microtask: let it run before the clock stops.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const t2 = performance.now();
    const n = shown.x.length;
    const bucket = (range.to - range.from) / Math.max(points, 1);
    const width = bucket >= 1000 ? Math.round(bucket / 1000) + " s" : Math.round(bucket) + " ms";
    $("#trend-status").textContent = `${n} buckets of up to ${width}; query ${Math.round(t1 - t0)} ms, drawing ${Math.round(t2 - t1)} ms.`;
    el.dataset.from = String(Math.round(range.from));
    el.dataset.to = String(Math.round(range.to));
    el.dataset.buckets = String(n);
    el.dataset.max = String(Math.max(...shown.columns.flatMap((c) => c.max.filter((v) => v !== null))));
    el.dataset.queryMs = (t1 - t0).toFixed(1);
    el.dataset.drawMs = (t2 - t1).toFixed(1);
    el.dataset.loads = String(load);
  }

  function exportCsv() {
    if (!shown) return;
    const head = ["time_utc", "ts_ms"];
    shown.columns.forEach((c) => head.push(c.key + " min", c.key + " max", c.key + " avg"));
    const rows = [head];
    shown.x.forEach((t, i) => {
      const row = [new Date(t).toISOString(), t];
      shown.columns.forEach((c) => row.push(c.min[i], c.max[i], c.avg[i]));
      rows.push(row);
    });
    Panel.downloadCsv("trend.csv", rows);
  }

  function addKey(key) {
    if (!key || chosen().includes(key)) return;
    const li = document.createElement("li");
    li.dataset.key = key;
    li.textContent = key + " ";
    const b = document.createElement("button");
    b.type = "button"; b.className = "small secondary remove"; b.textContent = "×";
    li.appendChild(b);
    $("#chosen").appendChild(li);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const el = $("#chart");
    const now = Date.now();
    const from = Number(el.dataset.from) || now - HOUR;
    const to = Number(el.dataset.to) || now;
    $("#metric-pick").addEventListener("change", (e) => {
      addKey(e.target.value);
      e.target.value = "";
      load(range);
    });
    $("#chosen").addEventListener("click", (e) => {
      if (!e.target.classList.contains("remove")) return;
      e.target.closest("li").remove();
      load(range);
    });
    $$("button.preset").forEach((b) => b.addEventListener("click", () => {
      const t = Date.now();
      zooms.length = 0;
      load({ from: t - Number(b.dataset.range), to: t });
    }));
    $("#trend-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const a = new Date($("#from").value).getTime(), b = new Date($("#to").value).getTime();
      if (!(a < b)) { $("#trend-error").textContent = "The start must be before the end."; return; }
      zooms.length = 0;
      load({ from: a, to: b });
    });
    el.addEventListener("dblclick", () => { if (zooms.length) load(zooms.pop()); });
    $("#csv").addEventListener("click", exportCsv);
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => load(range), 250);
    });
    load({ from, to });
  });
})();
