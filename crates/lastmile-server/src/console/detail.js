// The selected incident: its tiers and assignments (ETA, distance, state), its
// timeline, and the dispatcher's actions on it (assign a candidate, release,
// confirm an unverified arrival, close with a reason). The form controls are in
// index.html and stay put; only the parts that show the incident are rebuilt.

import * as api from './api.js';
import * as state from './state.js';
import { h, setText } from './dom.js';
import { countdown } from './board.js';
import {
  t, kindLabel, tierLabel, tierLongLabel, tierStateLabel, assignmentStateLabel, eventLabel, formatTime, formatDateTime,
  formatDistance, formatEta, severityText, unitStatusLabel,
} from './i18n.js';

let els = {};
let notify = () => {};

/** notify(kind, text): 'error' | 'info' messages for the page's notice area. */
export function create(root, notifier) {
  notify = notifier;
  els = {
    empty: root.querySelector('#detail-empty'),
    body: root.querySelector('#detail-body'),
    head: root.querySelector('#detail-head'),
    tiers: root.querySelector('#detail-tiers'),
    error: root.querySelector('#detail-error'),
    assign: root.querySelector('#assign-section'),
    assignTier: root.querySelector('#assign-tier'),
    candidates: root.querySelector('#candidates'),
    closeForm: root.querySelector('#close-form'),
    closeReason: root.querySelector('#close-reason'),
    closeSubmit: root.querySelector('#close-submit'),
    timeline: root.querySelector('#timeline'),
    deselect: root.querySelector('#detail-deselect'),
  };
  els.assignTier.addEventListener('change', () => loadCandidates());
  els.candidates.addEventListener('click', onCandidateClick);
  els.tiers.addEventListener('click', onAssignmentAction);
  els.closeForm.addEventListener('submit', onClose);
  els.deselect.addEventListener('click', () => state.select(null));
}

function showError(err) {
  const text = err ? `${t('error_prefix')}${err.message}` : '';
  setText(els.error, text);
  els.error.hidden = !err;
  if (err) notify('error', text);
}

