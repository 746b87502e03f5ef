#!/usr/bin/env node
// Load benchmark of the dispatcher console in the browser.
//
// How to run (from the repository root; Debian's chromium installed, see
// .ci/console.sh):
//
//   cargo build -p lastmile
//   (cd tests/console && npm ci)
//   node benches/console-load.mjs                 # 1,000 incidents, 100 events/s for 30 s
//   node benches/console-load.mjs --incidents 1000 --rate 100 --seconds 30 --json
//
// LASTMILE_BIN=path/to/lastmile picks the binary (default target/debug/lastmile).
//
// What it does: starts `lastmile serve --in-memory` (auth off, the demo
// fleet of 844 units, every tier's acknowledgement timeout and target an
// hour so that no timer adds events during the run); takes a pool of
// enterprise stations out of service (so dispatch leaves them alone);
// reports 1,000 open incidents through the JSON API (32 at a time; the fleet
// cannot cover them all, which is fine: tiers go SHORT); opens the console
// in headless Chromium and waits for the 1,000 incidents on the board; then
// for 30 s drives the live feed at 100 events/s by toggling the pool's units
// between OUT_OF_SERVICE and AVAILABLE (`POST /v1/units/{id}/status`, one
// UNIT_STATUS_CHANGED event each), and reports:
//   - the console's own figures from `window.lastmileConsole.stats()`,
//     sampled every 100 ms while the feed is driven: `feedLagMs` (now minus
//     the server time of the last event the page applied) and `frameMs`
//     (the page's last frame interval), as median / p90 / max;
//   - frame times measured beside it by this script (requestAnimationFrame
//     intervals during the driven window), median / p90 / max;
//   - the feed rate actually driven.
// There is no pass/fail threshold: the figures go in BENCHMARKS.md.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { launchBrowser, openConsole, screenshotDir, Shots } from '../tests/console/helpers/browser.mjs';
import { waitReady } from '../tests/console/helpers/console.mjs';
import { apiClient, demoUnits, lastmileBin, removeDir, repoRoot, startServer, writeConfig } from '../tests/console/helpers/server.mjs';

const { values: opt } = parseArgs({
  options: {
    incidents: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '30' },
    pool: { type: 'string', default: '200' },
    json: { type: 'boolean', default: false },
  },
});
const INCIDENTS = Number(opt.incidents);
const RATE = Number(opt.rate);
const SECONDS = Number(opt.seconds);
const POOL = Number(opt.pool);

const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

// A small deterministic PRNG (mulberry32), so every run reports the same places.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function quantiles(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const q = (p) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))];
  return { n: v.length, median: q(0.5), p90: q(0.9), max: v[v.length - 1] };
}

// window.lastmileConsole.stats() as { name: {n, median, p90, max} }: arrays
// of samples are summarised here, summaries passed through as they are.
function summariseStats(stats) {
  const out = {};
  const walk = (prefix, v) => {
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x === 'number')) out[prefix] = quantiles(v);
      return;
    }
    if (v && typeof v === 'object') {
      const keys = Object.keys(v);
      if (keys.some((k) => /^(median|p50|p90|max)$/i.test(k))) {
        out[prefix] = v;
        return;
      }
      for (const k of keys) walk(prefix ? `${prefix}.${k}` : k, v[k]);
      return;
    }
    if (typeof v === 'number') out[prefix] = v;
  };
  walk('', stats);
  return out;
}

async function pooled(items, concurrency, fn) {
  let next = 0;
  const results = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i], i);
      }
    }),
  );
  return results;
}

const fmt = (s) =>
  s && typeof s === 'object' && 'median' in s
    ? `median ${Number(s.median).toFixed(1)}  p90 ${Number(s.p90).toFixed(1)}  max ${Number(s.max).toFixed(1)}  (n ${s.n ?? '?'})`
    : JSON.stringify(s);

