// The unit board: every unit, filtered by tier, town, status and a search
// text; a dispatcher sets a unit out of service or available from its row. A
// row is built once and patched when its unit changes.

import * as api from './api.js';
import * as state from './state.js';
import { h, setData, setText } from './dom.js';
import { t, tierLabel, unitStatusLabel } from './i18n.js';

const TIER_ORDER = { TIER_1: 1, TIER_3: 3, TIER_5: 5, TIER_10: 10 };
export const STATUSES = ['AVAILABLE', 'PAGED', 'EN_ROUTE', 'ON_SCENE', 'RETURNING', 'OUT_OF_SERVICE', 'UNRESPONSIVE'];
const SETTABLE = ['OUT_OF_SERVICE', 'AVAILABLE'];

let els = {};
let notify = () => {};
const rows = new Map();
const towns = new Set();
let townsChanged = false;

export function create(root, notifier) {
  notify = notifier;
  els = {
    root,
    tier: root.querySelector('#unit-tier'),
    town: root.querySelector('#unit-town'),
    status: root.querySelector('#unit-status'),
    search: root.querySelector('#unit-search'),
    body: root.querySelector('#unit-rows'),
    count: root.querySelector('#unit-count'),
    refused: root.querySelector('#units-refused'),
    table: root.querySelector('#unit-table'),
  };
  fillStaticOptions();
  for (const el of [els.tier, els.town, els.status]) el.addEventListener('change', applyFilters);
  els.search.addEventListener('input', applyFilters);
  els.body.addEventListener('change', onSetStatus);
}

function fillStaticOptions() {
  const keepTier = els.tier.value;
  els.tier.replaceChildren(
    h('option', { value: '', text: t('all_tiers') }),
    ...Object.keys(TIER_ORDER).map((k) => h('option', { value: k, text: tierLabel(k) })),
  );
  els.tier.value = keepTier;
  const keepStatus = els.status.value;
  els.status.replaceChildren(
    h('option', { value: '', text: t('all_statuses') }),
    ...STATUSES.map((k) => h('option', { value: k, text: unitStatusLabel(k) })),
  );
  els.status.value = keepStatus;
  fillTowns();
}

function fillTowns() {
  const keep = els.town.value;
  const sorted = [...towns].sort((a, b) => a.localeCompare(b, 'zh-CN'));
  els.town.replaceChildren(h('option', { value: '', text: t('all_towns') }), ...sorted.map((n) => h('option', { value: n, text: n })));
  els.town.value = sorted.includes(keep) ? keep : '';
}

function statusSelect(u) {
  const allowed = state.caps.setStatus;
  return h(
    'select',
    {
      dataset: { testid: 'set-status', unitId: u.id },
      'aria-label': t('set_status_of', { unit: u.id }),
      disabled: !allowed,
    },
    h('option', { value: '', text: t('set_status') }),
    ...SETTABLE.map((s) => h('option', { value: s, text: unitStatusLabel(s) })),
  );
}

function buildRow(u) {
  const row = h(
    'div',
    { class: 'urow', role: 'row', dataset: { testid: 'unit-row', unitId: u.id, status: u.status, tier: u.tier, town: u.town ?? '' } },
    h('div', { class: 'unit-name', role: 'cell' }, h('strong', { text: u.id }), ' ', h('span', { text: u.name })),
    h('div', { class: `unit-tier tier-${u.tier}`, role: 'cell', text: tierLabel(u.tier) }),
    h('div', { class: 'unit-town', role: 'cell', text: [u.town, u.village].filter(Boolean).join(' ') }),
    h('div', { class: 'unit-status', role: 'cell' }, h('span', { class: `ustatus-badge s-${u.status}`, text: unitStatusLabel(u.status) })),
    h('div', { class: 'unit-incident', role: 'cell', text: u.incident_id ?? '' }),
    h('div', { class: 'unit-action', role: 'cell' }, statusSelect(u)),
  );
  row._search = `${u.id} ${u.name}`.toLowerCase();
  return row;
}

function patchRow(tr, u) {
  setData(tr, 'status', u.status);
  const badge = tr.querySelector('.ustatus-badge');
  badge.className = `ustatus-badge s-${u.status}`;
  setText(badge, unitStatusLabel(u.status));
  setText(tr.querySelector('.unit-incident'), u.incident_id ?? '');
}

function compareUnits(a, b) {
  return (TIER_ORDER[a.tier] ?? 99) - (TIER_ORDER[b.tier] ?? 99) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function matches(tr, f) {
  const d = tr.dataset;
  if (f.tier && d.tier !== f.tier) return false;
  if (f.town && d.town !== f.town) return false;
  if (f.status && d.status !== f.status) return false;
  if (f.search && !tr._search.includes(f.search)) return false;
  return true;
}

function filters() {
  return {
    tier: els.tier.value,
    town: els.town.value,
    status: els.status.value,
    search: els.search.value.trim().toLowerCase(),
  };
}

// Only the rows that pass the filters are in the document (so that a
// selector over the rows finds the filtered ones only); `shown` is that set.
let shown = new Set();

function applyFilters() {
  const f = filters();
  const next = new Set();
  const ordered = [];
  for (const u of [...state.units.values()].sort(compareUnits)) {
    const row = rows.get(u.id);
    if (row && matches(row, f)) {
      next.add(u.id);
      ordered.push(row);
    }
  }
  shown = next;
  els.body.replaceChildren(...ordered);
  setText(els.count, t('units_count', { shown: shown.size, total: rows.size }));
}

export function flush(ch) {
  if (!els.body) return;
  let rebuild = !!ch.all;
  const f = filters();
  const ids = ch.all ? new Set([...state.units.keys(), ...ch.units]) : ch.units;
  for (const id of ids) {
    const u = state.units.get(id);
    const row = rows.get(id);
    if (!u) {
      if (row) {
        rows.delete(id);
        rebuild = true;
      }
      continue;
    }
    if (row) {
      patchRow(row, u);
      if (matches(row, f) !== shown.has(id)) rebuild = true;
    } else {
      rows.set(id, buildRow(u));
      rebuild = true;
      if (u.town && !towns.has(u.town)) {
        towns.add(u.town);
        townsChanged = true;
      }
    }
  }
  if (townsChanged) {
    townsChanged = false;
    fillTowns();
  }
  if (rebuild) applyFilters();
}

async function onSetStatus(e) {
  const select = e.target.closest('select[data-testid="set-status"]');
  if (!select || !select.value) return;
  const unitId = select.dataset.unitId;
  const status = select.value;
  select.disabled = true;
  try {
    const done = await api.setUnitStatus(unitId, status);
    if (done?.unit) state.putUnit(done.unit);
  } catch (err) {
    notify('error', `${t('error_prefix')}${err.message}`);
  } finally {
    select.value = '';
    select.disabled = !state.caps.setStatus;
  }
}

export function setAllowed(listAllowed) {
  els.refused.hidden = listAllowed;
  els.table.hidden = !listAllowed;
}

export function retranslate() {
  fillStaticOptions();
  for (const id of [...rows.keys()]) {
    const u = state.units.get(id);
    if (u) rows.set(id, buildRow(u));
    else rows.delete(id);
  }
  applyFilters();
}
