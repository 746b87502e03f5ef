// The live feed: Server-Sent Events from /v1/events, authenticated by the
// session cookie. EventSource resumes by itself after a dropped connection
// (it sends Last-Event-ID), so nothing is lost; every event is taken once, by
// its seq. When resuming is impossible (an `event: feed_error`, or the server
// refusing the resume: too far behind, or restarted) the console reads the
// state again and follows the feed from now, opening the new stream *before*
// reading, so that no change falls between the read and the stream.

import * as api from './api.js';
import * as state from './state.js';

const EVENT_TYPES = [
  'INCIDENT_REPORTED', 'INCIDENT_CLOSED', 'UNIT_PAGED', 'UNIT_REPAGED', 'UNIT_ACKNOWLEDGED', 'UNIT_DECLINED',
  'UNIT_TIMED_OUT', 'UNIT_EN_ROUTE', 'UNIT_ON_SCENE', 'UNIT_RELEASED', 'TIER_SHORT', 'TIER_MET', 'TIER_BREACHED',
  'TIER_ESCALATED', 'UNIT_STATUS_CHANGED', 'UNIT_POSITION', 'GRID_WORKER_NOTIFIED', 'UNIT_ARRIVAL_UNVERIFIED',
  'ARRIVAL_CONFIRMED',
];

const TIER_EVENT_STATE = {
  TIER_SHORT: 'SHORT', TIER_MET: 'MET', TIER_BREACHED: 'BREACHED', TIER_ESCALATED: 'ESCALATED',
};
const PAGED_EVENTS = new Set(['UNIT_PAGED', 'UNIT_REPAGED']);
const UNPAGED_EVENTS = new Set(['UNIT_RELEASED', 'UNIT_DECLINED', 'UNIT_TIMED_OUT']);

let source = null;
let lastSeq = 0;
/** Events received while the state is being read; applied after it. */
let buffer = null;
let reconnectTimer = 0;
let reconnectDelay = 1000;
let wasLost = false;
/** The state was not read since the feed was last lost for good: a stream
 * that opens now must not be taken as live before it is read again. */
let stale = false;
let hooks = { connection() {}, event() {}, loaded() {} };

/** hooks.connection(state, labelKey): 'live' | 'lost' | 'resyncing'.
 *  hooks.event(ev): every new event, after it was applied (alerts).
 *  hooks.loaded(): the state was read (again). */
export function setHooks(h) {
  hooks = { ...hooks, ...h };
}

export function lastSequence() {
  return lastSeq;
}

function onMessage(msg) {
  let ev;
  try {
    ev = JSON.parse(msg.data);
  } catch {
    return;
  }
  const seq = Number(ev.seq ?? msg.lastEventId);
  if (Number.isFinite(seq) && seq <= lastSeq) return; // seen already
  if (Number.isFinite(seq)) lastSeq = seq;
  state.stats.events += 1;
  state.stats.lastSeq = lastSeq;
  state.stats.lastEventAt = ev.at;
  if (buffer) buffer.push(ev);
  else apply(ev);
}

/** Applies one event to the state; incidents are read again for their truth. */
export function apply(ev) {
  const unitId = ev.unit_id;
  if (unitId) {
    if (ev.unit_status) state.setUnitStatus(unitId, ev.unit_status);
    if (ev.type === 'UNIT_POSITION' && ev.position) state.setUnitPosition(unitId, ev.position);
    if (ev.incident_id && PAGED_EVENTS.has(ev.type)) state.setUnitIncidentFromEvent(unitId, ev.incident_id, true);
    if (ev.incident_id && UNPAGED_EVENTS.has(ev.type)) state.setUnitIncidentFromEvent(unitId, ev.incident_id, false);
  }
  const incidentId = ev.incident_id;
  if (incidentId) {
    if (ev.type === 'INCIDENT_CLOSED') {
      state.dropIncident(incidentId);
      if (state.selection.id === incidentId) state.refreshIncident(incidentId);
    } else {
      const tierState = TIER_EVENT_STATE[ev.type];
      if (tierState && ev.tier) state.setTierState(incidentId, ev.tier, tierState);
      state.refreshIncident(incidentId);
    }
    if (state.selection.id === incidentId) state.markTimeline();
  }
  hooks.event(ev);
}

