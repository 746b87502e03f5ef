// The dispatcher console in real headless Chromium against a real
// `lastmile serve` (auth on): one server and one page for the whole suite,
// which follows one incident from a click on the map to its close.
//
//   node --test tests/console/            (after cargo build -p lastmile; .ci/console.sh does both)
//
// Screenshots of every step: tests/console/screenshots/NN-step.png; the
// server's and terminals' output: tests/console/screenshots/*.log.
// LASTMILE_BIN picks another binary, LASTMILE_TEST_VERBOSE=1 echoes the
// server's output.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';

import {
  Shots,
  clickMapAt,
  describeProblems,
  foreignRequests,
  hoverMapAt,
  launchBrowser,
  mapLinesFrom,
  mapHasPointNear,
  metres,
  openConsole,
  screenshotDir,
  unitPosition,
  waitUntil,
} from './helpers/browser.mjs';
import {
  boardSnapshot,
  clickAction,
  incidentIds,
  need,
  needIn,
  sel,
  selectLoosely,
  waitReady,
} from './helpers/console.mjs';
import { apiClient, demoUnits, removeDir, startServer, startTerminal, writeConfig } from './helpers/server.mjs';

// Where the dispatcher clicks: a grid cell's centre (LQ-G0134, 桐屿街道) with
// no unit within 600 m (so the click lands on the map, not on a unit's
// marker), 3 enterprise stations within 800 m, 2 town rescue teams within
// 2.5 km and the 桐屿 fire station 1.6 km away.
const CLICK = { lat: 28.576603, lng: 121.331363 };
// A second incident, reported by the command system over the API.
const OTHER = { lat: 28.549219, lng: 121.36996 };

// Timers made short enough to watch (the rest is config/lastmile.toml):
// tier 5's page goes unanswered, re-pages after 20 s and breaches at 45 s;
// tier 1 and 3 pages wait 120 s (no noise before the breach); positions
// reach the feed every second.
const EDITS = [
  ['dispatch.tiers.t1', 'target_s', '120'],
  ['dispatch.tiers.t1', 'speed_m_per_s', '10'],
  ['dispatch.tiers.t1', 'ack_timeout_s', '120'],
  ['dispatch.tiers.t3', 'ack_timeout_s', '120'],
  ['dispatch.tiers.t5', 'target_s', '45'],
  ['dispatch.tiers.t5', 'turnout_s', '10'],
  ['dispatch.tiers.t5', 'speed_m_per_s', '100'],
  ['dispatch.tiers.t5', 'ack_timeout_s', '20'],
  ['dispatch.escalation', 'position_event_interval_s', '1'],
];
const TIERS = ['TIER_1', 'TIER_3', 'TIER_5', 'TIER_10'];
const CLOSE_REASON = '火已扑灭，现场清理完毕 (console test)';

const units = demoUnits();
const unitById = new Map(units.map((u) => [u.id, u]));

/** The array of entries in a timeline answer. */
function entriesOf(timeline) {
  if (Array.isArray(timeline)) return timeline;
  for (const v of Object.values(timeline ?? {})) if (Array.isArray(v)) return v;
  return [];
}

