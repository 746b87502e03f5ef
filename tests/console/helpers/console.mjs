// The console's contract, as the tests use it: element ids, data-testid
// attributes and window.lastmileConsole. Every wait is bounded and its
// failure says which element of the contract was missing or wrong.

import { STEP_TIMEOUT_MS, describeProblems } from './browser.mjs';

export const sel = {
  signin: '#signin',
  signinToken: '#signin-token',
  signinSubmit: '#signin-submit',
  signinError: '#signin-error',
  signout: '#signout',
  map: '#map',
  reportDialog: '#report-dialog',
  reportKind: '#report-kind',
  reportSeverity: '#report-severity',
  reportDescription: '#report-description',
  reportSubmit: '#report-submit',
  board: '#board',
  row: (id) => (id ? `#board [data-testid="incident-row"][data-incident-id="${id}"]` : '#board [data-testid="incident-row"]'),
  tier: (tier) => (tier ? `[data-testid="tier"][data-tier="${tier}"]` : '[data-testid="tier"]'),
  countdown: '[data-testid="countdown"]',
  alert: '[data-testid="alert"]',
  mute: '#mute',
  detail: '#detail',
  assignment: (unit) => (unit ? `#detail [data-testid="assignment"][data-unit-id="${unit}"]` : '#detail [data-testid="assignment"]'),
  timeline: '#timeline',
  timelineEntry: (type) => (type ? `#timeline [data-testid="timeline-entry"][data-type="${type}"]` : '#timeline [data-testid="timeline-entry"]'),
  assignTier: '#assign-tier',
  candidate: (unit) => (unit ? `#detail [data-testid="candidate"][data-unit-id="${unit}"]` : '#detail [data-testid="candidate"]'),
  release: (unit) => `#detail [data-testid="release"][data-unit-id="${unit}"]`,
  confirmArrival: (unit) => `#detail [data-testid="confirm-arrival"][data-unit-id="${unit}"]`,
  closeReason: '#close-reason',
  closeSubmit: '#close-submit',
  units: '#units',
  unitSearch: '#unit-search',
  unitTier: '#unit-tier',
  unitTown: '#unit-town',
  unitStatus: '#unit-status',
  unitRow: (unit) => (unit ? `#units [data-testid="unit-row"][data-unit-id="${unit}"]` : '#units [data-testid="unit-row"]'),
  setStatus: '[data-testid="set-status"]',
  connection: '#connection',
  lang: '#lang',
};

/** Whether `selector` is in the DOM at all (for a clearer failure). */
async function presence(page, selector) {
  try {
    const n = await page.locator(selector).count();
    if (n === 0) return `no element matches ${selector}`;
    const first = page.locator(selector).first();
    const visible = await first.isVisible();
    const html = await first.evaluate((e) => e.outerHTML.slice(0, 300));
    return `${n} element(s) match ${selector}, the first ${visible ? 'visible' : 'hidden'}: ${html}`;
  } catch (e) {
    return `cannot inspect ${selector}: ${e.message}`;
  }
}

/**
 * Waits for `selector` to reach `state` (visible, hidden, attached,
 * detached); on timeout throws an error naming the selector, what the DOM
 * has instead, and the page's errors.
 */
export async function need(page, selector, { state = 'visible', timeout = STEP_TIMEOUT_MS, what = '', problems = [] } = {}) {
  try {
    await page.locator(selector).first().waitFor({ state, timeout });
    return page.locator(selector).first();
  } catch (e) {
    const seen = await presence(page, selector);
    throw new Error(
      `console contract: ${what ? `${what}: ` : ''}expected ${selector} to be ${state} within ${timeout} ms; ${seen}\n${describeProblems(problems)}`,
    );
  }
}

/** Waits until page-side `fn(arg)` is truthy; the failure names `what`. */
export async function needIn(page, fn, arg, { timeout = STEP_TIMEOUT_MS, what = 'a condition', problems = [], polling = 200 } = {}) {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout, polling });
    return await h.jsonValue();
  } catch (e) {
    throw new Error(`console contract: ${what} did not happen within ${timeout} ms (${e.message.split('\n')[0]})\n${describeProblems(problems)}`);
  }
}

/** Waits for window.lastmileConsole.ready (a boolean, a function or a promise). */
export async function waitReady(page, problems = [], timeout = 30000) {
  await needIn(
    page,
    () => {
      const c = window.lastmileConsole;
      if (!c) return false;
      const r = c.ready;
      if (typeof r === 'function') return !!r();
      if (r && typeof r.then === 'function') {
        if (!window.__lastmileReadyHooked) {
          window.__lastmileReadyHooked = true;
          r.then(() => (window.__lastmileReadyDone = true), () => {});
        }
        return !!window.__lastmileReadyDone;
      }
      return r === true;
    },
    null,
    { timeout, what: 'window.lastmileConsole.ready', problems },
  );
}

/** window.lastmileConsole.incidentIds() as an array. */
export async function incidentIds(page) {
  return page.evaluate(() => {
    const c = window.lastmileConsole;
    if (!c || typeof c.incidentIds !== 'function') return null;
    return Array.from(c.incidentIds() ?? []);
  });
}

/** The board as [{ id, tiers: { TIER_1: state, ... } }], top to bottom. */
export async function boardSnapshot(page) {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('#board [data-testid="incident-row"]')).map((row) => ({
      id: row.getAttribute('data-incident-id'),
      tiers: Object.fromEntries(
        Array.from(row.querySelectorAll('[data-testid="tier"]')).map((t) => [t.getAttribute('data-tier'), t.getAttribute('data-state')]),
      ),
      countdowns: Array.from(row.querySelectorAll('[data-testid="countdown"]')).map((c) => c.textContent.trim()),
    })),
  );
}

/** Picks an option of a <select> whose value or label matches one of `wanted` (strings or regexps). */
export async function selectLoosely(page, selector, wanted, problems = []) {
  const select = await need(page, selector, { what: `the <select> ${selector}`, problems });
  const options = await select.evaluate((s) => Array.from(s.options ?? []).map((o) => ({ value: o.value, label: o.textContent.trim() })));
  for (const w of wanted) {
    const hit = options.find((o) => (w instanceof RegExp ? w.test(o.value) || w.test(o.label) : o.value === w || o.label === w));
    if (hit) {
      await select.selectOption(hit.value);
      return hit.value;
    }
  }
  throw new Error(`console contract: ${selector} has no option matching ${wanted.join(' / ')}; it has ${JSON.stringify(options)}`);
}

/** Clicks the element, or the button inside it when it holds one. */
export async function clickAction(locator) {
  const inner = locator.locator('button, [role="button"], a[href]');
  if ((await inner.count()) > 0) await inner.first().click();
  else await locator.click();
}
