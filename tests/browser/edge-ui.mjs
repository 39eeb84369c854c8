// The edge node's web UI in a real Chromium, against plant-sim, the edge node (HTTPS on
// its self-signed certificate) and the host as processes (tests/tests/e2e_edge_ui.rs):
// setup and login, the status page, a device added pointing at plant-sim (a bad field
// first, shown next to it in check-config's words; test connection), a register probe
// showing the f32 in the right byte order, a tag CSV with a bad line (line and column
// shown, nothing imported) then a good one, apply, rollback, the export imported back
// unchanged, and a viewer who cannot change anything. One screenshot per step.
import { url, ask, launch, run, check, login, logout, shot, setup, submit as submitOn, call as callOn } from "./lib.mjs";

const token = process.env.SETUP_TOKEN;
const password = process.env.PANEL_PASSWORD;
const plantPort = process.env.PLANT_PORT;
// With LIVE_APPLY set, the apply is followed by the host seeing the new tags (a Rebirth).
const live = !!process.env.LIVE_APPLY;
const device = "line-2";

const { page, close } = await launch({ ignoreHTTPSErrors: true });

const submit = (selector) => submitOn(page, selector);
const call = (method, path, body) => callOn(page, method, path, body);

async function exportCsv() {
  const r = await call("GET", "/tags.csv");
  check(r.status === 200, `export answered ${r.status}`);
  return r.text;
}

async function dryRun(csv) {
  await page.goto(url + "/tags");
  await page.fill("#import-csv", csv);
  await submit("#import-dry-run");
}

let exported = "";

// Every route that changes something or reads the field (admin), and the viewer's pages.
const ADMIN_ROUTES = [
  ["GET", "/edit/device"], ["POST", "/edit/device"], ["POST", "/edit/device/remove"],
  ["GET", "/edit/server?index=0"], ["POST", "/edit/mqtt"], ["POST", "/edit/store"],
  ["GET", "/edit/economy"], ["POST", "/edit/economy"],
  ["POST", "/edit/device/test"], ["POST", "/edit/server/test"], ["POST", "/files"],
  ["GET", "/probe"], ["POST", "/probe"], ["GET", "/tags/edit"], ["POST", "/tags/edit"],
  ["POST", "/tags/remove"], ["POST", "/tags/import"], ["POST", "/tags/read"],
  ["POST", "/config/apply"], ["POST", "/config/rollback"], ["POST", "/config/discard"],
];
const VIEWER_PAGES = ["/", "/devices", "/settings", "/tags", "/tags.csv", "/config"];

