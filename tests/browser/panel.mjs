// The operator's panel in a real Chromium, against the processes the cargo test started
// (tests/tests/e2e_panel.rs): setup, login, the live tree, a value changed by the
// simulator, a trend drawn and zoomed, a confirmed write and its audit row, a viewer
// refused, an edge node going OFFLINE, logout. One screenshot per step.
import { readFileSync } from "node:fs";
import { url, ask, launch, run, check, login, logout, shot } from "./lib.mjs";

const token = process.env.SETUP_TOKEN;
const password = process.env.PANEL_PASSWORD;
const [group, node, device] = ["e2e", "gw-1", "tank-farm"];
const devicePath = `/device/${group}/${node}/${device}`;
const levelKey = `${group}/${node}/${device}:Tank 1/Start Level`;
const row = (key) => `tr[data-key="${key}"]`;

const { page, close } = await launch();

const ok = await run(page, [
  ["01-setup", async () => {
    await page.goto(url + "/");
    check(page.url().startsWith(url + "/setup"), `before setup / leads to setup, got ${page.url()}`);
    await page.goto(`${url}/setup?token=${encodeURIComponent(token)}`);
    await page.fill("#username", "ada");
    await page.fill("#password", password);
    await page.fill("#confirm", password);
    await Promise.all([page.waitForURL(url + "/"), page.click("button[type=submit]")]);
    check(await page.textContent("#role") === "admin", "the first account is an admin");
  }],
  ["02-users", async () => {
    await page.click("text=Users & tokens");
    for (const [name, role] of [["olivia", "operator"], ["victor", "viewer"]]) {
      await page.fill("#new-username", name);
      await page.fill("#new-password", password);
      await page.selectOption("#new-role", role);
      await Promise.all([page.waitForLoadState("load"), page.click("#add-user button[type=submit]")]);
      await page.waitForSelector(`#users tr[data-user="${name}"]`);
    }
  }],
  ["03-login", async () => {
    await logout(page);
    await page.fill("#username", "olivia");
    await page.fill("#password", "wrong password 000");
    await page.click("button[type=submit]");
    await page.waitForSelector("text=Wrong username or password.");
    await shot(page, "03-login-refused");
    await login(page, "olivia", password);
    check(await page.textContent("#role") === "operator", "role shown in the nav");
  }],
  ["04-tree", async () => {
    const nodeRow = `tr.node[data-node="${group}/${node}"]`;
    await page.waitForSelector(`${nodeRow} .badge.online`);
    for (const d of ["tank-farm", "compressor", "power-meter"]) {
      await page.waitForSelector(`tr.device[data-device="${d}"] .badge.online`);
    }
    check((await page.textContent(`${nodeRow} td[data-label=bdSeq]`)).trim() !== "–", "bdSeq shown");
    // The same page on a phone: one card per row.
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, "04-tree-phone");
    await page.setViewportSize({ width: 1280, height: 860 });
  }],
  ["05-live-value", async () => {
    await page.goto(url + devicePath);
    await page.waitForFunction(() => document.documentElement.dataset.live === "1");
    await page.evaluate(() => { window.notReloaded = true; });
    // Tank 1 start level: high word 0x40A0 = 5.0 (f32, abcd).
    await ask("set 1 hr 1 16544");
    await page.waitForFunction((sel) => document.querySelector(sel + " td.value").textContent.trim() === "5", row(levelKey));
    check(await page.evaluate(() => window.notReloaded === true), "the value changed without a reload");
  }],
  ["06-write-confirmed", async () => {
    await page.click(`${row(levelKey)} button.write`);
    check(await page.textContent("#w-datatype") === "Float", "datatype from the birth");
    check(await page.textContent("#w-units") === "m", "units from the birth");
    check(await page.textContent("#w-current") === "5", "current value in the dialog");
    await page.fill("#w-value", "3.5");
    await page.click("#w-confirm");
    await page.waitForSelector("#write-status:has-text('done')");
    await page.waitForFunction((sel) => document.querySelector(sel + " td.value").textContent.trim() === "3.5", row(levelKey));
  }],
  ["07-rebirth", async () => {
    await page.goto(`${url}/node/${group}/${node}`);
    await page.waitForFunction(() => document.documentElement.dataset.live === "1");
    await page.evaluate(() => { window.notReloaded = true; });
    // The link bill as an operator reads it, kept current like the table below it.
    const sentToday = `#bill [data-metric="${group}/${node}:Link/Bytes Sent Today"]`;
    const first = (await page.textContent(sentToday)).trim();
    check(/^[\d,]+ B$|^[\d.]+ [kMGT]B$/.test(first), `bytes sent today in bytes: ${first}`);
    check((await page.textContent(`#bill [data-format=budget]`)).trim() === "none", "no daily budget set");
    check((await page.textContent(`#bill [data-format=replay]`)).trim() === "running", "replay not paused");
    const firstExact = await page.getAttribute(sentToday, "title");
    await page.waitForFunction(([sel, was]) => document.querySelector(sel).title !== was, [sentToday, firstExact]);
    // One synchronous read of both: the bill and the table show the same count.
    const [title, cell] = await page.evaluate(([sel, key]) => [
      document.querySelector(sel).title,
      document.querySelector(`tr[data-key="${key}"] td.value`).textContent.trim(),
    ], [sentToday, `${group}/${node}:Link/Bytes Sent Today`]);
    check(title === `${Number(cell).toLocaleString("en-US")} bytes`, `bill ${title} = table ${cell}`);
    check(await page.evaluate(() => window.notReloaded === true), "the bill changed without a reload");
    await page.click("button.rebirth");
    await page.waitForSelector(`#rebirth-status:has-text('Rebirth requested from ${group}/${node}')`);
  }],
  ["08-audit-rows", async () => {
    await page.goto(url + "/audit?user=olivia");
    const rows = await page.$$eval("#audit tbody tr", (trs) => trs.map((tr) => tr.textContent));
    check(rows.some((r) => r.includes("write") && r.includes("Tank 1/Start Level") && r.includes("3.5")),
      `audit row of the write: ${rows}`);
    check(rows.some((r) => r.includes("rebirth") && r.includes(`${group}/${node}`)), `audit row of the Rebirth: ${rows}`);
  }],
  ["09-trend-zoom", async () => {
    // One hour of a 1 Hz sine with a single +50 spike halfway (published by the test).
    const to = Number(process.env.TREND_TO), from = to - 3600000;
    await page.goto(`${url}/trends?m=${encodeURIComponent(`${group}/recorder:Signal`)}&from=${from}&to=${to}`);
    await page.waitForFunction(() => Number(document.getElementById("chart").dataset.buckets) > 0);
    const before = await page.evaluate(() => ({ ...document.getElementById("chart").dataset }));
    check(Number(before.to) - Number(before.from) === 3600000, "one hour shown");
    check(Number(before.buckets) > 500, `one bucket per pixel or so: ${before.buckets}`);
    check(Number(before.max) >= 50, `the one-sample spike survives the downsampling: max ${before.max}`);
    const box = await page.locator("#chart .u-over").boundingBox();
    await page.mouse.move(box.x + box.width * 0.45, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.55, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction((n) => Number(document.getElementById("chart").dataset.loads) > n, Number(before.loads));
    const after = await page.evaluate(() => ({ ...document.getElementById("chart").dataset }));
    const span = Number(after.to) - Number(after.from);
    check(span > 300000 && span < 420000, `zoomed to about 6 minutes: ${span} ms`);
    check(Number(after.buckets) > 300, `the zoom re-queried at pixel width: ${after.buckets} buckets`);
    check(Number(after.max) >= 50, `the spike is in the zoomed range: max ${after.max}`);
    check(new URL(page.url()).searchParams.get("from") === after.from, "the zoom is in the URL");
    // CSV of what is shown: one row per bucket of the zoomed range.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv")]);
    const csv = readFileSync(await download.path(), "utf8").trim().split("\r\n");
    check(csv[0] === `time_utc,ts_ms,${group}/recorder:Signal min,${group}/recorder:Signal max,${group}/recorder:Signal avg`, `CSV header: ${csv[0]}`);
    check(csv.length - 1 === Number(after.buckets), `CSV rows ${csv.length - 1} = buckets ${after.buckets}`);
  }],
  ["10-viewer", async () => {
    await logout(page);
    await login(page, "victor", password);
    await page.goto(url + devicePath);
    await page.waitForSelector(row(levelKey));
    check(await page.locator("button.write").count() === 0, "no write control for a viewer");
    check(await page.locator("button.rebirth").count() === 0, "no Rebirth control for a viewer");
    const status = await page.evaluate(async (key) => {
      const r = await Panel.send("POST", "/api/write", { group: "e2e", node: "gw-1", device: "tank-farm", metric: key, value: 1 });
      return r.status;
    }, "Tank 1/Start Level");
    check(status === 403, `the API refuses the viewer's write: ${status}`);
  }],
  ["11-offline-stale", async () => {
    await page.evaluate(() => { window.notReloaded = true; });
    await ask("kill-edge");
    await page.waitForSelector("#state:has-text('OFFLINE')");
    await page.waitForSelector(`${row(levelKey)}.stale`);
    check(await page.evaluate(() => window.notReloaded === true), "went OFFLINE on screen without a reload");
    await shot(page, "11-offline-stale-device");
    await page.goto(url + "/");
    await page.waitForSelector(`tr.node[data-node="${group}/${node}"] .badge.offline`);
  }],
  ["12-logout", async () => {
    await logout(page);
    await page.goto(url + devicePath);
    check(page.url().startsWith(url + "/login"), `a page without a session leads to login: ${page.url()}`);
  }],
]);

await close();
process.stdout.write(`@@ finished ${ok ? "ok" : "failed"}\n`);
process.exit(ok ? 0 : 1);
