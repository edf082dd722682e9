// The baseline of clerk's throughput benchmark: Playwright (playwright-core, driving the
// same Debian Chromium clerk uses, never a downloaded browser) doing exactly the evidence
// job clerk does: for each order, open the order's route, wait for its reference and its
// tracking number, read four fields, take a full-page PNG, hash it (SHA-256) and write it.
//
// Usage: node peer.js JOB.json
// JOB: { chromium, base, storageState, pages, width, height, out,
//        area: { route, wait: [selectors], fields: {name: selector} }, orders: [ids] }
// Prints one JSON line: { seconds, launch_seconds, orders: { id: { sha256, fields } } }.
// `{id}` in route, wait and field selectors is replaced by the order id.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { chromium } = require('playwright-core');

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const t0 = process.hrtime.bigint();
  const args = ['--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-quic', '--hide-scrollbars', '--force-color-profile=srgb', '--font-render-hinting=none',
    '--disable-gpu', '--disable-partial-raster', '--disable-dev-shm-usage'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  const browser = await chromium.launch({ executablePath: job.chromium, headless: true, args });
  const context = await browser.newContext({
    storageState: job.storageState,
    viewport: { width: job.width, height: job.height },
    deviceScaleFactor: 1,
    reducedMotion: 'reduce',
  });
  const pages = [];
  for (let i = 0; i < job.pages; i++) pages.push(await context.newPage());
  const launched = process.hrtime.bigint();
  fs.mkdirSync(job.out, { recursive: true });
  const queue = job.orders.slice();
  const results = {};
  const sub = (s, id) => s.split('{id}').join(id);
  await Promise.all(pages.map(async (page) => {
    for (;;) {
      const id = queue.shift();
      if (id === undefined) return;
      await page.goto(new URL(sub(job.area.route, id), job.base).href);
      for (const sel of job.area.wait) await page.waitForSelector(sub(sel, id), { state: 'visible' });
      const fields = {};
      for (const [name, sel] of Object.entries(job.area.fields)) {
        fields[name] = ((await page.textContent(sub(sel, id))) || '').trim();
      }
      const png = await page.screenshot({ fullPage: true });
      const sha256 = crypto.createHash('sha256').update(png).digest('hex');
      fs.writeFileSync(path.join(job.out, sha256 + '.png'), png);
      results[id] = { sha256, fields };
    }
  }));
  const done = process.hrtime.bigint();
  await browser.close();
  process.stdout.write(JSON.stringify({
    seconds: Number(done - t0) / 1e9,
    launch_seconds: Number(launched - t0) / 1e9,
    orders: results,
  }) + '\n');
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
