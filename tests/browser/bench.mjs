// The panel's benchmark in Chromium (tests/benches/panel.rs starts the processes):
// gzipped bytes of the JS and CSS each page loads, time from a register change in
// plant-sim to the changed cell, and the time to draw a 24 h trend of a 1 Hz metric.
// Figures are reported as `@@ metric <name> <value>` lines.
import { url, ask, launch, run, check, login } from "./lib.mjs";

const user = process.env.PANEL_USER;
const password = process.env.PANEL_PASSWORD;
const trendKey = process.env.TREND_METRIC;
const trendFrom = Number(process.env.TREND_FROM);
const trendTo = Number(process.env.TREND_TO);
const rounds = Number(process.env.BENCH_ROUNDS || "10");
const devicePath = "/device/e2e/gw-1/tank-farm";
const levelKey = "e2e/gw-1/tank-farm:Tank 1/Start Level";

const metric = (name, value) => ask(`metric ${name} ${value}`);
const { page, close } = await launch();

const ok = await run(page, [
  ["bench-login", () => login(page, user, password)],
  ["bench-bytes", async () => {
    const pages = { overview: "/", device: devicePath, trends: "/trends?m=" + encodeURIComponent(trendKey) };
    for (const [name, path] of Object.entries(pages)) {
      await page.goto(url + path, { waitUntil: "load" });
      const bytes = await page.evaluate(() => performance.getEntriesByType("resource")
        .filter((e) => /\.(js|css)$/.test(new URL(e.name).pathname))
        .reduce((sum, e) => sum + e.encodedBodySize, 0));
      check(bytes > 0, `${name}: assets measured`);
      await metric(`gzip_bytes_${name}`, bytes);
    }
  }],
  ["bench-latency", async () => {
    await page.goto(url + devicePath);
    await page.waitForFunction(() => document.documentElement.dataset.live === "1");
    const cell = `tr[data-key="${levelKey}"] td.value`;
    // f32 high words: 5.0, 6.0, 7.0, ... (abcd, low word 0).
    const words = [16544, 16576, 16608, 16624, 16640, 16656, 16672, 16688, 16704, 16720];
    const values = ["5", "6", "7", "7.5", "8", "9", "10", "11", "12", "13"];
    for (let i = 0; i < rounds; i++) {
      const want = values[i % values.length];
      const seen = page.evaluate(([sel, text]) => new Promise((resolve) => {
        const el = document.querySelector(sel);
        const obs = new MutationObserver(() => {
          if (el.textContent.trim() === text) { obs.disconnect(); resolve(Date.now()); }
        });
        obs.observe(el, { childList: true, characterData: true, subtree: true });
      }), [cell, want]);
      const sent = Number(await ask(`set 1 hr 1 ${words[i % words.length]}`));
      const at = await seen;
      await metric("latency_ms", at - sent);
    }
  }],
  ["bench-trend", async () => {
    const q = `/trends?m=${encodeURIComponent(trendKey)}&from=${trendFrom}&to=${trendTo}`;
    for (let i = 0; i < 5; i++) {
      await page.goto(url + q);
      await page.waitForFunction(() => Number(document.getElementById("chart").dataset.buckets) > 0);
      const d = await page.evaluate(() => ({ ...document.getElementById("chart").dataset }));
      await metric("trend_query_ms", d.queryMs);
      await metric("trend_draw_ms", d.drawMs);
      await metric("trend_buckets", d.buckets);
    }
  }],
]);

await close();
process.stdout.write(`@@ finished ${ok ? "ok" : "failed"}\n`);
process.exit(ok ? 0 : 1);
