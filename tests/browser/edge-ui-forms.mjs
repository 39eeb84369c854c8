// The edge node's remaining forms in a real Chromium, against plant-sim, the edge node
// and the host as processes (tests/tests/e2e_edge_ui_forms.rs). Each form is opened from
// the page that links it, a bad value is shown next to its field in check-config's
// words, a good one lands in the draft and the configuration page's diff names it: an
// RTU bus on a serial path that does not exist (valid: the port is opened when polled),
// a scan class, the Sparkplug ids, MQTT settings, store and forward, a CA uploaded as a
// PEM file and named by the server form. Then the draft is discarded, one tag is edited
// and another removed in the tag editor, the link-economy levers are turned on
// (compression, report window), applied, and the host sees both tag changes through
// them. Last, two admins at once: a draft begun before the other's apply is refused and
// says why, and the other's change stays. One screenshot per step.
import { url, ask, launch, run, check, shot, setup, login, submit as submitOn, call } from "./lib.mjs";

const token = process.env.SETUP_TOKEN;
const password = process.env.PANEL_PASSWORD;
const caFile = process.env.CA_FILE;
const device = "compressor";
const renamed = "Suction Pressure Inlet";

const { page, close } = await launch({ ignoreHTTPSErrors: true });
const submit = (selector) => submitOn(page, selector);

