// The lastmile dispatcher console: boots the page (session, sign-in, the map's
// base layers, the state and the live feed), wires the views to the state's
// per-frame flush, and exposes a small hook for tests and benchmarks.
//
// Plain ES modules, no build step; every file is embedded in the binary
// (listed in FILES) and served by the HTTP listener, so the page loads
// nothing from anywhere else.
//
//   api.js     fetch() to the same origin; the console header on writes
//   feed.js    EventSource on /v1/events: dedupe by seq, resume, resync
//   state.js   incidents, units, selection; marks changes; one rAF flush;
//              coalesced, rate-capped incident reads
//   map.js     Leaflet, canvas only: district, grid, towns, units, incidents
//   board.js   the incident board and its countdowns
//   detail.js  the selected incident, its actions and timeline
//   units.js   the unit board
//   alerts.js  banner, beep, mute; notices
//   i18n.js    zh-CN / English strings, times in the session's time zone
//   dom.js     element helpers
//
// Data flow: server -> api/feed -> state (the only writer) -> marked sets ->
// each view's flush(changes) in the next animation frame.

import * as api from './api.js';
import * as state from './state.js';
import * as feed from './feed.js';
import * as mapView from './map.js';
import * as board from './board.js';
import * as detail from './detail.js';
import * as unitsView from './units.js';
import * as alerts from './alerts.js';
import {
  t, setLang, currentLang, setTimeZone, translateStatic, tierLabel, kindLabel, roleLabel, currentTimeZone,
  isoWeekInZone, previousMonthInZone,
} from './i18n.js';

const $ = (sel) => document.querySelector(sel);

let resolveReady;
let rejectReady;
const ready = new Promise((resolve, reject) => {
  resolveReady = resolve;
  rejectReady = reject;
});
ready.catch(() => {});

window.lastmileConsole = {
  ready,
  unitPosition: (unitId) => mapView.unitPosition(unitId),
  incidentIds: () => board.incidentIds(),
  stats: () => ({
    events: state.stats.events,
    lastSeq: state.stats.lastSeq,
    feedLagMs: state.stats.lastEventAt ? Date.now() - Date.parse(state.stats.lastEventAt) : null,
    frameMs: state.stats.frameMs,
    incidents: state.incidents.size,
    units: state.units.size,
    alerts: alerts.stats.alerts,
    beeps: alerts.stats.beeps,
  }),
  session: () => ({ ...state.session }),
  select: (id) => state.select(id),
};

// ---- static texts and the language switch ---------------------------------

function translateAll() {
  translateStatic();
  for (const el of document.querySelectorAll('[data-tier-label]')) el.textContent = tierLabel(el.dataset.tierLabel);
  for (const opt of $('#report-kind').options) opt.textContent = kindLabel(opt.value);
  for (const opt of $('#report-severity').options) opt.textContent = t('severity_n', { n: opt.value });
  $('#lang').textContent = t('lang_switch');
  $('#lang').lang = currentLang() === 'en' ? 'zh-CN' : 'en';
  const label = $('#connection-label');
  label.textContent = t(label.dataset.label || 'conn_connecting');
  showWhoami();
}

let sessionKnown = false;

function showWhoami() {
  const s = state.session;
  if (!sessionKnown) return;
  $('#whoami').textContent = s.auth ? t('signed_in_as', { name: s.name, role: roleLabel(s.role) }) : roleLabel(s.role);
  $('#whoami').dataset.role = s.role;
}

$('#lang').addEventListener('click', () => {
  setLang(currentLang() === 'en' ? 'zh-CN' : 'en');
  translateAll();
  showReportLinks();
  board.retranslate();
  detail.retranslate();
  unitsView.retranslate();
  alerts.retranslate();
  mapView.refreshTexts();
  state.markAll();
});

// ---- connection state -------------------------------------------------------

let resyncedTimer = 0;

function showConnection(kind, labelKey) {
  const box = $('#connection');
  box.dataset.state = kind;
  // What the board shows may be behind while the feed is lost: say so.
  document.body.classList.toggle('feed-lost', labelKey === 'conn_lost');
  const label = $('#connection-label');
  label.dataset.label = labelKey;
  label.textContent = t(labelKey);
  clearTimeout(resyncedTimer);
  if (labelKey === 'conn_resynced') {
    resyncedTimer = setTimeout(() => {
      if (box.dataset.state === 'live') {
        label.dataset.label = 'conn_live';
        label.textContent = t('conn_live');
      }
    }, 8000);
  }
}

feed.setHooks({
  connection: showConnection,
  event: (ev) => alerts.onEvent(ev),
});

// ---- views --------------------------------------------------------------------

alerts.create($('#alerts'), $('#notices'), $('#mute'));
const notify = (kind, text) => alerts.notify(kind, text);
board.create($('#board'));
detail.create($('#detail'), notify);
unitsView.create($('#units'), notify);

let focused = null;

state.onFlush((ch) => {
  board.flush(ch);
  unitsView.flush(ch);
  detail.flush(ch);
  mapView.flush(ch);
  const inc = state.selection.incident;
  if (ch.selection && inc && inc.id !== focused) {
    focused = inc.id;
    mapView.focusIncident(inc);
  }
  if (!state.selection.id) focused = null;
});
state.onTick((now) => {
  board.tick(now);
  detail.tick(now);
});

api.onUnauthenticated(() => {
  if (state.session.auth) showSignIn(t('signin_failed'));
});

// ---- reporting by clicking the map -------------------------------------------

const dialog = $('#report-dialog');
let reportAt = null;

