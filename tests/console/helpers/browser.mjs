// Debian's chromium driven by playwright-core, a page that records every
// request it makes and every error it shows, and numbered screenshots.

import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const consoleDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const screenshotDir = process.env.LASTMILE_SCREENSHOTS ?? join(consoleDir, 'screenshots');

export const CHROMIUM = process.env.LASTMILE_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Every wait in the browser is bounded by this unless it says otherwise. */
export const STEP_TIMEOUT_MS = 15000;

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install -y chromium fonts-wqy-zenhei (.ci/console.sh does)`);
  }
  // playwright-core gives the browser a fresh --user-data-dir of its own.
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 60000 });
}

// Runs in the page before its own scripts: counts the page's attempts to
// make a sound (for the audible alert), and keeps the Leaflet map the
// console creates (if Leaflet is loaded as the global `L`) so that a test
// can click a chosen latitude/longitude.
const INIT_SCRIPT = `(() => {
  const t = (window.__lastmileTest = { sounds: 0, map: null });
  const count = () => { t.sounds += 1; };
  try {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (AC) {
      for (const m of ['createOscillator', 'createBufferSource']) {
        const orig = AC.prototype[m];
        if (orig) AC.prototype[m] = function (...a) { count(); return orig.apply(this, a); };
      }
    }
    const play = HTMLMediaElement.prototype.play;
    HTMLMediaElement.prototype.play = function (...a) { count(); return play.apply(this, a); };
    if (window.speechSynthesis) {
      const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
      window.speechSynthesis.speak = (u) => { count(); return speak(u); };
    }
  } catch (e) {}
  let leaflet;
  try {
    Object.defineProperty(window, 'L', {
      configurable: true,
      get() { return leaflet; },
      set(v) {
        leaflet = v;
        try {
          if (v && v.Map && v.Map.addInitHook) v.Map.addInitHook(function () { t.map = this; });
        } catch (e) {}
      },
    });
  } catch (e) {}
})();`;

/**
 * A fresh context and page on the console. Records every request's URL in
 * `requests`, and console errors, page errors and failed requests in
 * `problems` (printed with a failure).
 */
export async function openConsole(browser, { viewport = { width: 1600, height: 1000 }, locale = 'zh-CN', timezoneId = 'UTC' } = {}) {
  const context = await browser.newContext({ viewport, locale, timezoneId, deviceScaleFactor: 1 });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(30000);
  await context.addInitScript(INIT_SCRIPT);
  const page = await context.newPage();
  const requests = [];
  const problems = [];
  const watch = (p) => {
    p.on('request', (r) => requests.push({ url: r.url(), method: r.method(), type: r.resourceType() }));
    p.on('websocket', (ws) => requests.push({ url: ws.url(), method: 'WEBSOCKET', type: 'websocket' }));
    p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    p.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    p.on('requestfailed', (r) => {
      const f = r.failure()?.errorText ?? '';
      // A reload or a closed event stream aborts requests; that is not a fault.
      if (!/ERR_ABORTED/.test(f)) problems.push(`request failed: ${r.method()} ${r.url()} ${f}`);
    });
    p.on('response', (r) => {
      if (r.status() < 400) return;
      const line = `HTTP ${r.status()}: ${r.request().method()} ${r.url()}`;
      r.text().then(
        (body) => problems.push(`${line} ${body.slice(0, 300)}`),
        () => problems.push(line),
      );
    });
    p.on('dialog', (d) => d.accept(d.type() === 'prompt' ? 'console test' : undefined).catch(() => {}));
  };
  context.on('page', watch);
  watch(page);
  return { context, page, requests, problems };
}

/**
 * Numbered screenshots: tests/console/screenshots/NN-name.png, numbers from
 * `start`; a run first removes the older run's shots numbered start..end.
 */
export class Shots {
  constructor(start = 1, end = start + 38, dir = screenshotDir) {
    this.n = start;
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    const ignore = join(dir, '.gitignore');
    if (!existsSync(ignore)) writeFileSync(ignore, '*\n!.gitignore\n');
    for (const name of readdirSync(dir)) {
      const m = name.match(/^(\d+)-.*\.png$/);
      if (m && Number(m[1]) >= start && Number(m[1]) <= end) rmSync(join(dir, name), { force: true });
    }
  }
  async take(page, name) {
    const file = join(this.dir, `${String(this.n++).padStart(2, '0')}-${name}.png`);
    try {
      await page.screenshot({ path: file, timeout: 10000 });
    } catch (e) {
      process.stderr.write(`screenshot ${file} failed: ${e.message}\n`);
    }
    return file;
  }
}

/** Requests that did not go to the lastmile listener (data: and blob: stay in the page). */
export function foreignRequests(requests, httpAddr) {
  return requests.filter(({ url }) => {
    if (url.startsWith('data:') || url.startsWith('blob:') || url === 'about:blank') return false;
    try {
      const u = new URL(url);
      return !(['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol) && u.host === httpAddr);
    } catch {
      return true;
    }
  });
}

/** Polls `fn` (node side) until it returns a truthy value; throws `message()` at the deadline. */
export async function waitUntil(fn, { timeout = STEP_TIMEOUT_MS, interval = 250, message = () => 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      let m;
      try {
        m = await (typeof message === 'function' ? message(last) : message);
      } catch (e) {
        m = `(the failure message itself failed: ${e.message})`;
      }
      throw new Error(`timed out after ${timeout} ms waiting for ${m}${lastError ? ` (last error: ${lastError.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** `window.lastmileConsole.unitPosition(id)` as {lat, lng} (an array, a LatLng or an object). */
export async function unitPosition(page, unitId) {
  const p = await page.evaluate((id) => {
    const c = window.lastmileConsole;
    if (!c || typeof c.unitPosition !== 'function') return { missing: true };
    const v = c.unitPosition(id);
    if (!v) return null;
    if (Array.isArray(v)) return { lat: Number(v[0]), lng: Number(v[1]) };
    return { lat: Number(v.lat), lng: Number(v.lng ?? v.lon ?? v.lng) };
  }, unitId);
  if (p && p.missing) throw new Error('window.lastmileConsole.unitPosition is not a function');
  return p;
}

/** Distance in metres (haversine). */
export function metres(a, b) {
  const R = 6371008.8;
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLng = (b.lng - a.lng) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(h));
}

/**
 * Clicks the map at a latitude/longitude when the page's Leaflet map is
 * known (see INIT_SCRIPT), else at `fallback` (fractions of the map's box).
 * Returns { lat, lng } clicked, or null when it had to click blind.
 */
export async function clickMapAt(page, lat, lng, fallback = { x: 0.5, y: 0.5 }) {
  const map = page.locator('#map');
  await map.waitFor({ state: 'visible' });
  const point = await page.evaluate(
    ([la, ln]) => {
      const m = window.__lastmileTest && window.__lastmileTest.map;
      if (!m || typeof m.latLngToContainerPoint !== 'function') return null;
      const p = m.latLngToContainerPoint([la, ln]);
      const size = m.getSize();
      if (p.x < 5 || p.y < 5 || p.x > size.x - 5 || p.y > size.y - 5) {
        m.setView([la, ln], m.getZoom(), { animate: false });
        const q = m.latLngToContainerPoint([la, ln]);
        return { x: q.x, y: q.y };
      }
      return { x: p.x, y: p.y };
    },
    [lat, lng],
  );
  if (point) {
    await map.click({ position: point, force: true });
    return { lat, lng };
  }
  const box = await map.boundingBox();
  await map.click({ position: { x: box.width * fallback.x, y: box.height * fallback.y }, force: true });
  return null;
}

/** Node-side diagnostics text for an assertion message. */
export function describeProblems(problems, max = 20) {
  if (!problems.length) return '(the page reported no errors)';
  return `the page reported:\n  ${problems.slice(-max).join('\n  ')}`;
}

/**
 * Whether the page's Leaflet map draws a layer with a point (a marker or a
 * circle marker) within `radius` metres of lat/lng: true/false, or null
 * when the map is not reachable (see INIT_SCRIPT).
 */
export async function mapHasPointNear(page, lat, lng, radius = 30) {
  return page.evaluate(
    ([la, ln, r]) => {
      const m = window.__lastmileTest && window.__lastmileTest.map;
      if (!m || typeof m.eachLayer !== 'function') return null;
      let found = false;
      m.eachLayer((layer) => {
        if (found || typeof layer.getLatLng !== 'function') return;
        const p = layer.getLatLng();
        if (p && m.distance(p, [la, ln]) <= r) found = true;
      });
      return found;
    },
    [lat, lng, radius],
  );
}

/**
 * The lines the page's Leaflet map draws from near lat/lng: for each, its
 * other end, as [{lat, lng}]; null when the map is not reachable.
 */
export async function mapLinesFrom(page, lat, lng, radius = 30) {
  return page.evaluate(
    ([la, ln, r]) => {
      const m = window.__lastmileTest && window.__lastmileTest.map;
      if (!m || typeof m.eachLayer !== 'function') return null;
      const ends = [];
      m.eachLayer((layer) => {
        if (typeof layer.getLatLngs !== 'function' || typeof layer.getLatLng === 'function') return;
        const pts = layer.getLatLngs();
        if (!Array.isArray(pts) || pts.length !== 2 || Array.isArray(pts[0])) return; // lines only, not polygons
        const [a, b] = pts;
        if (m.distance(a, [la, ln]) <= r) ends.push({ lat: b.lat, lng: b.lng });
        else if (m.distance(b, [la, ln]) <= r) ends.push({ lat: a.lat, lng: a.lng });
      });
      return ends;
    },
    [lat, lng, radius],
  );
}

/**
 * Moves the mouse over lat/lng on the page's Leaflet map, zoomed to `zoom`
 * there; returns a function that restores the view, or null when the map is
 * not reachable.
 */
export async function hoverMapAt(page, lat, lng, zoom = 15) {
  const at = await page.evaluate(
    ([la, ln, z]) => {
      const m = window.__lastmileTest && window.__lastmileTest.map;
      if (!m) return null;
      window.__lastmileTest.view = { center: m.getCenter(), zoom: m.getZoom() };
      m.setView([la, ln], z, { animate: false });
      const p = m.latLngToContainerPoint([la, ln]);
      return { x: p.x, y: p.y };
    },
    [lat, lng, zoom],
  );
  if (!at) return null;
  const box = await page.locator('#map').boundingBox();
  await page.mouse.move(box.x + at.x - 12, box.y + at.y - 6);
  await page.mouse.move(box.x + at.x, box.y + at.y, { steps: 4 });
  return async () => {
    await page.mouse.move(box.x + box.width / 2, box.y - 20, { steps: 3 }); // off the map (a grid tooltip follows the mouse)
    await page.evaluate(() => {
      const t = window.__lastmileTest;
      if (t.map && t.view) t.map.setView(t.view.center, t.view.zoom, { animate: false });
    });
  };
}
