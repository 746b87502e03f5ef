// What the console knows (open incidents, units, the selection) and the one
// place that changes it. Views never render on a change directly: a change
// marks what it touched, and once per animation frame the views get the marked
// sets and patch only those parts of the page and the map. A tick once a second
// runs the countdowns.

import * as api from './api.js';

/** Open incidents by id. */
export const incidents = new Map();
/** Units by id. */
export const units = new Map();

export const session = { auth: false, signedIn: false, name: '', role: 'anyone', timeZone: 'Asia/Shanghai' };

/** What the current role may do; the server decides anyway. */
export const caps = {
  incidents: false, report: false, override: false, units: false, setStatus: false, feed: false, timeline: false,
};

export function setRole(role) {
  const all = role === 'anyone' || role === 'dispatcher';
  caps.incidents = all || role === 'integration';
  caps.report = all || role === 'integration';
  caps.timeline = all || role === 'integration';
  caps.feed = all || role === 'integration';
  caps.override = all;
  caps.setStatus = all;
  caps.units = all || role === 'admin';
  caps.compliance = all || role === 'admin' || role === 'report';
}

const ACTIVE = new Set(['PAGED', 'ACKNOWLEDGED', 'ON_SCENE']);
export const isActiveAssignment = (a) => ACTIVE.has(a.state);

export const selection = {
  id: null,
  /** The selected incident as last read: open or closed. */
  incident: null,
};

// Changes marked since the last frame.
const pending = {
  incidents: new Set(),
  removed: new Set(),
  units: new Set(),
  positions: new Set(),
  selection: false,
  timeline: false,
  all: false,
};

const flushers = [];
const tickers = [];

/** fn(changes) runs in an animation frame after something was marked. */
export function onFlush(fn) {
  flushers.push(fn);
}

/** fn(nowMs) runs once a second, in an animation frame. */
export function onTick(fn) {
  tickers.push(fn);
}

export const stats = { events: 0, lastSeq: 0, lastEventAt: null, frameMs: 0 };

let lastFrame = 0;
let lastTickSecond = 0;
let somethingPending = false;

