// End-to-end test of the neural-style web UI in headless Chromium (Debian's, driven by
// playwright-core): drop a photo and pick a painting, start a job, see the preview change
// live at least twice, stop it, download the result and check it is a PNG of the asked
// size; then check the page fits a phone-sized screen without sideways scrolling.
//
//   node page.mjs URL CONTENT STYLE
// Environment: E2E_SIZE (64), E2E_ITERATIONS (2000), E2E_PREVIEWS (2), E2E_SCREENSHOT (a
// PNG path: the page mid-run), CHROMIUM (/usr/bin/chromium).
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { chromium } from "playwright-core";

const [url, content, style] = process.argv.slice(2);
if (!url || !content || !style) {
  console.error("usage: node page.mjs URL CONTENT STYLE");
  process.exit(2);
}
const size = Number(process.env.E2E_SIZE || 64);
const iterations = Number(process.env.E2E_ITERATIONS || 2000);
const previews = Number(process.env.E2E_PREVIEWS || 2);

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// Width and height of a PNG, from its IHDR chunk.
function pngSize(bytes) {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  check(signature.every((b, i) => bytes[i] === b), "the download is not a PNG");
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("network").textContent !== "");

  // The photo by drag and drop onto its zone, the painting through the file picker.
  const photo = readFileSync(content).toString("base64");
  await page.evaluate(async ([b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const type = name.endsWith(".png") ? "image/png" : "image/jpeg";
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type }));
    const zone = document.getElementById("content-drop");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, [photo, basename(content)]);
  await page.waitForSelector("#content-thumbs img");
  await page.setInputFiles("#style-input", style);
  await page.waitForSelector("#style-thumbs img");
  await page.fill("#size", String(size));
  await page.fill("#iterations", String(iterations));
  await page.click("#start");

  // Live previews.
  await page.waitForFunction((n) => Number(document.getElementById("preview").dataset.updates) >= n,
    previews, { timeout: 180000 });
  const live = await page.evaluate(() => ({
    updates: Number(document.getElementById("preview").dataset.updates),
    status: document.getElementById("status").textContent,
    eta: document.getElementById("eta").textContent,
  }));
  check(live.status.startsWith("Painting"), `status while running: ${live.status}`);
  if (process.env.E2E_SCREENSHOT) {
    await page.screenshot({ path: process.env.E2E_SCREENSHOT, fullPage: true });
  }

  // Stop: the page says so and offers the best image so far.
  await page.click("#stop");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Stopped"),
    null, { timeout: 60000 });
  await page.waitForSelector("#download:not([hidden])");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  const file = readFileSync(await download.path());
  const [w, h] = pngSize(file);
  check(Math.max(w, h) === size, `downloaded ${w}x${h}, asked for ${size}`);
  await page.waitForSelector("#gallery figure img");
  const gallery = await page.locator("#gallery figure").count();

  // A phone-sized screen: everything fits the width.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(url);
  await phone.waitForFunction(() => document.getElementById("network").textContent !== "");
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow}px wider than a 390px screen`);
  if (process.env.E2E_PHONE_SCREENSHOT) {
    await phone.screenshot({ path: process.env.E2E_PHONE_SCREENSHOT, fullPage: true });
  }
  check(errors.length === 0, `errors in the page: ${errors.join("; ")}`);
  // The page's client token: a cookie that scripts cannot read and other sites do not send.
  const cookie = (await context.cookies()).find((c) => c.name === "neural_style_client");
  check(cookie && cookie.httpOnly && cookie.sameSite === "Strict", `client cookie: ${JSON.stringify(cookie)}`);
  console.log(JSON.stringify({
    previews_seen: live.updates, eta: live.eta, download: { bytes: file.length, width: w, height: h },
    suggested_name: download.suggestedFilename(), gallery, phone_overflow_px: overflow,
    client_token: cookie.value,
  }));
} finally {
  await browser.close();
}