async function act(button, fn) {
  if (button) button.disabled = true;
  showError(null);
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return null;
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

// ---- the incident ---------------------------------------------------------

let shownId = null;

function renderHead(inc) {
  const worker = inc.grid_worker;
  const closed = inc.status !== 'OPEN';
  const parts = [
    h(
      'h3',
      { class: 'detail-title', dataset: { incidentId: inc.id, status: inc.status } },
      h('span', { class: `sev sev-${inc.severity}`, text: String(inc.severity) }),
      ` ${inc.id} · ${kindLabel(inc.kind)} · ${severityText(inc.severity)}`,
    ),
    h('p', { class: 'detail-place', text: [inc.town, inc.village, inc.address].filter(Boolean).join(' ') || (inc.outside_service_area ? t('outside') : '') }),
    inc.description ? h('p', { class: 'detail-description', text: inc.description }) : null,
    h(
      'p',
      { class: 'detail-meta' },
      h('time', { datetime: inc.reported_at, text: t('reported_at', { time: formatDateTime(inc.reported_at) }) }),
      ' · ',
      inc.grid_id ? `${inc.grid_id} ` : t('no_grid'),
      worker ? t('grid_worker', { name: worker.name, contact: worker.contact }) : '',
    ),
    closed ? h('p', { class: 'detail-closed', dataset: { testid: 'closed' }, text: t('closed_at', { time: formatDateTime(inc.closed_at) }) }) : null,
  ];
  els.head.replaceChildren(...parts.filter(Boolean));
}

/** The latest assignment of each unit (a unit paged again, or in another
 * tier, has several): those are the ones acted on. */
function latestByUnit(inc) {
  const latest = new Map();
  for (const tier of inc.tiers ?? []) {
    for (const a of tier.assignments ?? []) {
      const prev = latest.get(a.unit_id);
      const at = Date.parse(a.paged_at ?? '') || 0;
      const prevAt = prev ? Date.parse(prev.paged_at ?? '') || 0 : -1;
      if (!prev || at > prevAt || (at === prevAt && a.attempt >= prev.attempt)) latest.set(a.unit_id, a);
    }
  }
  return latest;
}

function assignmentItem(a, latest, canAct) {
  const isLatest = latest.get(a.unit_id) === a;
  const active = state.isActiveAssignment(a);
  const unverified = a.state === 'ON_SCENE' && !a.arrival_verified;
  const unit = state.units.get(a.unit_id);
  const facts = [
    t('eta', { eta: formatEta(a.eta_s) }),
    formatDistance(a.distance_m),
    a.within_target ? t('within_target') : t('beyond_target'),
  ];
  if (a.escalated_from) facts.push(`↑ ${tierLabel(a.escalated_from)}`);
  if (a.state === 'ON_SCENE') {
    facts.push(a.arrival_verified ? t('verified') : t('unverified'));
    if (a.arrival_confirmed_by) facts.push(t('confirmed_by', { name: a.arrival_confirmed_by }));
  }
  const times = [
    a.paged_at ? `${assignmentStateLabel('PAGED')} ${formatTime(a.paged_at)}` : '',
    a.acknowledged_at ? `${assignmentStateLabel('ACKNOWLEDGED')} ${formatTime(a.acknowledged_at)}` : '',
    a.on_scene_at ? `${assignmentStateLabel('ON_SCENE')} ${formatTime(a.on_scene_at)}` : '',
    a.released_at ? `${formatTime(a.released_at)} ${assignmentStateLabel(a.state)}` : '',
  ].filter(Boolean);
  return h(
    'li',
    {
      class: `assignment${active ? ' active' : ''}${unverified ? ' unverified' : ''}${isLatest ? '' : ' earlier'}`,
      dataset: {
        testid: isLatest ? 'assignment' : 'assignment-earlier',
        unitId: a.unit_id,
        state: a.state ?? '',
        verified: String(!!a.arrival_verified),
      },
    },
    h(
      'div',
      { class: 'assignment-main' },
      h('strong', { text: a.unit_id }),
      ` ${a.unit_name} `,
      h('span', { class: `astate astate-${a.state}`, text: assignmentStateLabel(a.state) }),
      unit ? h('span', { class: 'ustatus', text: ` (${unitStatusLabel(unit.status)})` }) : null,
    ),
    h('div', { class: 'assignment-facts', text: facts.join(' · ') }),
    times.length ? h('div', { class: 'assignment-times', text: times.join(' · ') }) : null,
    canAct && isLatest && (active || unverified)
      ? h(
          'div',
          { class: 'assignment-actions' },
          unverified
            ? h('button', {
                type: 'button',
                class: 'confirm',
                dataset: { testid: 'confirm-arrival', unitId: a.unit_id },
                text: t('confirm_arrival'),
              })
            : null,
          active
            ? h('button', { type: 'button', class: 'release', dataset: { testid: 'release', unitId: a.unit_id }, text: t('release') })
            : null,
        )
      : null,
  );
}

function renderTiers(inc) {
  const now = Date.now();
  const latest = latestByUnit(inc);
  const canAct = state.caps.override && inc.status === 'OPEN';
  els.tiers.replaceChildren(
    ...(inc.tiers ?? []).map((tier) => {
      const cd = countdown(tier, now);
      return h(
        'section',
        { class: 'detail-tier', dataset: { testid: 'detail-tier', tier: tier.tier, state: tier.state } },
        h(
          'h4',
          {},
          h('span', { class: 'tier-name', text: tierLongLabel(tier.tier) }),
          ' ',
          h('span', { class: 'tier-state', text: tierStateLabel(tier.state) }),
          ' ',
          h('span', {
            class: cd.over ? 'countdown over' : 'countdown',
            dataset: { testid: 'detail-countdown', deadline: tier.deadline },
            text: cd.text,
          }),
          h('span', { class: 'tier-deadline', text: ` ${formatTime(tier.deadline)} · ${t('required_n', { n: tier.required })}` }),
        ),
        tier.note ? h('p', { class: 'tier-note', text: tier.note }) : '',
        h('ul', { class: 'assignments' }, (tier.assignments ?? []).map((a) => assignmentItem(a, latest, canAct))),
      );
    }),
  );
  els.tiers._tiers = inc.tiers ?? [];
}

function render() {
  const inc = state.selection.incident;
  const id = state.selection.id;
  els.empty.hidden = !!id;
  els.body.hidden = !id;
  if (!id) {
    shownId = null;
    return;
  }
  if (!inc) return; // being read
  const changedIncident = shownId !== id;
  shownId = id;
  renderHead(inc);
  renderTiers(inc);
  const open = inc.status === 'OPEN';
  els.assign.hidden = !(state.caps.override && open);
  els.closeForm.hidden = !(state.caps.override && open);
  if (changedIncident) {
    showError(null);
    els.closeReason.value = '';
    els.assignTier.value = '';
    els.candidates.replaceChildren();
  }
}

export function flush(ch) {
  if (ch.selection || ch.all) render();
  if (ch.timeline) scheduleTimeline();
}

export function tick(now) {
  const tiers = els.tiers?._tiers;
  if (!tiers || els.body.hidden) return;
  const cells = els.tiers.querySelectorAll('[data-testid="detail-countdown"]');
  for (let i = 0; i < cells.length && i < tiers.length; i++) {
    const cd = countdown(tiers[i], now);
    setText(cells[i], cd.text);
    cells[i].classList.toggle('over', cd.over);
  }
}

export function retranslate() {
  render();
  renderTimeline();
  els.candidates.replaceChildren(...lastCandidates.map(candidateButton));
}

// ---- actions --------------------------------------------------------------

async function onAssignmentAction(e) {
  const button = e.target.closest('button[data-unit-id]');
  const inc = state.selection.incident;
  if (!button || !inc) return;
  const unitId = button.dataset.unitId;
  if (button.dataset.testid === 'release') {
    const done = await act(button, () => api.release(unitId, t('release_reason')));
    if (done?.unit) state.putUnit(done.unit);
    if (done) {
      state.refreshIncident(inc.id);
      if (els.assignTier.value) loadCandidates();
    }
  } else if (button.dataset.testid === 'confirm-arrival') {
    const updated = await act(button, () => api.confirmArrival(inc.id, unitId));
    if (updated) state.putIncident(updated);
  }
}

let candidateRequest = 0;
let lastCandidates = [];

async function loadCandidates() {
  const inc = state.selection.incident;
  const tier = els.assignTier.value;
  const mine = ++candidateRequest;
  lastCandidates = [];
  if (!inc || !tier) {
    els.candidates.replaceChildren();
    return;
  }
  els.candidates.setAttribute('aria-busy', 'true');
  els.candidates.replaceChildren(h('p', { class: 'muted', text: t('candidates_loading') }));
  try {
    const data = await api.candidates(inc.id, tier, 10);
    if (mine !== candidateRequest) return;
    lastCandidates = data.candidates ?? [];
    // Within target first, then by ETA (the server's order; kept if it is).
    lastCandidates.sort((a, b) => Number(b.within_target) - Number(a.within_target) || a.eta_s - b.eta_s);
    els.candidates.replaceChildren(
      ...(lastCandidates.length ? lastCandidates.map(candidateButton) : [h('p', { class: 'muted', text: t('candidates_none') })]),
    );
  } catch (err) {
    if (mine !== candidateRequest) return;
    els.candidates.replaceChildren();
    showError(err);
  } finally {
    if (mine === candidateRequest) els.candidates.removeAttribute('aria-busy');
  }
}

function candidateButton(c) {
  const u = c.unit;
  return h(
    'button',
    {
      type: 'button',
      class: `candidate${c.within_target ? ' within' : ' beyond'}`,
      dataset: { testid: 'candidate', unitId: u.id, withinTarget: String(!!c.within_target), etaS: String(c.eta_s) },
    },
    h('strong', { text: u.id }),
    ` ${u.name} `,
    h('span', { class: 'cand-eta', text: t('eta', { eta: formatEta(c.eta_s) }) }),
    ` · ${formatDistance(c.distance_m)} · `,
    h('span', { class: 'cand-target', text: c.within_target ? t('within_target') : t('beyond_target') }),
    ` · ${unitStatusLabel(u.status)}`,
  );
}

async function onCandidateClick(e) {
  const button = e.target.closest('button[data-testid="candidate"]');
  const inc = state.selection.incident;
  const tier = els.assignTier.value;
  if (!button || !inc || !tier) return;
  const updated = await act(button, () => api.assign(inc.id, button.dataset.unitId, tier));
  if (updated) {
    state.putIncident(updated);
    loadCandidates();
  }
}

async function onClose(e) {
  e.preventDefault();
  const inc = state.selection.incident;
  if (!inc) return;
  const reason = els.closeReason.value.trim();
  if (!reason) {
    showError({ message: t('close_need_reason') });
    els.closeReason.focus();
    return;
  }
  const done = await act(els.closeSubmit, () => api.close(inc.id, reason));
  if (done?.incident) {
    els.closeReason.value = '';
    state.putIncident(done.incident);
    state.markTimeline();
  }
}

// ---- the timeline ---------------------------------------------------------

let timelineTimer = 0;
let timelineFor = null;
let timelineEntries = [];
let timelineRequest = 0;

function scheduleTimeline() {
  if (timelineTimer) return;
  timelineTimer = setTimeout(loadTimeline, 150);
}

async function loadTimeline() {
  timelineTimer = 0;
  const id = state.selection.id;
  const mine = ++timelineRequest;
  if (!id || !state.caps.timeline) {
    timelineFor = id;
    timelineEntries = [];
    renderTimeline();
    return;
  }
  if (timelineFor !== id) {
    timelineFor = id;
    timelineEntries = [];
    renderTimeline();
  }
  try {
    const data = await api.timeline(id);
    if (mine !== timelineRequest || state.selection.id !== id) return;
    timelineEntries = data.entries ?? [];
    renderTimeline();
  } catch (err) {
    if (mine === timelineRequest && err.status !== 404) console.warn(`console: timeline of ${id}: ${err.message}`);
  }
}

function renderTimeline() {
  const list = els.timeline;
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  if (!timelineEntries.length) {
    list.replaceChildren(h('li', { class: 'muted', text: t('timeline_empty') }));
    return;
  }
  list.replaceChildren(
    ...timelineEntries.map((e) =>
      h(
        'li',
        { class: `timeline-entry type-${e.type}`, dataset: { testid: 'timeline-entry', type: e.type, n: String(e.n) } },
        h('time', { datetime: e.at, text: formatDateTime(e.at) }),
        h('span', { class: 'tl-type', text: eventLabel(e.type) }),
        e.unit_id ? h('span', { class: 'tl-unit', text: e.unit_id }) : null,
        e.tier ? h('span', { class: 'tl-tier', text: tierLabel(e.tier) }) : null,
        e.detail ? h('span', { class: 'tl-detail', text: e.detail }) : null,
        h('span', { class: 'tl-actor', dataset: { testid: 'actor' }, text: e.actor }),
      ),
    ),
  );
  if (atBottom) list.scrollTop = list.scrollHeight;
}
