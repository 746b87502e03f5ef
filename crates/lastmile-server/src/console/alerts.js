// Alerts: a visible banner and a short beep when a tier is breached or
// escalated or an arrival is unverified. The sound can be muted, and the
// choice is remembered. Notices (refusals, errors) share the banner's area.

import * as state from './state.js';
import { h } from './dom.js';
import { t, tierLabel, formatTime } from './i18n.js';

const MUTE_KEY = 'lastmile.console.muted';
const MAX_ALERTS = 6;
const ALERT_TYPES = new Set(['TIER_BREACHED', 'TIER_ESCALATED', 'UNIT_ARRIVAL_UNVERIFIED']);

let box = null;
let noticeBox = null;
let muteButton = null;
let muted = false;
let audio = null;
let lastBeep = 0;

export function create(alertBox, notices, mute) {
  box = alertBox;
  noticeBox = notices;
  muteButton = mute;
  try {
    muted = localStorage.getItem(MUTE_KEY) === '1';
  } catch {
    muted = false;
  }
  showMute();
  muteButton.addEventListener('click', () => {
    muted = !muted;
    try {
      localStorage.setItem(MUTE_KEY, muted ? '1' : '0');
    } catch {
      // not remembered
    }
    showMute();
  });
  // Browsers start audio only after a gesture: make the context on the first one.
  const unlock = () => {
    ensureAudio();
    window.removeEventListener('pointerdown', unlock, true);
    window.removeEventListener('keydown', unlock, true);
  };
  window.addEventListener('pointerdown', unlock, true);
  window.addEventListener('keydown', unlock, true);
  box.addEventListener('click', (e) => {
    const dismiss = e.target.closest('button.dismiss');
    const item = e.target.closest('[data-testid="alert"]');
    if (dismiss && item) {
      item.remove();
      return;
    }
    if (item?.dataset.incidentId) state.select(item.dataset.incidentId);
  });
  noticeBox.addEventListener('click', (e) => {
    if (e.target.closest('button.dismiss')) e.target.closest('.notice')?.remove();
  });
}

function showMute() {
  muteButton.setAttribute('aria-pressed', String(muted));
  muteButton.textContent = muted ? t('unmute') : t('mute');
  muteButton.dataset.muted = String(muted);
}

export function isMuted() {
  return muted;
}

function ensureAudio() {
  if (audio) return audio;
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  try {
    audio = new Ctx();
  } catch {
    audio = null;
  }
  return audio;
}

/** A short two-tone beep, at most one a second. */
export function beep() {
  if (muted) return false;
  const now = performance.now();
  if (now - lastBeep < 1000) return false;
  lastBeep = now;
  const ctx = ensureAudio();
  if (!ctx) return false;
  try {
    if (ctx.state === 'suspended') ctx.resume();
    const start = ctx.currentTime + 0.01;
    const gain = ctx.createGain();
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.35);
    gain.connect(ctx.destination);
    const osc = ctx.createOscillator();
    osc.type = 'square';
    osc.frequency.setValueAtTime(880, start);
    osc.frequency.setValueAtTime(660, start + 0.17);
    osc.connect(gain);
    osc.start(start);
    osc.stop(start + 0.36);
    stats.beeps += 1;
  } catch {
    return false;
  }
  return true;
}

export const stats = { alerts: 0, beeps: 0 };

function alertText(ev) {
  const vars = { incident: ev.incident_id, tier: tierLabel(ev.tier), unit: ev.unit_id, detail: ev.detail };
  if (ev.type === 'TIER_BREACHED') return t('alert_breached', vars);
  if (ev.type === 'TIER_ESCALATED') return t('alert_escalated', vars);
  return t('alert_unverified', vars);
}

/** Raises an alert for the events that call for one. */
export function onEvent(ev) {
  if (!ALERT_TYPES.has(ev.type)) return;
  stats.alerts += 1;
  const item = h(
    'div',
    {
      class: `alert alert-${ev.type}`,
      role: 'alert',
      dataset: { testid: 'alert', type: ev.type, incidentId: ev.incident_id ?? '', seq: String(ev.seq ?? '') },
    },
    h('time', { datetime: ev.at, text: formatTime(ev.at) }),
    h('span', { class: 'alert-text', text: alertText(ev) }),
    h('button', { type: 'button', class: 'dismiss', 'aria-label': t('dismiss'), text: '×' }),
  );
  box.prepend(item);
  while (box.children.length > MAX_ALERTS) box.lastElementChild.remove();
  beep();
}

/** A short notice: kind 'error' stays until dismissed or 12 s pass. */
export function notify(kind, text) {
  const item = h(
    'div',
    { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: { testid: kind === 'error' ? 'error' : 'notice' } },
    h('span', { text }),
    h('button', { type: 'button', class: 'dismiss', 'aria-label': t('dismiss'), text: '×' }),
  );
  noticeBox.prepend(item);
  while (noticeBox.children.length > 4) noticeBox.lastElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? 12000 : 5000);
}

export function retranslate() {
  showMute();
}