function open() {
  const es = new EventSource('/v1/events');
  for (const type of EVENT_TYPES) es.addEventListener(type, onMessage);
  es.addEventListener('message', onMessage);
  es.addEventListener('feed_error', (msg) => {
    if (source !== es) return;
    let why = '';
    try {
      why = JSON.parse(msg.data)?.error?.message ?? '';
    } catch {
      why = msg.data;
    }
    console.warn(`console: the feed ended: ${why}`);
    es.close();
    source = null;
    stale = true;
    resync();
  });
  es.onerror = () => {
    if (source !== es) return;
    wasLost = true;
    hooks.connection('lost', 'conn_lost');
    if (es.readyState === EventSource.CLOSED) {
      // The server refused to resume (or the session is gone): read again.
      source = null;
      stale = true;
      scheduleResync();
    }
  };
  es.onopen = () => {
    if (source !== es) return;
    reconnectDelay = 1000;
    if (buffer) return; // a resync is reading; it reports when done
    if (stale) {
      resync(true);
      return;
    }
    if (wasLost) {
      wasLost = false;
      hooks.connection('live', 'conn_resynced');
    } else {
      hooks.connection('live', 'conn_live');
    }
  };
  source = es;
  return es;
}

function scheduleResync() {
  if (reconnectTimer) return;
  const delay = reconnectDelay;
  reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  reconnectTimer = setTimeout(() => {
    reconnectTimer = 0;
    resync();
  }, delay);
}

function waitOpen(es, ms) {
  return new Promise((resolve) => {
    if (es.readyState === EventSource.OPEN) return resolve(true);
    const done = (ok) => {
      clearTimeout(timer);
      es.removeEventListener('open', onOpen);
      es.removeEventListener('error', onErr);
      resolve(ok);
    };
    const onOpen = () => done(true);
    const onErr = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    es.addEventListener('open', onOpen);
    es.addEventListener('error', onErr);
  });
}

let resyncing = null;

/** Follows the feed from now and reads the state again; `reuse`: the
 * current stream has just opened from now, keep it. */
export function resync(reuse = false) {
  if (resyncing) return resyncing;
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  resyncing = (async () => {
    hooks.connection('resyncing', 'conn_resyncing');
    buffer = [];
    let opened = false;
    if (reuse && source?.readyState === EventSource.OPEN) {
      opened = true;
    } else {
      if (source) source.close();
      source = null;
      lastSeq = 0; // a fresh stream carries only new events, whatever their numbers
      if (state.caps.feed) {
        const es = open();
        opened = await waitOpen(es, 5000);
      }
    }
    try {
      await load();
    } catch (err) {
      buffer = null;
      resyncing = null;
      stale = true;
      wasLost = true;
      hooks.connection('lost', 'conn_lost');
      if (err.status !== 401) scheduleResync();
      throw err;
    }
    const held = buffer;
    buffer = null;
    stale = false;
    for (const ev of held) apply(ev);
    resyncing = null;
    hooks.loaded();
    if (!state.caps.feed) hooks.connection('lost', 'conn_no_feed');
    else if (opened || source?.readyState === EventSource.OPEN) {
      hooks.connection('live', wasLost ? 'conn_resynced' : 'conn_live');
      wasLost = false;
    } else {
      wasLost = true;
      hooks.connection('lost', 'conn_lost');
    }
  })();
  return resyncing;
}

async function load() {
  const [incidents, units] = await Promise.all([
    state.caps.incidents ? api.openIncidents() : Promise.resolve(null),
    state.caps.units ? api.units() : Promise.resolve(null),
  ]);
  // Units first: incidents mark which unit is on which incident.
  if (units) state.replaceUnits(units);
  if (incidents) state.replaceIncidents(incidents);
  if (state.selection.id && !state.incidents.has(state.selection.id)) state.refreshIncident(state.selection.id);
}

/** Stops following the feed (signing out). */
export function stop() {
  if (source) source.close();
  source = null;
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
}