describe('the dispatcher console (auth on)', { timeout: 420000 }, () => {
  let cfg;
  let server;
  let dispatcher; // API client with the dispatcher token
  let integration;
  let browser;
  let ui; // { context, page, requests, problems }
  let page;
  const shots = new Shots(1);
  const terminals = [];
  const state = {};

  const why = () => describeProblems(ui?.problems ?? []);
  const serverTail = () => (server ? `\nserver output:\n${server.output.tail(25)}` : '');

  async function apiIncident(id = state.incident) {
    return dispatcher.get(`/v1/incidents/${id}`);
  }
  async function apiTimeline(id = state.incident) {
    return entriesOf(await dispatcher.get(`/v1/incidents/${id}/timeline`));
  }
  async function openDetail(id = state.incident) {
    await (await need(page, sel.row(id), { what: `the board row of ${id}`, problems: ui.problems })).click();
    await need(page, sel.detail, { what: `#detail after clicking ${id}'s row`, problems: ui.problems });
  }
  function requireState(t, ...keys) {
    const missing = keys.filter((k) => state[k] === undefined);
    if (missing.length) {
      t.skip(`needs ${missing.join(', ')} from an earlier step, which failed`);
      return false;
    }
    return true;
  }

  before(async () => {
    cfg = writeConfig({
      edits: EDITS,
      auth: true,
      terminalUnits: units.filter((u) => u.tier !== 1).map((u) => u.id),
    });
    server = await startServer({ configPath: cfg.configPath });
    dispatcher = apiClient(server.baseUrl, cfg.tokens.dispatcher);
    integration = apiClient(server.baseUrl, cfg.tokens.integration);
    browser = await launchBrowser();
    ui = await openConsole(browser);
    page = ui.page;
  });

  // A step that failed half-way may leave the report dialog open (modal):
  // close it so that the next step is judged on its own.
  beforeEach(async () => {
    if (!page) return;
    await page.evaluate(() => document.querySelectorAll('dialog[open]').forEach((d) => d.close())).catch(() => {});
  });

  after(async () => {
    for (const t of terminals) await t.stop();
    if (browser) await browser.close().catch(() => {});
    if (server) {
      await server.stop();
      writeFileSync(join(screenshotDir, 'server.log'), [...server.output.stdout, '--- stderr', ...server.output.stderr].join('\n'));
    }
    for (const [i, t] of terminals.entries()) {
      writeFileSync(join(screenshotDir, `terminal-${i + 1}.log`), [...t.output.stdout, '--- stderr', ...t.output.stderr].join('\n'));
    }
    if (ui?.problems.length) writeFileSync(join(screenshotDir, 'page-problems.log'), ui.problems.join('\n'));
    removeDir(cfg?.dir);
  });

  it('signs in with a dispatcher token (a wrong one is refused), holding a strict HttpOnly session cookie', async () => {
    const anonymous = await apiClient(server.baseUrl).call('GET', '/v1/incidents');
    assert.equal(anonymous.status, 401, `server: GET /v1/incidents with no token answered ${anonymous.status}, not 401`);

    const res = await page.goto(`${server.baseUrl}/`);
    assert.equal(res?.status(), 200, `server: GET / answered ${res?.status()}`);
    await need(page, sel.signin, { what: 'the sign-in form with auth on', problems: ui.problems });
    await shots.take(page, 'signin');

    await page.locator(sel.signinToken).fill('not-a-token-of-this-server');
    await page.locator(sel.signinSubmit).click();
    const error = await need(page, sel.signinError, { what: 'the sign-in error for a wrong token', problems: ui.problems });
    assert.notEqual((await error.textContent()).trim(), '', '#signin-error is visible but empty');
    await shots.take(page, 'signin-refused');

    await page.locator(sel.signinToken).fill(cfg.tokens.dispatcher);
    await page.locator(sel.signinSubmit).click();
    await need(page, sel.signin, { state: 'hidden', what: 'the sign-in form gone after a good token', problems: ui.problems });
    await waitReady(page, ui.problems);
    await need(page, sel.board, { what: 'the incident board', problems: ui.problems });
    await need(page, `${sel.connection}[data-state="live"]`, { timeout: 20000, what: 'the live feed connected', problems: ui.problems });
    await need(page, sel.signout, { what: 'the sign-out button', problems: ui.problems });

    const session = await page.evaluate(() => fetch('/console/session').then((r) => r.json()));
    assert.equal(session.auth, true, `GET /console/session: ${JSON.stringify(session)}`);
    assert.equal(session.signed_in, true, `GET /console/session: ${JSON.stringify(session)}`);
    assert.equal(session.role, 'dispatcher', `GET /console/session: ${JSON.stringify(session)}`);
    assert.equal(session.name, 'console-test-dispatcher', `GET /console/session: ${JSON.stringify(session)}`);
    assert.equal(session.time_zone, 'Asia/Shanghai', `GET /console/session: ${JSON.stringify(session)}`);

    const cookies = await ui.context.cookies(server.baseUrl);
    const session_cookie = cookies.find((c) => c.httpOnly && c.sameSite === 'Strict' && c.expires > Date.now() / 1000);
    assert.ok(session_cookie, `server: no HttpOnly, SameSite=Strict, expiring cookie; cookies: ${JSON.stringify(cookies)}`);
    await shots.take(page, 'signed-in');
  });

  it('refuses a cookie-authenticated write without the console header or from another origin', async () => {
    const body = { external_id: 'csrf-probe', location: OTHER, kind: 'FIRE', severity: 1 };
    const noHeader = await ui.context.request.post(`${server.baseUrl}/v1/incidents`, { data: body, failOnStatusCode: false });
    assert.equal(noHeader.status(), 403, `server: a POST with the session cookie and no X-Lastmile-Console answered ${noHeader.status()}: ${await noHeader.text()}`);
    const foreign = await ui.context.request.post(`${server.baseUrl}/v1/incidents`, {
      data: body,
      headers: { 'x-lastmile-console': '1', origin: 'http://attacker.example' },
      failOnStatusCode: false,
    });
    assert.equal(foreign.status(), 403, `server: a POST with Origin http://attacker.example answered ${foreign.status()}: ${await foreign.text()}`);
    const list = await dispatcher.get('/v1/incidents?status=OPEN');
    assert.equal(entriesOf(list).length, 0, `the refused writes created incidents: ${JSON.stringify(list).slice(0, 300)}`);
  });

  it('reports an incident by clicking the map', async () => {
    const before = (await incidentIds(page)) ?? [];
    const clicked = await clickMapAt(page, CLICK.lat, CLICK.lng, { x: 0.35, y: 0.45 });
    if (!clicked) process.stderr.write('note: the page\'s Leaflet map is not reachable as window.L; clicked the map blind\n');
    await need(page, sel.reportDialog, { what: 'the report dialog after a click on the map', problems: ui.problems });
    await selectLoosely(page, sel.reportKind, ['FIRE', /^fire$/i, /火/], ui.problems);
    const severity = page.locator(sel.reportSeverity);
    if ((await severity.evaluate((e) => e.tagName)) === 'SELECT') await selectLoosely(page, sel.reportSeverity, ['2'], ui.problems);
    else await severity.fill('2');
    await page.locator(sel.reportDescription).fill('3号厂房 仓库起火 (console test)');
    await shots.take(page, 'report-dialog');
    await page.locator(sel.reportSubmit).click();
    await need(page, sel.reportDialog, { state: 'hidden', what: 'the report dialog closed after submitting', problems: ui.problems });

    const id = await needIn(
      page,
      (known) => {
        const row = Array.from(document.querySelectorAll('#board [data-testid="incident-row"]')).find(
          (r) => !known.includes(r.getAttribute('data-incident-id')),
        );
        return row ? row.getAttribute('data-incident-id') : null;
      },
      before,
      { what: 'a new [data-testid="incident-row"] on #board', problems: ui.problems },
    );
    const incident = await apiIncident(id);
    assert.equal(incident.kind, 'FIRE', `server: the reported kind is ${incident.kind}`);
    assert.equal(incident.severity, 2, `server: the reported severity is ${incident.severity}`);
    assert.match(incident.description ?? '', /3号厂房/, `server: the description is ${JSON.stringify(incident.description)}`);
    if (clicked) {
      const off = metres(incident.location, CLICK);
      assert.ok(off < 150, `the incident is at ${JSON.stringify(incident.location)}, ${off.toFixed(0)} m from where the map was clicked`);
    }
    state.incident = id;
    state.location = incident.location;
    await shots.take(page, 'reported');
  });

  it('shows it on the board and the map, its four tiers counting down, most severe first', async (t) => {
    if (!requireState(t, 'incident')) return;
    const other = await integration.post('/v1/incidents', {
      external_id: `console-test-${Date.now()}`,
      location: OTHER,
      kind: 'OTHER',
      severity: 1,
      description: 'reported by the command system (console test)',
    });
    state.other = other.incident.id;
    await need(page, sel.row(state.other), { what: `the row of ${state.other}, reported over the API, brought by the feed`, problems: ui.problems });

    const row = page.locator(sel.row(state.incident));
    for (const tier of TIERS) {
      await need(page, `${sel.row(state.incident)} ${sel.tier(tier)}[data-state]`, { what: `${tier} of ${state.incident}`, problems: ui.problems });
    }
    // The tiers' states are the server's.
    await waitUntil(
      async () => {
        const api = await apiIncident();
        const shown = (await boardSnapshot(page)).find((r) => r.id === state.incident);
        return api.tiers.every((tier) => shown?.tiers[tier.tier] === tier.state);
      },
      {
        timeout: 10000,
        message: async () =>
          `the board's tier states of ${state.incident} to be the server's: board ${JSON.stringify(
            (await boardSnapshot(page)).find((r) => r.id === state.incident)?.tiers,
          )}, server ${JSON.stringify((await apiIncident()).tiers.map((x) => [x.tier, x.state]))}`,
      },
    );
    // Countdowns tick.
    const countdowns = row.locator(sel.countdown);
    assert.ok((await countdowns.count()) >= 1, `no [data-testid="countdown"] in the row of ${state.incident}\n${why()}`);
    const first = await countdowns.allTextContents();
    await waitUntil(async () => (await countdowns.allTextContents()).some((text, i) => text !== first[i]), {
      timeout: 5000,
      message: () => `a countdown of ${state.incident} to change (it shows ${JSON.stringify(first)})`,
    });
    assert.ok(first.some((text) => /\d/.test(text)), `the countdowns show no digits: ${JSON.stringify(first)}`);

    const order = (await boardSnapshot(page)).map((r) => r.id);
    assert.ok(
      order.indexOf(state.incident) < order.indexOf(state.other),
      `the severity-2 incident ${state.incident} should be above the severity-1 ${state.other}: board order ${order.join(', ')}`,
    );
    const known = await incidentIds(page);
    assert.ok(known, 'window.lastmileConsole.incidentIds is not a function');
    assert.ok(known.includes(state.incident) && known.includes(state.other), `incidentIds() is ${JSON.stringify(known)}`);
    for (const [id, where] of [[state.incident, state.location], [state.other, OTHER]]) {
      const drawn = await mapHasPointNear(page, where.lat, where.lng);
      if (drawn === null) t.diagnostic('the Leaflet map is not reachable: the incidents on the map were not checked');
      else assert.ok(drawn, `no marker on the map at ${id}'s location ${JSON.stringify(where)}`);
    }
    await shots.take(page, 'board');
  });

  it('follows a simulated terminal that acknowledges and drives: its unit moves on the map', { timeout: 90000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    const incident = await apiIncident();
    const tier10 = incident.tiers.find((x) => x.tier === 'TIER_10');
    const unit = tier10?.assignments.find((a) => a.state === 'PAGED')?.unit_id;
    assert.ok(unit, `server: tier 10 of ${state.incident} has no PAGED unit: ${JSON.stringify(tier10)}`);
    const token = cfg.tokens.terminal.get(unit);
    assert.ok(token, `no terminal token made for ${unit}`);

    await openDetail();
    await need(page, sel.assignment(unit), { what: `the assignment of ${unit} in #detail`, problems: ui.problems });
    const start = await waitUntil(() => unitPosition(page, unit), { message: `unitPosition(${unit}) before it moves` });
    const target = state.location;

    const terminal = startTerminal({
      grpcAddr: server.grpcAddr,
      unit,
      token,
      extraArgs: ['--auto-ack', '--drive', '--time-scale', '20', '--on-scene-s', '3600'],
    });
    terminals.push(terminal);

    const seen = [start];
    let midShot = false;
    await waitUntil(
      async () => {
        const p = await unitPosition(page, unit);
        if (p && (p.lat !== seen.at(-1).lat || p.lng !== seen.at(-1).lng)) seen.push(p);
        if (!midShot && seen.length >= 3) {
          midShot = true;
          await shots.take(page, 'unit-driving');
        }
        return p && metres(p, target) < 200;
      },
      {
        timeout: 60000,
        interval: 150,
        message: () =>
          `unitPosition(${unit}) to reach the incident: positions seen ${JSON.stringify(seen)}; ${describeProblems(ui.problems)}\nterminal: ${terminal.describe()}${serverTail()}`,
      },
    );
    const between = seen.slice(1, -1).filter((p) => metres(p, target) < metres(start, target) - 50 && metres(p, target) > 150);
    assert.ok(between.length >= 1, `the unit jumped to the scene with no position on the way: ${JSON.stringify(seen)}`);

    await need(page, `${sel.assignment(unit)}[data-state="ON_SCENE"]`, { timeout: 20000, what: `${unit}'s assignment ON_SCENE`, problems: ui.problems });
    await need(page, `${sel.row(state.incident)} ${sel.tier('TIER_10')}[data-state="MET"]`, {
      timeout: 10000,
      what: 'tier 10 MET on the board after a verified arrival',
      problems: ui.problems,
    });
    state.drivenUnit = unit;
    await shots.take(page, 'unit-on-scene');
  });

  it("draws lines from the selected incident to its units, and names a grid cell's worker on hover", async (t) => {
    if (!requireState(t, 'incident')) return;
    await openDetail();
    const incident = await apiIncident();
    const active = incident.tiers.flatMap((x) => x.assignments).filter((a) => ['PAGED', 'ACKNOWLEDGED', 'ON_SCENE'].includes(a.state));
    const lines = await waitUntil(
      async () => {
        const ends = await mapLinesFrom(page, state.location.lat, state.location.lng);
        return ends === null || ends.length >= active.length - 1 ? ends ?? 'no map' : false;
      },
      { timeout: 10000, message: async () => `lines from ${state.incident} to its ${active.length} units: ${JSON.stringify(await mapLinesFrom(page, state.location.lat, state.location.lng))}` },
    );
    if (lines === 'no map') {
      t.diagnostic('the Leaflet map is not reachable: lines and the grid tooltip were not checked');
      return;
    }
    // Each line ends at one of the incident's units (the one on scene is at the incident itself).
    for (const end of lines) {
      const near = [];
      for (const a of active) {
        const p = await unitPosition(page, a.unit_id);
        if (p) near.push(metres(p, end));
      }
      assert.ok(near.some((d) => d < 30), `a line from ${state.incident} ends at ${JSON.stringify(end)}, at none of its units`);
    }
    // LQ-G0054 (路北街道 士岙村), no unit within 490 m of its centre: its grid worker on hover.
    const restore = await hoverMapAt(page, 28.602683, 121.331363);
    try {
      const tips = () => page.locator('#map .leaflet-tooltip').allTextContents();
      await waitUntil(async () => (await tips()).some((text) => text.includes('郭桂红')), {
        timeout: 5000,
        message: async () => `a tooltip over grid cell LQ-G0054 naming its grid worker 郭桂红（虚构）; the map's tooltips: ${JSON.stringify(await tips())}`,
      });
      await shots.take(page, 'grid-worker-hover');
    } finally {
      await restore();
    }
  });

  it('assigns a unit from the candidates in the detail panel, then releases it', { timeout: 60000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    await openDetail();
    await selectLoosely(page, sel.assignTier, ['TIER_3', '3', /^TIER_3/, /3/], ui.problems);
    await need(page, sel.candidate(), { what: 'tier-3 candidates in #detail', problems: ui.problems });
    const assigned = new Set((await apiIncident()).tiers.flatMap((x) => x.assignments.map((a) => a.unit_id)));
    const candidates = await page.locator(sel.candidate()).evaluateAll((els) => els.map((e) => e.getAttribute('data-unit-id')));
    const unit = candidates.find((u) => !assigned.has(u));
    assert.ok(unit, `every candidate is already on the incident: ${candidates.join(', ')}`);
    assert.ok(unit.startsWith('T3-'), `a tier-3 candidate list holds ${unit}`);
    await shots.take(page, 'candidates');

    await clickAction(page.locator(sel.candidate(unit)));
    await need(page, sel.assignment(unit), { what: `the new assignment of ${unit}`, problems: ui.problems });
    const paged = await dispatcher.get(`/v1/units/${unit}`);
    const pagedUnit = paged.unit ?? paged;
    assert.equal(pagedUnit.incident_id, state.incident, `server: ${unit} after the assignment: ${JSON.stringify(pagedUnit)}`);
    assert.equal(pagedUnit.status, 'PAGED', `server: ${unit} after the assignment: ${JSON.stringify(pagedUnit)}`);
    await shots.take(page, 'assigned');

    await clickAction(await need(page, sel.release(unit), { what: `the release button of ${unit}`, problems: ui.problems }));
    await needIn(
      page,
      (u) => {
        const a = document.querySelector(`#detail [data-testid="assignment"][data-unit-id="${u}"]`);
        return !a || a.getAttribute('data-state') === 'RELEASED';
      },
      unit,
      { what: `${unit}'s assignment RELEASED or gone`, problems: ui.problems },
    );
    await waitUntil(
      async () => {
        const u = await dispatcher.get(`/v1/units/${unit}`);
        const x = u.unit ?? u;
        return x.incident_id === '' && x.status === 'AVAILABLE';
      },
      { timeout: 5000, message: `server: ${unit} free and AVAILABLE after the release` },
    );
    state.assignedUnit = unit;
    await shots.take(page, 'released');
  });

  it('re-pages an unanswered page, and a breach raises the alert', { timeout: 100000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    state.alertBeforeBreach = await page.locator(sel.alert).first().isVisible().catch(() => false);
    const breach = await waitUntil(
      async () => (await apiTimeline()).find((e) => e.type === 'TIER_BREACHED' && e.tier === 'TIER_5'),
      { timeout: 80000, interval: 500, message: `server: TIER_BREACHED of tier 5 in ${state.incident}'s timeline${serverTail()}` },
    );
    const entries = await apiTimeline();
    assert.ok(entries.some((e) => e.type === 'UNIT_REPAGED'), `server: no UNIT_REPAGED in the timeline: ${entries.map((e) => e.type).join(', ')}`);
    state.breachAt = breach.at;

    await needIn(
      page,
      ([id]) => {
        const tier = document.querySelector(`#board [data-testid="incident-row"][data-incident-id="${id}"] [data-testid="tier"][data-tier="TIER_5"]`);
        return tier && ['BREACHED', 'ESCALATED'].includes(tier.getAttribute('data-state'));
      },
      [state.incident],
      { what: 'tier 5 BREACHED (or ESCALATED after it) on the board', problems: ui.problems },
    );
    await need(page, sel.alert, { what: 'the alert banner after a breach', problems: ui.problems });
    const shownAlerts = await page
      .locator(sel.alert)
      .evaluateAll((els) => els.map((e) => ({ type: e.getAttribute('data-type'), incident: e.getAttribute('data-incident-id'), text: e.textContent.trim() })));
    if (shownAlerts.some((a) => a.type)) {
      assert.ok(
        shownAlerts.some((a) => ['TIER_BREACHED', 'TIER_ESCALATED'].includes(a.type) && (!a.incident || a.incident === state.incident)),
        `no breach alert for ${state.incident} among ${JSON.stringify(shownAlerts)}`,
      );
    }
    await openDetail();
    await need(page, sel.timelineEntry('UNIT_REPAGED'), { what: 'a UNIT_REPAGED entry in #timeline', problems: ui.problems });
    await need(page, sel.timelineEntry('TIER_BREACHED'), { what: 'a TIER_BREACHED entry in #timeline', problems: ui.problems });
    if (state.alertBeforeBreach) t.diagnostic('the alert banner was already up before the breach (another alert)');
    await shots.take(page, 'breach-alert');
  });

  it('makes a sound for the alert', async (t) => {
    if (!requireState(t, 'breachAt')) return;
    const sounds = await page.evaluate(() => window.__lastmileTest?.sounds ?? 0);
    assert.ok(
      sounds > 0,
      'no sound was attempted after the alert (no AudioContext oscillator or buffer source, HTMLMediaElement.play or speechSynthesis.speak)',
    );
  });

  it('shows times in the district\'s time zone (Asia/Shanghai), not the browser\'s (UTC here)', async (t) => {
    if (!requireState(t, 'breachAt')) return;
    const at = new Date(state.breachAt);
    // hh:mm as a 24-hour or a 12-hour clock shows it in a time zone.
    const clock = (timeZone) => {
      const parts = (hourCycle) =>
        Object.fromEntries(
          new Intl.DateTimeFormat('en-GB', { timeZone, hour: 'numeric', minute: '2-digit', hourCycle }).formatToParts(at).map((p) => [p.type, p.value]),
        );
      const h23 = parts('h23');
      const h12 = parts('h12');
      return [`${h23.hour.padStart(2, '0')}:${h23.minute}`, `${Number(h12.hour)}:${h12.minute}`];
    };
    const text = (await page.locator(sel.timelineEntry('TIER_BREACHED')).first().textContent()).trim();
    const district = clock('Asia/Shanghai');
    const utc = clock('UTC');
    assert.ok(
      district.some((c) => text.includes(c)),
      `the TIER_BREACHED timeline entry should show ${district[0]} (Asia/Shanghai) for ${state.breachAt}; it reads ${JSON.stringify(text)}${
        utc.some((c) => text.includes(c)) ? ` (that is ${utc[0]}, UTC)` : ''
      }`,
    );
  });

  it('raises an unverified arrival (silently, once muted), and a dispatcher confirms it', { timeout: 60000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    await (await need(page, sel.mute, { what: 'the mute button', problems: ui.problems })).click();
    const soundsMuted = await page.evaluate(() => window.__lastmileTest?.sounds ?? 0);

    const incident = await apiIncident();
    // A unit still PAGED whose station is beyond dispatch.on_scene_radius_m
    // (150 m): in tier 3 if the report found one within its target there,
    // else in tier 5 or 10. The map click lands a few metres apart from run
    // to run, and with it whether a tier-3 unit was within 180 s (if none,
    // the slot waits for the fallback round and may have no PAGED unit yet).
    const unit = ['TIER_3', 'TIER_5', 'TIER_10']
      .flatMap((tier) => incident.tiers.find((x) => x.tier === tier)?.assignments ?? [])
      .find((a) => a.state === 'PAGED' && a.unit_id !== state.assignedUnit && a.distance_m > 150)?.unit_id;
    assert.ok(unit, `server: ${state.incident} has no PAGED unit beyond 150 m left in tiers 3, 5, 10: ${JSON.stringify(incident.tiers)}`);
    // The crew says it is on scene; its last known position is its station's.
    await dispatcher.post(`/v1/units/${unit}/status`, { status: 'ON_SCENE', incident_id: state.incident });
    await waitUntil(async () => (await apiTimeline()).some((e) => e.type === 'UNIT_ARRIVAL_UNVERIFIED' && e.unit_id === unit), {
      timeout: 10000,
      message: `server: UNIT_ARRIVAL_UNVERIFIED for ${unit}`,
    });

    await openDetail();
    const confirm = await need(page, sel.confirmArrival(unit), { what: `the confirm-arrival button of ${unit}`, problems: ui.problems });
    await need(page, sel.alert, { what: 'the alert banner for an unverified arrival', problems: ui.problems });
    await shots.take(page, 'arrival-unverified');
    await page.waitForTimeout(1500);
    const soundsAfter = await page.evaluate(() => window.__lastmileTest?.sounds ?? 0);

    await clickAction(confirm);
    await waitUntil(
      async () => {
        const a = (await apiIncident()).tiers.flatMap((x) => x.assignments).find((x) => x.unit_id === unit);
        return a && a.arrival_confirmed_by;
      },
      { timeout: 10000, message: `server: ${unit}'s arrival confirmed after the click` },
    );
    await need(page, sel.timelineEntry('ARRIVAL_CONFIRMED'), { what: 'an ARRIVAL_CONFIRMED entry in #timeline', problems: ui.problems });
    await need(page, sel.confirmArrival(unit), { state: 'hidden', what: `the confirm-arrival button of ${unit} gone once confirmed`, problems: ui.problems });
    await shots.take(page, 'arrival-confirmed');
    assert.equal(soundsAfter, soundsMuted, `muted, the console still made ${soundsAfter - soundsMuted} sound(s) for the unverified arrival`);
  });

  it('loses nothing on a reload', { timeout: 60000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    const before = await boardSnapshot(page);
    await openDetail();
    const timelineBefore = await page.locator(sel.timelineEntry()).count();
    await page.reload();
    await waitReady(page, ui.problems);
    assert.equal(await page.locator(sel.signin).isVisible(), false, 'the sign-in form is back after a reload (the session was lost)');
    await need(page, `${sel.connection}[data-state="live"]`, { timeout: 20000, what: 'the feed live again after the reload', problems: ui.problems });
    await waitUntil(
      async () => {
        const now = await boardSnapshot(page);
        return before.every((b) => now.some((r) => r.id === b.id)) && now.length === before.length;
      },
      {
        message: async () =>
          `the board after the reload to hold the same incidents: before ${before.map((r) => r.id)}, after ${(await boardSnapshot(page)).map((r) => r.id)}`,
      },
    );
    // Each incident's tiers as the server has them now.
    for (const id of before.map((r) => r.id)) {
      await waitUntil(
        async () => {
          const api = await apiIncident(id);
          const shown = (await boardSnapshot(page)).find((r) => r.id === id);
          return api.tiers.every((tier) => shown?.tiers[tier.tier] === tier.state);
        },
        { timeout: 10000, message: async () => `${id}'s tier states after the reload: ${JSON.stringify((await boardSnapshot(page)).find((r) => r.id === id))}` },
      );
    }
    await openDetail();
    await waitUntil(async () => (await page.locator(sel.timelineEntry()).count()) >= timelineBefore, {
      message: async () => `#timeline after the reload to have at least the ${timelineBefore} entries it had (has ${await page.locator(sel.timelineEntry()).count()})`,
    });
    if (state.drivenUnit) {
      const p = await unitPosition(page, state.drivenUnit);
      assert.ok(p && metres(p, state.location) < 200, `after the reload ${state.drivenUnit} is at ${JSON.stringify(p)}, not on scene`);
    }
    await shots.take(page, 'after-reload');
  });

  it('closes the incident with a reason: it leaves the board, the timeline keeps the reason', { timeout: 60000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    await openDetail();
    await (await need(page, sel.closeReason, { what: 'the close reason field', problems: ui.problems })).fill(CLOSE_REASON);
    await shots.take(page, 'closing');
    await page.locator(sel.closeSubmit).click();
    await need(page, sel.row(state.incident), { state: 'detached', what: `${state.incident}'s row gone from the board after the close`, problems: ui.problems });
    const incident = await apiIncident();
    assert.equal(incident.status, 'CLOSED', `server: ${state.incident} is ${incident.status} after the close`);
    const closed = (await apiTimeline()).find((e) => e.type === 'INCIDENT_CLOSED');
    assert.ok(closed, `server: no INCIDENT_CLOSED in the timeline of ${state.incident}`);
    assert.ok(JSON.stringify(closed).includes(CLOSE_REASON), `server: the close entry does not carry the reason: ${JSON.stringify(closed)}`);
    const ids = await incidentIds(page);
    assert.ok(!ids.includes(state.incident), `incidentIds() still holds the closed ${state.incident}: ${JSON.stringify(ids)}`);
    const shown = page.locator(sel.timelineEntry('INCIDENT_CLOSED'));
    if ((await page.locator(sel.detail).isVisible()) && (await shown.count()) > 0) {
      assert.ok((await shown.first().textContent()).includes(CLOSE_REASON), `#timeline's INCIDENT_CLOSED entry lacks the reason: ${await shown.first().textContent()}`);
    } else {
      t.diagnostic('the detail panel does not show the closed incident; its timeline was checked over the API');
    }
    await shots.take(page, 'closed');
  });

  it("opens this week's 13510 report from the console: a printable page that counts the closed incident", { timeout: 60000 }, async (t) => {
    if (!requireState(t, 'incident')) return;
    const link = await need(page, '#report-week', { what: "the console's link to this week's report", problems: ui.problems });
    const href = await link.getAttribute('href');
    const week = await page.evaluate(() => {
      // The ISO week of today in Asia/Shanghai, worked out apart from the console's code.
      const local = new Date(Date.now() + 8 * 3600 * 1000);
      const d = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate()));
      d.setUTCDate(d.getUTCDate() + 4 - (d.getUTCDay() || 7));
      const w = Math.ceil(((d - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86400000 + 1) / 7);
      return `${d.getUTCFullYear()}-W${String(w).padStart(2, '0')}`;
    });
    assert.ok(href.includes(`week=${week}`) && href.includes('format=html'), `#report-week links to ${href}, not week ${week}`);
    assert.match(await page.locator('#report-month').getAttribute('href'), /month=\d{4}-\d{2}/);
    const [report] = await Promise.all([page.context().waitForEvent('page'), link.click()]);
    await report.waitForLoadState('load');
    const text = await report.locator('body').innerText();
    assert.ok(text.includes('13510'), `the report page says: ${text.slice(0, 300)}`);
    assert.ok((await report.locator('svg').count()) >= 1, 'the report has its charts (SVG)');
    const json = await page.evaluate((w) => fetch(`/v1/reports/compliance?week=${w}`).then((r) => r.json()), week);
    assert.ok(json.incidents >= 1, `this week's report counts no closed incident: ${JSON.stringify(json).slice(0, 300)}`);
    await report.setViewportSize({ width: 1100, height: 1400 });
    await shots.take(report, 'compliance-report');
    await report.close();
  });

  it('filters the unit board by tier, town, status and search, and sets a unit out of service and back', { timeout: 60000 }, async () => {
    await need(page, sel.units, { what: 'the unit board', problems: ui.problems });
    await selectLoosely(page, sel.unitTier, ['TIER_1', '1', /^TIER_1$/, /^1$/], ui.problems);
    const town = '桐屿街道';
    await selectLoosely(page, sel.unitTown, [town], ui.problems);
    await waitUntil(
      async () => {
        const ids = await page.locator(sel.unitRow()).evaluateAll((els) => els.map((e) => e.getAttribute('data-unit-id')));
        return ids.length > 0 && ids.every((id) => id.startsWith('T1-') && unitById.get(id)?.town === town);
      },
      {
        message: async () =>
          `unit rows of tier 1 in ${town} only: ${(await page.locator(sel.unitRow()).evaluateAll((els) => els.map((e) => e.getAttribute('data-unit-id')))).slice(0, 20)}`,
      },
    );
    // A free unit of that town, on no incident.
    const candidates = units.filter((u) => u.tier === 1 && u.town === town);
    let unit;
    for (const u of candidates) {
      const x = await dispatcher.get(`/v1/units/${u.id}`);
      if ((x.unit ?? x).status === 'AVAILABLE') {
        unit = u.id;
        break;
      }
    }
    assert.ok(unit, `no AVAILABLE tier-1 unit in ${town}`);
    await page.locator(sel.unitSearch).fill(unit);
    await waitUntil(
      async () => {
        const ids = await page.locator(sel.unitRow()).evaluateAll((els) => els.map((e) => e.getAttribute('data-unit-id')));
        return ids.length === 1 && ids[0] === unit;
      },
      { message: async () => `one unit row, ${unit}, after searching for it: ${await page.locator(sel.unitRow()).count()} rows` },
    );

    async function setStatus(status) {
      const control = page.locator(`${sel.unitRow(unit)} ${sel.setStatus}`).first();
      await control.waitFor({ state: 'visible' }).catch(() => {});
      assert.ok((await control.count()) > 0, `no [data-testid="set-status"] in the row of ${unit}`);
      if ((await control.evaluate((e) => e.tagName)) === 'SELECT') await control.selectOption(status);
      else await control.click();
      await need(page, `${sel.unitRow(unit)}[data-status="${status}"]`, { what: `${unit}'s row ${status}`, problems: ui.problems });
      const x = await dispatcher.get(`/v1/units/${unit}`);
      assert.equal((x.unit ?? x).status, status, `server: ${unit} is ${(x.unit ?? x).status}, the board shows ${status}`);
    }
    await setStatus('OUT_OF_SERVICE');
    await page.locator(sel.unitSearch).fill('');
    await selectLoosely(page, sel.unitStatus, ['OUT_OF_SERVICE', /OUT_OF_SERVICE/], ui.problems);
    await waitUntil(
      async () => {
        const rows = await page.locator(sel.unitRow()).evaluateAll((els) => els.map((e) => [e.getAttribute('data-unit-id'), e.getAttribute('data-status')]));
        return rows.some(([id]) => id === unit) && rows.every(([, s]) => s === 'OUT_OF_SERVICE');
      },
      { message: `only OUT_OF_SERVICE rows, ${unit} among them, with the status filter` },
    );
    await shots.take(page, 'units-out-of-service');
    await selectLoosely(page, sel.unitStatus, ['', 'ALL', /all|全部/i], ui.problems);
    await page.locator(sel.unitSearch).fill(unit);
    await setStatus('AVAILABLE');
    await shots.take(page, 'units-available');
  });

  it('switches between Chinese and English', async () => {
    const lang = () => page.evaluate(() => document.documentElement.lang);
    const text = () => page.evaluate(() => document.body.innerText.slice(0, 4000));
    const zh = await lang();
    assert.match(zh, /^zh/i, `<html lang> is ${JSON.stringify(zh)}, not Chinese, at first`);
    const before = await text();
    await (await need(page, sel.lang, { what: 'the language switch', problems: ui.problems })).click();
    await waitUntil(async () => (await text()) !== before, { timeout: 5000, message: 'the page text to change after #lang' });
    assert.match(await lang(), /^en/i, `<html lang> is ${JSON.stringify(await lang())} after switching to English`);
    await shots.take(page, 'english');
    await page.locator(sel.lang).click();
    await waitUntil(async () => /^zh/i.test(await lang()), { timeout: 5000, message: '<html lang> back to zh after #lang again' });
  });

  it('gives an integration token a read-only view, and the server refuses its overrides', { timeout: 60000 }, async (t) => {
    if (!requireState(t, 'other')) return;
    const second = await openConsole(browser);
    try {
      const p = second.page;
      await p.goto(`${server.baseUrl}/`);
      await need(p, sel.signin, { what: 'the sign-in form (second browser)', problems: second.problems });
      await p.locator(sel.signinToken).fill(cfg.tokens.integration);
      await p.locator(sel.signinSubmit).click();
      await need(p, sel.signin, { state: 'hidden', what: 'signed in with the integration token', problems: second.problems });
      await waitReady(p, second.problems);
      const session = await p.evaluate(() => fetch('/console/session').then((r) => r.json()));
      assert.equal(session.role, 'integration', `GET /console/session: ${JSON.stringify(session)}`);
      await (await need(p, sel.row(state.other), { what: `${state.other} on the integration's board`, problems: second.problems })).click();
      await need(p, sel.detail, { what: '#detail for the integration token', problems: second.problems });
      await need(p, sel.timelineEntry(), { what: "the incident's timeline (integration may read it)", problems: second.problems });
      for (const action of [sel.closeSubmit, sel.assignTier, '#detail [data-testid="release"]', '#detail [data-testid="confirm-arrival"]']) {
        assert.equal(await p.locator(action).first().isVisible().catch(() => false), false, `${action} is offered to an integration token`);
      }
      const setStatus = p.locator(`${sel.unitRow()} ${sel.setStatus}`);
      for (const i of [...Array(Math.min(await setStatus.count(), 5)).keys()]) {
        assert.ok(await setStatus.nth(i).isDisabled(), 'a unit status control is enabled for an integration token');
      }
      assert.equal(await p.locator('#reports').isVisible(), false, 'the report links are offered to an integration token');
      await shots.take(p, 'integration-read-only');
      const close = await second.context.request.post(`${server.baseUrl}/v1/incidents/${state.other}/close`, {
        data: { reason: 'not allowed' },
        headers: { 'x-lastmile-console': '1' },
        failOnStatusCode: false,
      });
      assert.equal(close.status(), 403, `server: the integration session's close answered ${close.status()}: ${await close.text()}`);
      assert.equal((await apiIncident(state.other)).status, 'OPEN', `server: ${state.other} was closed by an integration token`);
      assert.deepEqual(foreignRequests(second.requests, server.httpAddr).map((r) => r.url), [], 'the second browser loaded from elsewhere');
    } finally {
      await second.context.close().catch(() => {});
    }
  });

  it('signs out', async () => {
    await (await need(page, sel.signout, { what: 'the sign-out button', problems: ui.problems })).click();
    await need(page, sel.signin, { what: 'the sign-in form after signing out', problems: ui.problems });
    const session = await page.evaluate(() => fetch('/console/session').then((r) => r.json()));
    assert.equal(session.signed_in, false, `GET /console/session after signing out: ${JSON.stringify(session)}`);
    await shots.take(page, 'signed-out');
  });

  it('made every request to the lastmile listener, nowhere else', () => {
    assert.ok(ui.requests.length > 0, 'the page made no request at all');
    const foreign = foreignRequests(ui.requests, server.httpAddr);
    assert.deepEqual(
      foreign.map((r) => `${r.method} ${r.url}`),
      [],
      `requests that left ${server.httpAddr}:\n  ${foreign.map((r) => `${r.method} ${r.url} (${r.type})`).join('\n  ')}`,
    );
    const types = [...new Set(ui.requests.map((r) => r.type))].sort();
    process.stderr.write(`note: ${ui.requests.length} requests, all to ${server.httpAddr} (${types.join(', ')})\n`);
  });
});
