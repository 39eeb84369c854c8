// The overview of one host instance of a fleet in a real Chromium, against two in-process
// instances the cargo test started (host-app/tests/host_fleet.rs): the instance's own
// nodes with a Rebirth button and a link, the other instance's nodes listed as observed
// with their owner, a node of a group nobody owns with no owner, and a death observed live.
import { url, ask, launch, run, check, login } from "./lib.mjs";

const user = process.env.PANEL_USER;
const password = process.env.PANEL_PASSWORD;
const me = process.env.HOST_ID;
const rowOf = (node) => `tr.node[data-node="${node}"]`;
const owner = async (node) => (await page.textContent(`${rowOf(node)} td.owner`)).trim();

const { page, close } = await launch();

const ok = await run(page, [
  ["01-owned-and-observed", async () => {
    await login(page, user, password);
    for (const node of ["Plant1/E1", "Plant2/E2", "Pipe-North/E3", "Plant3/E4"]) {
      await page.waitForSelector(`${rowOf(node)} .badge.online`);
    }
    check(await owner("Plant1/E1") === "this host", `Plant1/E1 owned by this host (${me})`);
    check(await page.getAttribute(`${rowOf("Plant1/E1")} td.owner span`, "title") === `${me} ingests it and takes its commands`, "its id in the title");
    check(await page.$(`${rowOf("Plant1/E1")} a[href="/node/Plant1/E1"]`), "an owned node links to its page");
    check(await page.$(`${rowOf("Plant1/E1")} button.rebirth`), "an owned node has a Rebirth button");
    for (const node of ["Plant2/E2", "Pipe-North/E3"]) {
      check(await owner(node) === "HostB", `${node} observed, owned by HostB, got ${await owner(node)}`);
      check(await page.$(`${rowOf(node)}.observed`), `${node} marked observed`);
      check(!(await page.$(`${rowOf(node)} button.rebirth`)), `${node} has no Rebirth button`);
    }
    check(await owner("Plant3/E4") === "unknown", "a group nobody owns has no owner");
    check((await page.textContent(`#peers [data-peer="HostB"] .badge`)).trim() === "ONLINE", "the peer's STATE shown");
    check((await page.textContent(`${rowOf("Plant2/E2")} td[data-label="Seq gaps"]`)).trim() === "–", "gaps are the owner's to count");
  }],
  ["02-observed-death", async () => {
    await ask("kill Plant2/E2");
    await page.waitForSelector(`${rowOf("Plant2/E2")} .badge.offline`);
  }],
]);
await close();
process.stdout.write(`@@ finished ${ok ? "ok" : "failed"}\n`);
process.exit(ok ? 0 : 1);
