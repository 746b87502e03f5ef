// The console when its feed breaks (auth off, a SQLite journal kept in a
// temporary folder; the browser reaches the listener through a TCP relay the
// test controls): the connection dropped and refused for a while, the server
// running on (the feed resumes and nothing that happened meanwhile is
// missing), then the server restarted on
// the same addresses (the connection shows lost, then live again; the board
// keeps what the journal recovered, shows each incident once, and follows
// the new server's feed).
//
//   node --test tests/console/            (after cargo build -p lastmile)

import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Shots, foreignRequests, launchBrowser, openConsole, screenshotDir, waitUntil } from './helpers/browser.mjs';
import { boardSnapshot, incidentIds, need, sel, waitReady } from './helpers/console.mjs';
import { apiClient, freePort, removeDir, startServer, writeConfig } from './helpers/server.mjs';
import { startRelay } from './helpers/tcpproxy.mjs';

describe('the console across a server restart (auth off)', { timeout: 240000 }, () => {
  let cfg;
  let dataDir;
  let listen;
  let httpListen;
  let server;
  let api;
  let browser;
  let ui;
  let page;
  let relay; // the browser reaches the listener through it
  const shots = new Shots(40);
  const logs = [];
  const state = {};

  const start = async () => {
    server = await startServer({ configPath: cfg.configPath, inMemory: false, dataDir, listen, httpListen });
    logs.push(server.output);
    api = apiClient(server.baseUrl);
  };
  const report = async (n, location) =>
    (
      await api.post('/v1/incidents', {
        external_id: `restart-test-${n}-${Date.now()}`,
        location,
        kind: 'FLOOD',
        severity: 3,
        description: `restart test ${n}`,
      })
    ).incident.id;

  before(async () => {
    cfg = writeConfig({});
    dataDir = mkdtempSync(join(tmpdir(), 'lastmile-console-data-'));
    listen = `127.0.0.1:${await freePort()}`;
    httpListen = `127.0.0.1:${await freePort()}`;
    await start();
    relay = await startRelay(httpListen);
    browser = await launchBrowser();
    ui = await openConsole(browser);
    page = ui.page;
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop();
    if (relay) await relay.close();
    writeFileSync(
      join(screenshotDir, 'restart-server.log'),
      logs.map((o, i) => [`--- run ${i + 1}`, ...o.stdout, '--- stderr', ...o.stderr].join('\n')).join('\n'),
    );
    removeDir(cfg?.dir);
    removeDir(dataDir);
  });

  it('opens without signing in when auth is off, and goes live', async () => {
    await page.goto(`${relay.baseUrl}/`);
    await waitReady(page, ui.problems);
    assert.equal(await page.locator(sel.signin).isVisible(), false, '#signin is shown though the server has no [auth]');
    const session = await page.evaluate(() => fetch('/console/session').then((r) => r.json()));
    assert.equal(session.auth, false, `GET /console/session: ${JSON.stringify(session)}`);
    assert.equal(session.signed_in, true, `GET /console/session: ${JSON.stringify(session)}`);
    await need(page, `${sel.connection}[data-state="live"]`, { timeout: 20000, what: 'the feed live', problems: ui.problems });
    state.first = await report(1, { lat: 28.58, lng: 121.37 });
    await need(page, sel.row(state.first), { what: `${state.first} on the board`, problems: ui.problems });
    await shots.take(page, 'restart-before');
  });

  it('resumes the feed after its connection drops, missing nothing that happened meanwhile', { timeout: 90000 }, async (t) => {
    if (!state.first) return t.skip('needs the first step');
    const unit = 'T1-0300';
    relay.drop({ block: true }); // the server runs on; the browser cannot reach it
    try {
      await need(page, `${sel.connection}[data-state="lost"]`, { timeout: 30000, what: 'the connection shown lost when the feed drops', problems: ui.problems });
      // Meanwhile: a new incident and a unit's status.
      state.offline = await report('dropped', { lat: 28.602683, lng: 121.331363 });
      await api.post(`/v1/units/${unit}/status`, { status: 'OUT_OF_SERVICE' });
      await shots.take(page, 'feed-dropped');
    } finally {
      relay.unblock();
    }
    await need(page, `${sel.connection}[data-state="live"]`, { timeout: 40000, what: 'the connection live again once reachable', problems: ui.problems });
    await need(page, sel.row(state.offline), { what: `${state.offline}, reported while the feed was down`, problems: ui.problems });
    await need(page, `${sel.unitRow(unit)}[data-status="OUT_OF_SERVICE"]`, {
      state: 'attached',
      what: `${unit} OUT_OF_SERVICE on the unit board (set while the feed was down)`,
      problems: ui.problems,
    });
    const board = (await boardSnapshot(page)).map((r) => r.id);
    assert.equal(new Set(board).size, board.length, `an incident shows twice on the board: ${board}`);
    await api.post(`/v1/units/${unit}/status`, { status: 'AVAILABLE' });
    await need(page, `${sel.unitRow(unit)}[data-status="AVAILABLE"]`, { state: 'attached', what: `${unit} AVAILABLE again, by the resumed feed`, problems: ui.problems });
    const feedRequests = ui.requests.filter((r) => r.url.includes('/v1/events')).length;
    assert.ok(feedRequests >= 2, `the page opened the feed ${feedRequests} time(s): it never reconnected`);
    await shots.take(page, 'feed-resumed');
  });

  it('shows the connection lost while the server is down, then live again, resynced, losing and repeating nothing', { timeout: 120000 }, async (t) => {
    if (!state.first) return t.skip('needs the first step');
    await page.evaluate(() => {
      const el = document.querySelector('#connection');
      window.__connectionStates = [el.getAttribute('data-state')];
      new MutationObserver(() => window.__connectionStates.push(el.getAttribute('data-state'))).observe(el, {
        attributes: true,
        attributeFilter: ['data-state'],
      });
    });
    await server.stop();
    await need(page, `${sel.connection}[data-state="lost"]`, { timeout: 30000, what: 'the connection shown lost with the server down', problems: ui.problems });
    await shots.take(page, 'restart-lost');

    await start();
    await need(page, `${sel.connection}[data-state="live"]`, { timeout: 60000, what: 'the connection live again after the restart', problems: ui.problems });
    const states = await page.evaluate(() => window.__connectionStates);
    t.diagnostic(`#connection went ${states.join(' -> ')}`);
    await shots.take(page, 'restart-live');

    const second = await report(2, { lat: 28.549219, lng: 121.36996 });
    await need(page, sel.row(second), { what: `${second}, reported after the restart, brought by the new feed`, problems: ui.problems });
    await need(page, sel.row(state.first), { what: `${state.first} (recovered from the journal) still on the board`, problems: ui.problems });
    const board = (await boardSnapshot(page)).map((r) => r.id);
    assert.deepEqual([...new Set(board)].sort(), [...board].sort(), `an incident shows twice on the board: ${board}`);
    assert.deepEqual([...board].sort(), [state.first, state.offline, second].filter(Boolean).sort(), `the board holds ${board}`);
    const ids = await incidentIds(page);
    assert.equal(new Set(ids).size, ids.length, `incidentIds() repeats one: ${ids}`);
    // The feed's state on the board is the server's.
    await waitUntil(
      async () => {
        const inc = await api.get(`/v1/incidents/${state.first}`);
        const shown = (await boardSnapshot(page)).find((r) => r.id === state.first);
        return inc.tiers.every((tier) => shown?.tiers[tier.tier] === tier.state);
      },
      { timeout: 10000, message: `${state.first}'s tiers on the board as the restarted server has them` },
    );
    await shots.take(page, 'restart-after');
  });

  it('made every request to the lastmile listener', () => {
    // The page was opened through the relay, which forwards to the listener only.
    const foreign = foreignRequests(ui.requests, relay.addr);
    assert.deepEqual(foreign.map((r) => r.url), [], 'requests left the listener');
  });
});