const ok = await run(page, [
  ["01-setup", async () => {
    await page.goto(url + "/");
    check(page.url().startsWith(url + "/setup") || page.url().startsWith(url + "/login"), `before setup / leads to setup, got ${page.url()}`);
    await setup(page, token, "ada", password);
    const r = await call("POST", "/auth/users", { username: "victor", password, role: "viewer" });
    check(r.status === 201, `viewer created: ${r.status} ${r.text}`);
    await logout(page);
    await login(page, "ada", password);
  }],
  ["02-status", async () => {
    await page.waitForSelector('#devices tr[data-device="tank-farm"] .badge.online');
    for (let i = 0; i < 30 && (await page.textContent("#link-state")).trim() !== "online"; i++) {
      await page.waitForTimeout(500);
      await page.reload();
    }
    check((await page.textContent("#link-state")).trim() === "online", "the MQTT link is online");
    check((await page.textContent("#host-state")).includes("online"), "the primary host's STATE is shown");
    const requests = Number(await page.textContent('#devices tr[data-device="tank-farm"] td[data-label=Requests]'));
    check(requests > 0, `requests counted (${requests})`);
    // The link bill: this node has sent its births at least, and has no budget.
    const today = (await page.textContent("#bill-today")).trim();
    check(/^[1-9][\d,.]* k?B \/ [1-9][\d,.]* k?B$/.test(today), `bytes sent / received today: ${today}`);
    check((await page.textContent("#bill-budget")).trim() === "none", "no daily budget");
  }],
  ["03-device-bad-field", async () => {
    await page.goto(url + "/devices");
    await Promise.all([page.waitForNavigation(), page.click("#add-device")]);
    await page.fill("#f-name", device);
    await page.fill("#f-host", "127.0.0.1");
    await page.fill("#f-port", plantPort);
    await page.fill("#f-unit_id", "1");
    await page.fill("#f-timeout_ms", "0");
    await submit("#save");
    const error = await page.textContent("#error-timeout_ms");
    check(error.includes("must be at least 1"), `the problem is next to timeout_ms: ${error}`);
  }],
  ["04-device-test-and-save", async () => {
    await page.fill("#f-timeout_ms", "500");
    await submit("#test");
    await page.waitForSelector('#test-result[data-ok="true"]');
    check((await page.textContent("#test-result")).includes("connected"), "test connection read a register");
    await submit("#save");
    await page.waitForSelector(`#devices tr[data-device="${device}"]`);
    check(await page.isVisible("#draft-notice"), "the draft is marked as changed");
  }],
  ["05-probe", async () => {
    // 3.1415927 as f32 is 0x40490FDB; the plant holds it low word first (CDAB).
    await ask("set 1 hr 20 0x0FDB");
    await ask("set 1 hr 21 0x4049");
    await page.goto(url + "/probe");
    await page.selectOption("#probe-device", device);
    await page.selectOption("#probe-table", "holding_register");
    await page.fill("#probe-address", "20");
    await page.fill("#probe-count", "2");
    await submit("#probe-read");
    const cell = (order) => page.textContent(`#readings tr[data-type="f32"][data-order="${order}"][data-offset="0"] td.value`);
    check((await cell("CDAB")) === "3.1415927", `f32 CDAB is 3.1415927, got ${await cell("CDAB")}`);
    check((await cell("ABCD")) !== "3.1415927", "f32 ABCD is something else");
    check((await page.textContent("#words tbody tr:first-child")).includes("0x0FDB"), "the raw word is shown");
  }],
  ["06-import-bad-line", async () => {
    exported = await exportCsv();
    const header = exported.split("\n")[0].split(",");
    check(header[0] === "device" && header.includes("order"), `export header: ${header}`);
    const row = (name, address, type, order) => header.map((h) => ({
      device, name, table: "holding_register", address: String(address), type, order, scan_class: "normal",
    })[h] ?? "").join(",");
    const lines = exported.trimEnd().split("\n");
    const bad = [...lines, row("Pi", 20, "f32", "CDAB"), row("Counter", 22, "float", "")].join("\n") + "\n";
    await dryRun(bad);
    const badLine = lines.length + 2;
    const typeColumn = header.indexOf("type") + 1;
    const cell = await page.waitForSelector(`#import-errors tr.bad-line[data-line="${badLine}"][data-column="${typeColumn}"]`);
    check((await cell.textContent()).includes("float"), "the bad value is named");
    check(!(await page.isVisible("#import-confirm")), "nothing can be imported");
    await shot(page, "06-import-bad-line-errors");
    await page.goto(`${url}/tags?device=${device}`);
    check(await page.isVisible("text=No tags."), "nothing was imported");
  }],
  ["07-import-good", async () => {
    const header = exported.split("\n")[0].split(",");
    const row = (name, address, type, order) => header.map((h) => ({
      device, name, table: "holding_register", address: String(address), type, order, scan_class: "normal",
    })[h] ?? "").join(",");
    const good = [...exported.trimEnd().split("\n"), row("Pi", 20, "f32", "CDAB"), row("Counter", 22, "u16", "")].join("\n") + "\n";
    await dryRun(good);
    const added = await page.textContent(`#import-diff .device-changes[data-device="${device}"] .added`);
    check(added.includes("Pi") && added.includes("Counter"), `the dry run lists the added tags: ${added}`);
    check((await page.$$("#import-diff .removed")).length === 1, "only the new device changes");
    await shot(page, "07-import-good-dry-run");
    await submit("#import-confirm");
    await page.waitForSelector("#imported");
    await page.goto(`${url}/tags?device=${device}`);
    await page.waitForSelector('#tags tr[data-tag="Pi"]');
    // Read now: the tag as configured decodes to the probed value.
    await Promise.all([page.waitForNavigation(), page.click('#tags tr[data-tag="Pi"] button.read-now')]);
    check((await page.textContent('#tags tr[data-tag="Pi"] .read')).startsWith("3.14159"), "read now decodes the tag");
  }],
  ["08-apply", async () => {
    await page.goto(url + "/config");
    await page.waitForSelector("#valid");
    check((await page.textContent(".devices-added")).includes(device), "the diff names the new device");
    await submit("#apply");
    check(await page.getAttribute("#outcome", "data-ok") === "true", `applied: ${await page.textContent("#outcome")}`);
    await page.waitForSelector('#audit tr[data-action="apply"]');
    // The apply answered with a redirect: a reload shows the page, it does not apply again.
    check(new URL(page.url()).pathname === "/config", `after the apply the browser is at ${page.url()}`);
    const applies = await page.locator('#audit tr[data-action="apply"]').count();
    await page.reload();
    check(!(await page.isVisible("#outcome")), "a reload does not repeat the apply's outcome");
    check(await page.locator('#audit tr[data-action="apply"]').count() === applies, "a reload does not apply again");
    if (live) {
      await ask(`host-sees ${device} Pi`);
    }
  }],
  ["09-rollback", async () => {
    await submit("#rollback");
    check(await page.getAttribute("#outcome", "data-ok") === "true", `rolled back: ${await page.textContent("#outcome")}`);
    await page.waitForSelector('#audit tr[data-action="rollback"]');
    await page.goto(url + "/devices");
    check(!(await page.isVisible(`#devices tr[data-device="${device}"]`)), "the device is gone after the rollback");
  }],
  ["10-server-test", async () => {
    await page.goto(url + "/settings");
    await Promise.all([page.waitForNavigation(), page.click('#servers a[href="/edit/server?index=0"]')]);
    await submit("#test");
    // The host's broker binds an edge account to its node's client id, so a test
    // connection under a client id of its own is refused by CONNACK: the broker answered.
    const result = await page.textContent("#test-result");
    const ok = await page.getAttribute("#test-result", "data-ok") === "true";
    check(ok || result.includes("return code"), `the broker answered the CONNECT: ${result}`);
    check(result.includes("mqtt://127.0.0.1:"), `the server is named: ${result}`);
  }],
  ["11-export-round-trip", async () => {
    const again = await exportCsv();
    check(again === exported, "the running tag list exports as before the apply");
    await dryRun(again);
    await page.waitForSelector("#import-unchanged");
    await submit("#import-confirm");
    check((await exportCsv()) === exported, "imported back identical");
    await page.goto(url + "/config");
    await submit("#discard");
  }],
  ["12-viewer", async () => {
    await logout(page);
    await login(page, "victor", password);
    await page.goto(url + "/devices");
    check(!(await page.isVisible("#add-device")), "no add link for a viewer");
    await page.goto(url + "/config");
    check(!(await page.isVisible("#apply")), "no apply button for a viewer");
    for (const [method, path] of ADMIN_ROUTES) {
      const r = await call(method, path, method === "POST" ? {} : undefined);
      check(r.status === 403, `${method} ${path} refused to a viewer: ${r.status}`);
    }
    for (const path of VIEWER_PAGES) {
      const r = await call("GET", path);
      check(r.status === 200, `${path} shown to a viewer: ${r.status}`);
    }
    await page.goto(url + "/probe");
    await shot(page, "12-viewer-probe-refused");
  }],
  ["13-anonymous", async () => {
    await page.goto(url + "/");
    await logout(page);
    for (const [method, path] of [...ADMIN_ROUTES, ...VIEWER_PAGES.map((p) => ["GET", p])]) {
      const status = await page.evaluate(async ([method, path]) =>
        (await fetch(path, { method, headers: { "content-type": "application/json" },
          body: method === "POST" ? "{}" : undefined })).status, [method, path]);
      check(status === 401 || (method === "POST" && status === 403), `${method} ${path} without a session: ${status}`);
    }
  }],
]);

await close();
process.stdout.write(`@@ finished ${ok ? "ok" : "failed"}\n`);
process.exit(ok ? 0 : 1);