async function main() {
  const quiet = [];
  for (const t of ['t1', 't3', 't5', 't10']) {
    quiet.push([`dispatch.tiers.${t}`, 'target_s', '3600'], [`dispatch.tiers.${t}`, 'ack_timeout_s', '3600']);
  }
  const cfg = writeConfig({ edits: quiet });
  log(`lastmile: ${lastmileBin}`);
  const server = await startServer({ configPath: cfg.configPath });
  const api = apiClient(server.baseUrl);
  let browser;
  try {
    // The pool whose status toggles drive the feed.
    const fleet = demoUnits();
    const pool = fleet.filter((u) => u.tier === 1).slice(0, POOL).map((u) => u.id);
    await pooled(pool, 16, (id) => api.post(`/v1/units/${id}/status`, { status: 'OUT_OF_SERVICE' }));

    // 1,000 open incidents at random grid cells' centres.
    const grid = JSON.parse(readFileSync(join(repoRoot, 'config', 'luqiao', 'grid.geojson'), 'utf8')).features.map((f) => {
      const ring = f.geometry.type === 'Polygon' ? f.geometry.coordinates[0] : f.geometry.coordinates[0][0];
      const lng = ring.reduce((s, p) => s + p[0], 0) / ring.length;
      const lat = ring.reduce((s, p) => s + p[1], 0) / ring.length;
      return { lat, lng };
    });
    const rand = prng(13510);
    const kinds = ['FIRE', 'FLOOD', 'RESCUE', 'HAZMAT', 'TRAFFIC', 'MEDICAL', 'OTHER'];
    const reports = Array.from({ length: INCIDENTS }, (_, i) => ({
      external_id: `console-load-${i}`,
      location: grid[Math.floor(rand() * grid.length)],
      kind: kinds[Math.floor(rand() * kinds.length)],
      severity: 1 + Math.floor(rand() * 4),
      description: `console load ${i}`,
    }));
    const t0 = Date.now();
    await pooled(reports, 32, (body) => api.post('/v1/incidents', body));
    log(`${INCIDENTS} incidents reported in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    browser = await launchBrowser();
    const ui = await openConsole(browser);
    const { page } = ui;
    const tLoad = Date.now();
    await page.goto(`${server.baseUrl}/`);
    await waitReady(page, ui.problems, 120000);
    await page.waitForFunction(
      (n) => document.querySelectorAll('#board [data-testid="incident-row"]').length >= n ||
        (window.lastmileConsole?.incidentIds?.() ?? []).length >= n,
      INCIDENTS,
      { timeout: 120000, polling: 500 },
    );
    const loadS = (Date.now() - tLoad) / 1000;
    log(`console loaded with ${INCIDENTS} incidents in ${loadS.toFixed(1)} s`);
    const hasStats = await page.evaluate(() => typeof window.lastmileConsole?.stats === 'function');
    if (!hasStats) log('window.lastmileConsole.stats is not a function: only this script\'s frame times are reported');
    const statsBefore = hasStats ? await page.evaluate(() => window.lastmileConsole.stats()) : null;

    // Samples of stats() (its feed lag and frame time are values of the
    // moment) every 100 ms, and this script's own frame sampler, for the
    // driven window.
    await page.evaluate((withStats) => {
      window.__benchSamples = [];
      if (withStats) {
        window.__benchSampler = setInterval(() => window.__benchSamples.push(window.lastmileConsole.stats()), 100);
      }
      const t = (window.__benchFrames = { deltas: [], on: true, last: performance.now() });
      const tick = (now) => {
        t.deltas.push(now - t.last);
        t.last = now;
        if (t.on) requestAnimationFrame(tick);
      };
      requestAnimationFrame((now) => {
        t.last = now;
        requestAnimationFrame(tick);
      });
    }, hasStats);

    // Drive the feed: RATE status toggles per second for SECONDS.
    const status = new Map(pool.map((id) => [id, 'OUT_OF_SERVICE']));
    let sent = 0;
    let ok = 0;
    let refused = 0;
    const inflight = new Set();
    const tDrive = Date.now();
    const end = tDrive + SECONDS * 1000;
    let i = 0;
    while (Date.now() < end) {
      const due = Math.floor(((Date.now() - tDrive) / 1000) * RATE);
      while (sent < due) {
        const id = pool[i++ % pool.length];
        const to = status.get(id) === 'OUT_OF_SERVICE' ? 'AVAILABLE' : 'OUT_OF_SERVICE';
        status.set(id, to);
        sent++;
        const p = api
          .call('POST', `/v1/units/${id}/status`, { status: to })
          .then((r) => (r.status === 200 ? ok++ : refused++))
          .catch(() => refused++)
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(inflight);
    const driveS = (Date.now() - tDrive) / 1000;
    await new Promise((r) => setTimeout(r, 2000)); // let the last events arrive
    const { frames, samples } = await page.evaluate(() => {
      window.__benchFrames.on = false;
      clearInterval(window.__benchSampler);
      return { frames: window.__benchFrames.deltas, samples: window.__benchSamples };
    });
    // Samples taken in the driven window only (the 2 s drain excluded).
    const driven = samples.slice(0, Math.max(1, Math.floor((driveS * 1000) / 100)));
    const statsAfter = hasStats ? await page.evaluate(() => window.lastmileConsole.stats()) : null;
    await new Shots(90).take(page, 'bench-console-load');

    const result = {
      lastmile: lastmileBin,
      incidents: INCIDENTS,
      units: fleet.length,
      console_load_s: Number(loadS.toFixed(2)),
      drive: { seconds: Number(driveS.toFixed(1)), sent, ok, refused, events_per_s: Number((ok / driveS).toFixed(1)) },
      console_feed_lag_ms: quantiles(driven.map((x) => x.feedLagMs)),
      console_frame_ms: quantiles(driven.map((x) => x.frameMs)),
      console_events_received: statsAfter && statsBefore ? statsAfter.events - statsBefore.events : null,
      console_stats_after: statsAfter ? summariseStats(statsAfter) : null,
      frame_ms_measured: quantiles(frames),
      page_problems: ui.problems.slice(0, 20),
    };
    writeFileSync(join(screenshotDir, 'bench-console-load.json'), `${JSON.stringify(result, null, 2)}\n`);
    if (opt.json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      console.log(`console load: ${INCIDENTS} open incidents, ${fleet.length} units, feed driven at ${result.drive.events_per_s} events/s for ${result.drive.seconds} s (${ok} status changes, ${refused} refused)`);
      console.log(`  console loaded in ${result.console_load_s} s`);
      if (hasStats) {
        console.log(`  feed lag ms (stats().feedLagMs every 100 ms): ${fmt(result.console_feed_lag_ms)}`);
        console.log(`  frame ms (stats().frameMs every 100 ms):      ${fmt(result.console_frame_ms)}`);
        console.log(`  events received by the page while driven: ${result.console_events_received}`);
      }
      console.log(`  frame ms (requestAnimationFrame intervals, measured by the bench): ${fmt(result.frame_ms_measured)}`);
      if (ui.problems.length) console.log(`  the page reported ${ui.problems.length} problem(s), e.g. ${ui.problems[0]}`);
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    await server.stop();
    removeDir(cfg.dir);
  }
}

main().catch((e) => {
  console.error(`console-load: ${e.stack ?? e}`);
  process.exit(1);
});
