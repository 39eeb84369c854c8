// What the browser scripts share: Chromium launched as the test command installs it,
// the line protocol with the cargo test that started the processes, steps with
// screenshots, and small waits.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const url = must("PANEL_URL");
const shots = must("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });

function must(name) {
  const v = process.env[name];
  if (!v) { console.error(`${name} is not set`); process.exit(2); }
  return v;
}

// The cargo test answers one line per request: `ok [data]` or `error: ...`.
const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => { const w = waiting.shift(); if (w) w(l); });
export async function ask(command) {
  const answer = new Promise((resolve) => waiting.push(resolve));
  process.stdout.write(`@@ ${command}\n`);
  const reply = await answer;
  if (!reply.startsWith("ok")) throw new Error(`${command}: ${reply}`);
  return reply.slice(2).trim();
}

// A fresh profile per run; flags keep Chromium off the network and quiet.
// `ignoreHTTPSErrors`: for a server on its self-signed certificate.
export async function launch({ ignoreHTTPSErrors = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "panel-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
    acceptDownloads: true,
    ignoreHTTPSErrors,
  });
  context.setDefaultTimeout(15000);
  const page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  const close = async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); };
  return { context, page, close };
}

// Runs the named steps in order, a screenshot after each (and on failure).
export async function run(page, steps) {
  for (const [name, step] of steps) {
    try {
      await step();
      await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
      process.stdout.write(`@@ passed ${name}\n`);
    } catch (e) {
      await page.screenshot({ path: join(shots, `${name}-FAILED.png`), fullPage: true }).catch(() => {});
      console.error(`step ${name} failed at ${page.url()}: ${e.stack || e}`);
      return false;
    }
  }
  return true;
}

// An extra screenshot inside a step.
export async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

export async function login(page, user, password) {
  await page.goto(url + "/login");
  await page.fill("#username", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(url + "/"), page.click("button[type=submit]")]);
  check(await page.textContent("#user") === user, `logged in as ${user}`);
}

export async function logout(page) {
  await Promise.all([page.waitForURL(/\/login/), page.click("#logout")]);
}

// Submits a form by clicking `selector` and waits for the page it leads to.
export async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

// A fetch from the page with the session and its CSRF token.
export async function call(page, method, path, body) {
  return page.evaluate(async ([method, path, body]) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch(path, {
      method,
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, text: await r.text() };
  }, [method, path, body]);
}

// The first account, an admin, made with the setup token; leaves it logged in.
export async function setup(page, token, user, password) {
  await page.goto(`${url}/setup?token=${encodeURIComponent(token)}`);
  await page.fill("#username", user);
  await page.fill("#password", password);
  await page.fill("#confirm", password);
  await Promise.all([page.waitForURL(url + "/"), page.click("button[type=submit]")]);
  check(await page.textContent("#role") === "admin", "the first account is an admin");
}
