// The incident board: open incidents, highest severity and then the nearest
// open deadline first. A row is rebuilt only when its incident changed; the
// order is patched by moving the rows that are out of place; the countdowns of
// the rows on screen are updated once a second (the others when they scroll
// into view).

import * as state from './state.js';
import { h, setData, setText } from './dom.js';
import {
  t, kindLabel, tierLabel, tierStateLabel, assignmentStateLabel, formatTime, clock, severityText,
} from './i18n.js';

let list = null;
let countEl = null;
let emptyEl = null;
const rows = new Map(); // incident id -> row element
const visible = new Set(); // row elements on screen
let observer = null;

export function create(root) {
  countEl = root.querySelector('#board-count');
  emptyEl = root.querySelector('#board-empty');
  list = root.querySelector('#board-list');
  list.addEventListener('click', (e) => {
    if (e.target.closest('a, input, select')) return;
    const row = e.target.closest('[data-testid="incident-row"]');
    if (row) state.select(row.dataset.incidentId);
  });
  observer = new IntersectionObserver(
    (entries) => {
      const now = Date.now();
      for (const entry of entries) {
        if (entry.isIntersecting) {
          visible.add(entry.target);
          updateCountdowns(entry.target, now);
        } else {
          visible.delete(entry.target);
        }
      }
    },
    { root: list.closest('.scroll') ?? null, rootMargin: '200px 0px' },
  );
}

const PENDING = new Set(['PAGING', 'SHORT']);
const MAX_CHIPS = 3;

/** The countdown of a tier: time left to its deadline while it waits for
 * units, time over it once breached or escalated; seconds, negative when over. */
export function countdown(tier, now) {
  const deadline = Date.parse(tier.deadline);
  if (!Number.isFinite(deadline)) return { text: '', seconds: null, over: false };
  const left = Math.ceil((deadline - now) / 1000);
  if (PENDING.has(tier.state) || tier.state === 'BREACHED' || tier.state === 'ESCALATED') {
    if (left >= 0 && PENDING.has(tier.state)) return { text: clock(left), seconds: left, over: false };
    return { text: `+${clock(-left)}`, seconds: left, over: true };
  }
  if (tier.state === 'MET') return { text: '✓', seconds: left, over: false };
  return { text: '—', seconds: left, over: false };
}

function arrived(tier) {
  return (tier.assignments ?? []).filter((a) => a.state === 'ON_SCENE' && a.arrival_verified).length;
}

function tierCell(tier, now) {
  const cd = countdown(tier, now);
  const units = (tier.assignments ?? []).filter(state.isActiveAssignment);
  return h(
    'div',
    { class: 'tier', dataset: { testid: 'tier', tier: tier.tier, state: tier.state } },
    h('span', { class: 'tier-name', text: tierLabel(tier.tier) }),
    h('span', { class: 'tier-state', text: tierStateLabel(tier.state) }),
    h('span', {
      class: cd.over ? 'countdown over' : 'countdown',
      dataset: { testid: 'countdown', deadline: tier.deadline, seconds: String(cd.seconds ?? '') },
      text: cd.text,
    }),
    h('span', { class: 'tier-count', title: t('units_on', { n: arrived(tier), req: tier.required }), text: `${arrived(tier)}/${tier.required}` }),
    h(
      'ul',
      { class: 'tier-units' },
      units.slice(0, MAX_CHIPS).map((a) =>
        h(
          'li',
          {
            class: 'unit-chip',
            dataset: { testid: 'row-unit', unitId: a.unit_id, state: a.state, verified: String(!!a.arrival_verified) },
            title: `${a.unit_id} ${a.unit_name} · ${assignmentStateLabel(a.state)}`,
          },
          h('i', { class: 'chip-dot', 'aria-hidden': 'true' }),
          a.unit_id,
          h('span', { class: 'sr-only', text: ` ${assignmentStateLabel(a.state)}` }),
        ),
      ),
      units.length > MAX_CHIPS ? h('li', { class: 'unit-chip more', text: `+${units.length - MAX_CHIPS}` }) : null,
    ),
  );
}

function buildRow(inc, row) {
  const now = Date.now();
  const el = row ?? h('li', { class: 'incident-row', dataset: { testid: 'incident-row', incidentId: inc.id } });
  setData(el, 'severity', String(inc.severity));
  setData(el, 'worst', state.worstState(inc));
  el.classList.toggle('selected', state.selection.id === inc.id);
  const head = h(
    'button',
    { type: 'button', class: 'row-head', 'aria-label': `${inc.id} ${kindLabel(inc.kind)} ${severityText(inc.severity)}` },
    h('span', { class: `sev sev-${inc.severity}`, text: String(inc.severity) }),
    h('span', { class: 'kind', text: kindLabel(inc.kind) }),
    h('span', { class: 'inc-id', text: inc.id }),
    h('span', { class: 'place', text: [inc.town, inc.village].filter(Boolean).join(' ') }),
    h('time', { class: 'reported', datetime: inc.reported_at, text: formatTime(inc.reported_at) }),
  );
  const tiers = h('div', { class: 'tiers' }, (inc.tiers ?? []).map((x) => tierCell(x, now)));
  el.replaceChildren(head, tiers);
  el._tiers = inc.tiers ?? [];
  return el;
}

function updateCountdowns(row, now) {
  const tiers = row._tiers ?? [];
  const cells = row.querySelectorAll('[data-testid="countdown"]');
  for (let i = 0; i < cells.length && i < tiers.length; i++) {
    const cd = countdown(tiers[i], now);
    setText(cells[i], cd.text);
    setData(cells[i], 'seconds', String(cd.seconds ?? ''));
    cells[i].classList.toggle('over', cd.over);
  }
}

let order = [];

export function flush(ch) {
  if (!list) return;
  let reorder = false;
  for (const id of ch.removed) {
    const row = rows.get(id);
    if (row) {
      observer.unobserve(row);
      visible.delete(row);
      row.remove();
      rows.delete(id);
    }
  }
  const changed = ch.all ? state.incidents.keys() : ch.incidents;
  for (const id of changed) {
    const inc = state.incidents.get(id);
    if (!inc) continue;
    const row = rows.get(id);
    if (row) buildRow(inc, row);
    else {
      const fresh = buildRow(inc);
      rows.set(id, fresh);
      observer.observe(fresh);
    }
    reorder = true;
  }
  if (ch.selection) {
    for (const [id, row] of rows) row.classList.toggle('selected', state.selection.id === id);
  }
  if (reorder || ch.removed.size) {
    order = state.sortedIncidentIds();
    let prev = null;
    for (const id of order) {
      const el = rows.get(id);
      if (!el) continue;
      const want = prev ? prev.nextSibling : list.firstChild;
      if (el !== want) list.insertBefore(el, want);
      prev = el;
    }
    setText(countEl, t('board_count', { n: rows.size }));
    emptyEl.hidden = rows.size > 0;
  }
}

export function tick(now) {
  for (const row of visible) updateCountdowns(row, now);
}

/** The board's order of incident ids. */
export function incidentIds() {
  return state.sortedIncidentIds();
}

export function retranslate() {
  setText(countEl, t('board_count', { n: rows.size }));
}