function frame(now) {
  if (lastFrame) stats.frameMs = now - lastFrame;
  lastFrame = now;
  if (somethingPending) {
    somethingPending = false;
    const changes = {
      incidents: new Set(pending.incidents),
      removed: new Set(pending.removed),
      units: new Set(pending.units),
      positions: new Set(pending.positions),
      selection: pending.selection,
      timeline: pending.timeline,
      all: pending.all,
    };
    pending.incidents.clear();
    pending.removed.clear();
    pending.units.clear();
    pending.positions.clear();
    pending.selection = false;
    pending.timeline = false;
    pending.all = false;
    for (const fn of flushers) {
      try {
        fn(changes);
      } catch (err) {
        console.error('console: a view failed to update', err);
      }
    }
  }
  const second = Math.floor(Date.now() / 1000);
  if (second !== lastTickSecond) {
    lastTickSecond = second;
    for (const fn of tickers) {
      try {
        fn(Date.now());
      } catch (err) {
        console.error('console: a countdown failed', err);
      }
    }
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

function mark() {
  somethingPending = true;
}

export function markAll() {
  pending.all = true;
  mark();
}

export function markSelection() {
  pending.selection = true;
  mark();
}

export function markTimeline() {
  pending.timeline = true;
  mark();
}

function setUnitIncident(unitId, incidentId) {
  const unit = units.get(unitId);
  if (!unit || unit.incident_id === incidentId) return;
  unit.incident_id = incidentId;
  pending.units.add(unitId);
  mark();
}

/** Stores an incident as read from the server (open or closed). */
export function putIncident(inc) {
  const open = inc.status === 'OPEN';
  const before = incidents.get(inc.id);
  if (open) {
    incidents.set(inc.id, inc);
    pending.incidents.add(inc.id);
    pending.removed.delete(inc.id);
  } else if (before) {
    incidents.delete(inc.id);
    pending.removed.add(inc.id);
    pending.incidents.delete(inc.id);
  }
  const active = new Set();
  for (const tier of inc.tiers ?? []) {
    for (const a of tier.assignments ?? []) {
      if (open && isActiveAssignment(a)) active.add(a.unit_id);
    }
  }
  for (const unitId of active) setUnitIncident(unitId, inc.id);
  const mentioned = new Set();
  for (const tier of before?.tiers ?? []) for (const a of tier.assignments ?? []) mentioned.add(a.unit_id);
  for (const tier of inc.tiers ?? []) for (const a of tier.assignments ?? []) mentioned.add(a.unit_id);
  for (const unitId of mentioned) {
    if (!active.has(unitId) && units.get(unitId)?.incident_id === inc.id) setUnitIncident(unitId, '');
  }
  if (selection.id === inc.id) {
    selection.incident = inc;
    pending.selection = true;
  }
  mark();
}

/** An open incident is no longer open (closed, or unknown to the server). */
export function dropIncident(id) {
  const before = incidents.get(id);
  if (!before) return;
  incidents.delete(id);
  pending.removed.add(id);
  pending.incidents.delete(id);
  for (const tier of before.tiers ?? []) {
    for (const a of tier.assignments ?? []) {
      if (units.get(a.unit_id)?.incident_id === id) setUnitIncident(a.unit_id, '');
    }
  }
  mark();
}

/** Changes one tier's state at once, before the incident is read again. */
export function setTierState(incidentId, tier, state) {
  const inc = incidents.get(incidentId);
  const t = inc?.tiers?.find((x) => x.tier === tier);
  if (!t || t.state === state) return;
  t.state = state;
  pending.incidents.add(incidentId);
  if (selection.id === incidentId) pending.selection = true;
  mark();
}

export function putUnit(unit) {
  const before = units.get(unit.id);
  units.set(unit.id, unit);
  pending.units.add(unit.id);
  if (!before || before.position?.lat !== unit.position?.lat || before.position?.lng !== unit.position?.lng) {
    pending.positions.add(unit.id);
  }
  mark();
}

export function setUnitStatus(unitId, status) {
  const unit = units.get(unitId);
  if (!unit || unit.status === status) return;
  unit.status = status;
  pending.units.add(unitId);
  mark();
}

export function setUnitPosition(unitId, position) {
  const unit = units.get(unitId);
  if (!unit) return;
  unit.position = { lat: position.lat, lng: position.lng };
  pending.positions.add(unitId);
  mark();
}

export function setUnitIncidentFromEvent(unitId, incidentId, paged) {
  if (paged) setUnitIncident(unitId, incidentId);
  else if (units.get(unitId)?.incident_id === incidentId) setUnitIncident(unitId, '');
}

/** Replaces all incidents with a fresh read of the open ones. */
export function replaceIncidents(list) {
  const fresh = new Set(list.map((i) => i.id));
  for (const id of [...incidents.keys()]) if (!fresh.has(id)) dropIncident(id);
  for (const inc of list) putIncident(inc);
}

/** Replaces all units with a fresh read. */
export function replaceUnits(list) {
  const fresh = new Set(list.map((u) => u.id));
  for (const id of [...units.keys()]) {
    if (!fresh.has(id)) {
      units.delete(id);
      pending.units.add(id);
    }
  }
  for (const unit of list) putUnit(unit);
  // putIncident keeps unit.incident_id in step; a fresh unit list already has it.
  mark();
}

export function select(id) {
  if (selection.id === id) return;
  selection.id = id;
  selection.incident = id ? incidents.get(id) ?? null : null;
  pending.selection = true;
  pending.timeline = true;
  mark();
  if (id && !selection.incident) refreshIncident(id);
}

// Incident reads, coalesced: an event only says "this incident changed"; the
// incident is read again once per burst, at most MAX_READS at a time and
// READS_PER_S a second (a token's calls are rate-limited, and every console
// signed in with it shares its rate), and read once more if it changed again
// while being read. A read refused for the rate (429) or unavailable (503)
// is tried again after the server's Retry-After.
const MAX_READS = 6;
const READS_PER_S = 20;
const COALESCE_MS = 60;
const wanted = new Set();
const reading = new Set();
const again = new Set();
let pumpTimer = 0;
let readTokens = READS_PER_S;
let tokensAt = performance.now();

export function refreshIncident(id) {
  if (reading.has(id)) {
    again.add(id);
    return;
  }
  wanted.add(id);
  schedulePump(COALESCE_MS);
}

function schedulePump(ms) {
  if (!pumpTimer) pumpTimer = setTimeout(pump, ms);
}

function pump() {
  pumpTimer = 0;
  const now = performance.now();
  readTokens = Math.min(READS_PER_S, readTokens + ((now - tokensAt) / 1000) * READS_PER_S);
  tokensAt = now;
  for (const id of wanted) {
    if (reading.size >= MAX_READS || readTokens < 1) break;
    readTokens -= 1;
    wanted.delete(id);
    reading.add(id);
    readIncident(id);
  }
  if (wanted.size && reading.size < MAX_READS) schedulePump(Math.ceil(((1 - readTokens) * 1000) / READS_PER_S) + 1);
}

async function readIncident(id) {
  let retryMs = 0;
  try {
    putIncident(await api.incident(id));
  } catch (err) {
    if (err.status === 404) dropIncident(id);
    else if (err.status === 429 || err.status === 503 || err.status === 0) retryMs = (err.retryAfterS ?? 1) * 1000;
    else if (err.status !== 401) console.warn(`console: reading ${id} failed: ${err.message}`);
  } finally {
    reading.delete(id);
    if (retryMs) {
      setTimeout(() => refreshIncident(id), retryMs);
    } else if (again.delete(id)) {
      wanted.add(id);
    }
    if (wanted.size) schedulePump(0);
  }
}

/** Ids of the open incidents in the board's order: highest severity first,
 * then the nearest open deadline, then the oldest. */
export function sortedIncidentIds() {
  const keyed = [...incidents.values()].map((inc) => ({
    id: inc.id,
    severity: inc.severity,
    deadline: nextDeadline(inc),
    reported: Date.parse(inc.reported_at),
  }));
  keyed.sort(compareKeys);
  return keyed.map((k) => k.id);
}

function compareKeys(a, b) {
  if (a.severity !== b.severity) return b.severity - a.severity;
  if (a.deadline !== b.deadline) {
    if (a.deadline === Infinity) return 1;
    if (b.deadline === Infinity) return -1;
    return a.deadline - b.deadline;
  }
  if (a.reported !== b.reported) return a.reported - b.reported;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const PENDING_TIER = new Set(['PAGING', 'SHORT']);

/** The nearest deadline of a tier still waiting for its units (ms), or Infinity. */
export function nextDeadline(inc) {
  let best = Infinity;
  for (const t of inc.tiers ?? []) {
    if (!PENDING_TIER.has(t.state)) continue;
    const ms = Date.parse(t.deadline);
    if (ms < best) best = ms;
  }
  return best;
}

/** The worst state among an incident's tiers, for its colour. */
export function worstState(inc) {
  const order = ['BREACHED', 'ESCALATED', 'SHORT', 'PAGING', 'MET', 'CANCELLED'];
  let best = order.length;
  for (const t of inc.tiers ?? []) {
    const i = order.indexOf(t.state);
    if (i >= 0 && i < best) best = i;
  }
  return order[best] ?? 'MET';
}
