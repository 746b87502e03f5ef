// The console's only door to the server: same-origin JSON requests. Every
// state-changing request carries X-Lastmile-Console (the server's guard against
// cross-site requests riding on the session cookie).

export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.code = code;
    /** Seconds the server asked to wait (429), or null. */
    this.retryAfterS = retryAfterS;
  }
}

const listeners = { unauthenticated: [] };

/** Called with the error whenever the server answers 401 (session gone). */
export function onUnauthenticated(fn) {
  listeners.unauthenticated.push(fn);
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    headers['X-Lastmile-Console'] = '1';
    headers['Content-Type'] = 'application/json';
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'NETWORK', err.message || String(err));
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const code = data?.error?.code ?? `HTTP_${res.status}`;
    const message = data?.error?.message ?? (text.slice(0, 200) || res.statusText);
    const retry = Number(res.headers.get('Retry-After'));
    const err = new ApiError(res.status, code, message, Number.isFinite(retry) && retry > 0 ? retry : null);
    if (res.status === 401 && !path.startsWith('/console/session')) {
      for (const fn of listeners.unauthenticated) fn(err);
    }
    throw err;
  }
  return data;
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body ?? {});
export const del = (path) => request('DELETE', path);

const enc = encodeURIComponent;

/** Every item of a paged list, following next_page_token. */
async function all(path, field) {
  const items = [];
  let token = '';
  for (let page = 0; page < 1000; page++) {
    const sep = path.includes('?') ? '&' : '?';
    const data = await get(token ? `${path}${sep}page_token=${enc(token)}` : path);
    items.push(...(data[field] ?? []));
    token = data.next_page_token ?? '';
    if (!token) break;
  }
  return items;
}

export const session = () => get('/console/session');
export const signIn = (token) => post('/console/session', { token });
export const signOut = () => del('/console/session');
export const mapData = () => get('/console/map');

export const openIncidents = () => all('/v1/incidents?status=OPEN&page_size=1000', 'incidents');
export const incident = (id) => get(`/v1/incidents/${enc(id)}`);
export const timeline = (id) => get(`/v1/incidents/${enc(id)}/timeline`);
export const candidates = (id, tier, limit = 10) =>
  get(`/v1/incidents/${enc(id)}/candidates?tier=${enc(tier)}&limit=${limit}`);
export const units = () => all('/v1/units?page_size=1000', 'units');

export const report = (body) => post('/v1/incidents', body);
export const close = (id, reason) => post(`/v1/incidents/${enc(id)}/close`, { reason });
export const assign = (id, unitId, tier) => post(`/v1/incidents/${enc(id)}/assign`, { unit_id: unitId, tier });
export const confirmArrival = (id, unitId) => post(`/v1/incidents/${enc(id)}/confirm-arrival`, { unit_id: unitId });
export const setUnitStatus = (unitId, status) => post(`/v1/units/${enc(unitId)}/status`, { status });
export const release = (unitId, reason) => post(`/v1/units/${enc(unitId)}/release`, { reason });