// Follows the link `selector` on `from` as a technician would.
async function open(from, selector) {
  await page.goto(url + from);
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

// Saves the form and expects `message` next to `key`, the page still the form.
async function refused(key, message) {
  await submit("#save");
  const error = await page.textContent(`#error-${key}`);
  check(error.includes(message), `the problem is next to ${key}: ${error}`);
}

// The configuration page's diff names `text`, and the draft passes every check.
async function draftShows(text) {
  await page.goto(url + "/config");
  const diff = await page.textContent("#diff");
  check(diff.includes(text), `the diff names ${text}: ${diff}`);
  check(await page.isVisible("#valid"), "the draft passes every check");
}

const ok = await run(page, [
  ["01-setup", async () => {
    await setup(page, token, "ada", password);
  }],
  ["02-bus", async () => {
    await open("/devices", "#add-bus");
    await page.fill("#f-name", "line-rs485");
    // Each transport shows its own fields only.
    await page.selectOption("#f-transport", "rtu_over_tcp");
    check(await page.isVisible("#f-host") && !(await page.isVisible("#f-path")), "RTU over TCP asks for the device server, not a serial path");
    await page.selectOption("#f-transport", "rtu");
    check(await page.isVisible("#f-path") && !(await page.isVisible("#f-host")) && !(await page.isVisible("#f-port")), "RTU asks for the serial path, not a host");
    await page.fill("#f-path", "/dev/ttyUSB-not-here");
    await page.fill("#f-baud", "19200");
    await page.selectOption("#f-parity", "even");
    await page.fill("#f-data_bits", "9");
    await page.fill("#f-stop_bits", "1");
    await refused("data_bits", "must be 5..=8");
    await shot(page, "02-bus-bad-field");
    await page.fill("#f-data_bits", "8");
    await submit("#save");
    check((await page.textContent("#buses")).includes("/dev/ttyUSB-not-here"), "the bus is listed with its serial path");
    await shot(page, "02-bus-saved");
    await draftShows("modbus.buses");
  }],
  ["03-scan-class", async () => {
    await open("/devices", "#add-scan-class");
    await page.fill("#f-name", "slow");
    await page.fill("#f-period_ms", "0");
    await refused("period_ms", "must be 0.1 ms ..= 1 day");
    await shot(page, "03-scan-class-bad-field");
    await page.fill("#f-period_ms", "5000");
    await submit("#save");
    check((await page.textContent("#scan-classes")).includes("slow"), "the scan class is listed");
    await draftShows("modbus.scan_classes");
  }],
  ["04-sparkplug", async () => {
    await open("/settings", '#sparkplug a[href="/edit/sparkplug"]');
    check(await page.inputValue("#f-group_id") !== "", "the form shows the running ids");
    await page.fill("#f-metrics_period_ms", "50");
    await refused("metrics_period_ms", "must be at least 100");
    await shot(page, "04-sparkplug-bad-field");
    await page.fill("#f-metrics_period_ms", "2000");
    await page.fill("#f-hardware", "DIN-rail PC 4");
    await submit("#save");
    check((await page.textContent("#sparkplug")).includes("DIN-rail PC 4"), "the settings page shows the new value");
    await draftShows("sparkplug.hardware");
  }],
  ["05-mqtt", async () => {
    await open("/settings", '#mqtt a[href="/edit/mqtt"]');
    await page.fill("#f-keep_alive_s", "0");
    await refused("keep_alive_s", "must be 1..=65535 seconds");
    await shot(page, "05-mqtt-bad-field");
    await page.fill("#f-keep_alive_s", "45");
    await submit("#save");
    await draftShows("mqtt.keep_alive_s");
  }],
  ["06-store", async () => {
    await open("/settings", '#store a[href="/edit/store"]');
    await page.fill("#f-path", "store.sqlite");
    await page.fill("#f-max_bytes", "1");
    await refused("max_bytes", "must be at least 1024");
    await shot(page, "06-store-bad-field");
    await page.fill("#f-max_bytes", "67108864");
    await submit("#save");
    check((await page.textContent("#store")).includes("store.sqlite"), "the store is on");
    await draftShows("store");
  }],
  ["07-server-ca-missing", async () => {
    await open("/settings", '#servers a[href="/edit/server?index=0"]');
    await page.fill("#f-ca_file", "tls/plant-ca.pem");
    await refused("ca_file", "plant-ca.pem: No such file");
  }],
  ["08-upload-ca", async () => {
    await open("/edit/server?index=0", "#upload-link");
    await page.fill("#upload-path", "tls/plant-ca.pem");
    await page.setInputFiles("#upload-file", caFile);
    await page.waitForFunction(() => document.getElementById("upload-content").value.includes("-----BEGIN CERTIFICATE-----"));
    await shot(page, "08-upload-ca-chosen");
    await submit("#upload-send");
    check((await page.textContent("#saved")).includes("tls/plant-ca.pem"), "the upload is confirmed");
    check((await page.textContent("#draft-files")).includes("tls/plant-ca.pem"), "the file is in the draft");
  }],
  ["09-server-ca", async () => {
    await open("/settings", '#servers a[href="/edit/server?index=0"]');
    await page.fill("#f-ca_file", "tls/plant-ca.pem");
    await submit("#save");
    check((await page.textContent("#servers")).includes("tls/plant-ca.pem"), "the server names the uploaded CA");
    await page.goto(url + "/edit/server?index=0");
    check(await page.inputValue("#f-ca_file") === "tls/plant-ca.pem", "the server form shows the CA");
    await shot(page, "09-server-form-with-ca");
    await draftShows("tls/plant-ca.pem");
  }],
  ["10-discard", async () => {
    await submit("#discard");
    await page.waitForSelector("#no-change");
  }],
  ["11-tag-edit", async () => {
    await open("/devices", `#devices tr[data-device="${device}"] a[href^="/tags"]`);
    await Promise.all([page.waitForNavigation(), page.click('#tags tr[data-tag="Suction Pressure"] a')]);
    await page.fill("#f-scan_class", "nope");
    await refused("scan_class", "no scan class `nope`");
    await shot(page, "11-tag-bad-field");
    await page.fill("#f-scan_class", "fast");
    await page.fill("#f-name", renamed);
    await submit("#save");
    await page.waitForSelector(`#tags tr[data-tag="${renamed}"]`);
  }],
  ["12-tag-remove", async () => {
    await Promise.all([page.waitForNavigation(), page.click('#tags tr[data-tag="Run Seconds"] a')]);
    await submit("#remove");
    await page.waitForSelector(`#tags tr[data-tag="${renamed}"]`);
    check(!(await page.isVisible('#tags tr[data-tag="Run Seconds"]')), "the removed tag is gone");
    check(await page.isVisible("#draft-notice"), "the tags page says the draft differs");
  }],
  ["13-economy", async () => {
    await open("/settings", '#economy a[href="/edit/economy"]');
    await page.fill("#f-report_window_ms", "99999999");
    await refused("report_window_ms", "must be 0..=3600000 ms");
    await shot(page, "13-economy-bad-field");
    await page.fill("#f-report_window_ms", "1000");
    await page.selectOption("#f-metric_timestamps", "when_different");
    await page.selectOption("#f-compression", "deflate");
    // Small enough that the test devices' births and data go out compressed.
    await page.fill("#f-compression_min_bytes", "64");
    await page.fill("#f-daily_budget_bytes", "50000000");
    await submit("#save");
    check((await page.textContent("#economy")).includes("deflate"), "the settings page shows the compression");
    await draftShows("economy");
  }],
  ["14-apply-reaches-host", async () => {
    await draftShows(`Tags of ${device}`);
    await submit("#apply");
    check(await page.getAttribute("#outcome", "data-ok") === "true", `applied: ${await page.textContent("#outcome")}`);
    await page.goto(url + "/settings");
    check((await page.textContent("#economy")).includes("when_different"), "the running configuration has the levers");
    await ask(`host-sees ${device} ${encodeURIComponent(renamed)}`);
    await ask(`host-lacks ${device} ${encodeURIComponent("Run Seconds")}`);
  }],
  ["15-two-admins", async () => {
    const r = await call(page, "POST", "/auth/users", { username: "bea", password, role: "admin" });
    check(r.status === 201, `second admin created: ${r.status} ${r.text}`);
    // Ada begins a draft...
    await open("/settings", '#mqtt a[href="/edit/mqtt"]');
    await page.fill("#f-keep_alive_s", "50");
    await submit("#save");
    await draftShows("mqtt.keep_alive_s");
    check(!(await page.isVisible("#stale")), "a fresh draft is current");
    // ...while Bea, in a browser of her own, changes the report window and applies.
    const other = await launch({ ignoreHTTPSErrors: true });
    try {
      const bea = other.page;
      await login(bea, "bea", password);
      await bea.goto(url + "/edit/economy");
      await bea.fill("#f-report_window_ms", "2000");
      await submitOn(bea, "#save");
      await bea.goto(url + "/config");
      await submitOn(bea, "#apply");
      check(await bea.getAttribute("#outcome", "data-ok") === "true", `Bea applied: ${await bea.textContent("#outcome")}`);
    } finally {
      await other.close();
    }
    // Ada's draft would undo Bea's window: the page says so and Apply is off.
    await page.goto(url + "/config");
    await page.waitForSelector("#stale");
    check(await page.isDisabled("#apply"), "Apply is off for a stale draft");
    await shot(page, "15-stale-draft");
    // Sent anyway, the apply is refused and names Bea's (the answer is the page it
    // redirects to, with the outcome).
    const sent = await call(page, "POST", "/config/apply", {});
    check(sent.text.includes('data-ok="false"') && sent.text.includes("apply by bea"),
      `the refusal names Bea's apply: ${sent.status}`);
    await page.reload();
    const refusal = page.locator('#audit tr[data-action="apply"]').first();
    check((await refusal.textContent()).includes("refused"), "the audit shows the refusal");
    await submit("#discard");
    check(!(await page.isVisible("#stale")), "no stale notice without a draft");
    await page.goto(url + "/settings");
    const economy = await page.textContent("#economy");
    check(economy.includes("2000"), `Bea's window stays: ${economy}`);
  }],
]);

await close();
process.stdout.write(`@@ finished ${ok ? "ok" : "failed"}\n`);
process.exit(ok ? 0 : 1);