function openReport(latlng) {
  if (!state.caps.report) return;
  reportAt = { lat: Number(latlng.lat.toFixed(6)), lng: Number(latlng.lng.toFixed(6)) };
  $('#report-where').textContent = t('report_at', { lat: reportAt.lat.toFixed(5), lng: reportAt.lng.toFixed(5) });
  const cell = mapView.cellAt(latlng);
  const p = cell?.props;
  $('#report-cell').textContent = p
    ? t('report_cell', { grid: p.grid_id, town: p.town ?? '', village: p.village ?? '', worker: p.worker_name ?? '', contact: p.worker_contact ?? '' })
    : t('report_no_cell');
  $('#report-error').hidden = true;
  $('#report-submit').disabled = false;
  if (!dialog.open) dialog.showModal();
  $('#report-kind').focus();
}

$('#report-cancel').addEventListener('click', () => dialog.close());

$('#report-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!reportAt) return;
  const submit = $('#report-submit');
  submit.disabled = true;
  const description = $('#report-description').value.trim();
  const body = {
    external_id: `console-${crypto.randomUUID()}`,
    location: reportAt,
    kind: $('#report-kind').value,
    severity: Number($('#report-severity').value),
  };
  if (description) body.description = description;
  try {
    const answer = await api.report(body);
    dialog.close();
    $('#report-description').value = '';
    state.putIncident(answer.incident);
    state.select(answer.incident.id);
    notify('info', t('reported', { id: answer.incident.id }));
  } catch (err) {
    const box = $('#report-error');
    box.textContent = `${t('error_prefix')}${err.message}`;
    box.hidden = false;
  } finally {
    submit.disabled = false;
  }
});

// ---- sign-in ------------------------------------------------------------------

let signedIn = null;
let awaitingSignIn = false;

function showSignIn(error) {
  feed.stop();
  $('#console').hidden = true;
  $('#signin-view').hidden = false;
  $('#signout').hidden = true;
  const box = $('#signin-error');
  box.textContent = error ?? '';
  box.hidden = !error;
  $('#signin-token').focus();
  return new Promise((resolve) => {
    signedIn = resolve;
  });
}

$('#signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('#signin-token').value.trim();
  const box = $('#signin-error');
  if (!token) return;
  $('#signin-submit').disabled = true;
  try {
    await api.signIn(token);
    $('#signin-token').value = '';
    box.hidden = true;
    if (!awaitingSignIn) {
      // The session ended mid-way: start over cleanly.
      location.reload();
      return;
    }
    awaitingSignIn = false;
    $('#signin-view').hidden = true;
    signedIn?.();
  } catch (err) {
    box.textContent = `${t('signin_failed')}: ${err.message}`;
    box.hidden = false;
  } finally {
    $('#signin-submit').disabled = false;
  }
});

$('#signout').addEventListener('click', async () => {
  try {
    await api.signOut();
  } catch (err) {
    notify('error', err.message);
  }
  location.reload();
});

// ---- reports ----------------------------------------------------------------------

/** The 13510 compliance reports (printable pages the server renders), for
 * roles that may read them: this ISO week's and last month's bulletin, cut
 * in the district's time zone. */
function showReportLinks() {
  $('#reports').hidden = !state.caps.compliance;
  const base = '/v1/reports/compliance?format=html&group_by=town,tier';
  $('#report-week').href = `${base}&week=${isoWeekInZone()}`;
  $('#report-month').href = `${base}&month=${previousMonthInZone()}`;
  $('#report-week').title = t('report_week_title');
  $('#report-month').title = t('report_month_title');
}

// ---- boot -----------------------------------------------------------------------

async function readSession() {
  const s = await api.session();
  state.session.auth = !!s.auth;
  state.session.signedIn = !!s.signed_in;
  state.session.name = s.name ?? '';
  state.session.role = s.role ?? 'anyone';
  state.session.timeZone = s.time_zone || 'Asia/Shanghai';
  setTimeZone(state.session.timeZone);
  sessionKnown = !s.auth || !!s.signed_in;
  return s;
}

async function boot() {
  translateAll();
  let s = await readSession();
  if (s.auth && !s.signed_in) {
    awaitingSignIn = true;
    await showSignIn();
    s = await readSession();
  }
  state.setRole(state.session.role);
  translateAll();
  $('#signout').hidden = !state.session.auth;
  showReportLinks();
  if (state.session.role === 'terminal') {
    const box = $('#role-none');
    box.textContent = t('role_none', { role: state.session.role });
    box.hidden = false;
    return;
  }
  $('#console').hidden = false;
  $('#console').dataset.role = state.session.role;
  document.body.dataset.role = state.session.role;
  unitsView.setAllowed(state.caps.units);
  $('#units').hidden = !state.caps.units;
  $('#board').hidden = !state.caps.incidents;
  $('#detail').hidden = !state.caps.incidents;
  mapView.create($('#map'));
  mapView.onMapClick(openReport);
  const base = api.mapData().then(
    (data) => mapView.setBase(data),
    (err) => notify('error', `/console/map: ${err.message}`),
  );
  await feed.resync();
  await base;
  mapView.fit();
  if (!state.caps.feed && state.caps.units) setInterval(pollUnits, 15000);
}

async function pollUnits() {
  try {
    state.replaceUnits(await api.units());
  } catch (err) {
    if (err.status !== 401) console.warn(`console: units: ${err.message}`);
  }
}

boot().then(
  () => resolveReady({ role: state.session.role, timeZone: currentTimeZone() }),
  (err) => {
    console.error('console: boot failed', err);
    notify('error', `${t('error_prefix')}${err.message}`);
    rejectReady(err);
  },
);
