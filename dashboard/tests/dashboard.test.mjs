// Browser test of the dashboard: headless Debian Chromium driven by playwright-core against a
// running smsgate (with smsc-sim behind it and history on), started by tests/dashboard.rs,
// which passes SMSGATE_URL, CLIENT_KEY, ADMIN_KEY and, optionally, SCREENSHOT_DIR.
import { chromium } from "playwright-core";

const url = process.env.SMSGATE_URL;
const clientKey = process.env.CLIENT_KEY;
const adminKey = process.env.ADMIN_KEY;
const shots = process.env.SCREENSHOT_DIR;
if (!url || !clientKey || !adminKey) {
  console.error("SMSGATE_URL, CLIENT_KEY and ADMIN_KEY are required");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let passed = 0;
let failed = 0;
async function check(name, f) {
  try {
    await f();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e.message}`);
  }
}
const expect = (cond, what) => {
  if (!cond) throw new Error(what);
};

async function signIn(page, key) {
  await page.goto(`${url}/dashboard`);
  await page.fill("#key", key);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#views:not([hidden])", { timeout: 10000 });
}

// === a client: test message to delivered, a refusal in the live feed, phone width ===
const phone = await browser.newContext({ viewport: { width: 390, height: 844 } });
const page = await phone.newPage();
page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
const external = [];
page.on("request", (r) => {
  if (!r.url().startsWith(url)) external.push(r.url());
});

await check("client signs in", async () => {
  await signIn(page, clientKey);
  expect((await page.textContent("#who")).includes("client acme"), "who says client acme");
});

await check("the refusal feed goes live", async () => {
  await page.waitForSelector("#feed-state.live", { timeout: 10000 });
});

await check("a test message is shown accepted → submitted → delivered", async () => {
  await page.fill("#t-link", "100");
  await page.click("#t-send");
  await page.waitForSelector('#lifecycle [data-status="delivered"]', { timeout: 20000 });
  const steps = await page.$$eval("#lifecycle li", (l) => l.map((e) => e.dataset.status || e.textContent));
  expect(JSON.stringify(steps) === JSON.stringify(["accepted", "submitted", "delivered"]), `steps ${steps}`);
});

await check("a refused message appears in the live feed", async () => {
  await page.fill("#t-link", "no-such-link");
  await page.click("#t-send");
  await page.waitForFunction(
    () => [...document.querySelectorAll("#feed tr")].some((r) => r.textContent.includes("unknown_link")),
    null,
    { timeout: 10000 },
  );
  const text = await page.textContent("#t-result");
  expect(text.includes("unknown_link"), `result ${text}`);
});

await check("history lists the client's messages", async () => {
  await page.waitForFunction(() => document.querySelectorAll("#messages tbody tr").length >= 2, null, { timeout: 15000 });
});

await check("usable at a phone's width (no sideways scrolling)", async () => {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  expect(scroll <= inner, `page is ${scroll}px wide in a ${inner}px viewport`);
  if (shots) await page.screenshot({ path: `${shots}/dashboard-phone.png`, fullPage: true });
});

await check("dark theme switches and stays", async () => {
  const before = await page.evaluate(() => document.documentElement.dataset.theme);
  await page.click("#theme");
  const after = await page.evaluate(() => document.documentElement.dataset.theme);
  expect(before !== after && ["light", "dark"].includes(after), `${before} → ${after}`);
});

// === the admin: links, rates under load, everyone's refusals ===
const desk = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
const admin = await desk.newPage();
admin.on("pageerror", (e) => console.log(`page error: ${e.message}`));

await check("admin signs in and sees link 100 bound", async () => {
  await signIn(admin, adminKey);
  await admin.waitForFunction(
    () => [...document.querySelectorAll("#links tbody tr")].some((r) => r.textContent.startsWith("100") && r.querySelector(".badge.bound")),
    null,
    { timeout: 10000 },
  );
});

await check("under load the rates move and refusals stream in", async () => {
  await admin.waitForSelector("#feed-state.live", { timeout: 10000 });
  // Longer when taking screenshots, so the picture shows steady load.
  const until = Date.now() + (shots ? 12000 : 4000);
  let n = 0;
  const worker = async () => {
    while (Date.now() < until) {
      const link = n++ % 25 === 0 ? "no-such-link" : "100";
      await fetch(`${url}/api/v1/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${clientKey}`, "Content-Type": "application/json" },
        body: JSON.stringify({ to: `+49151${String(1000000 + (n % 100000)).padStart(7, "0")}`, from: "ACME", text: "load", link }),
      });
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  await admin.waitForFunction(() => {
    const cell = document.querySelector("#rates tbody tr:nth-child(2) td:nth-child(2)");
    return cell && parseFloat(cell.textContent) > 0;
  }, null, { timeout: 10000 });
  await admin.waitForFunction(() => document.querySelectorAll("#feed tr").length >= 3, null, { timeout: 10000 });
  await admin.waitForSelector("#usage svg.chart", { timeout: 15000 });
  if (shots) await admin.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });
});

await check("nothing was loaded from anywhere but smsgate", async () => {
  expect(external.length === 0, `external requests: ${external}`);
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
