// Strings of the console in Chinese (first) and English, and the formatting of
// times in the district's time zone. Every visible text goes through t() or one
// of the label helpers, so switching the language re-renders from here.

const zh = {
  title: '路桥区 13510 应急调度台',
  brand: '13510 调度台',
  lang_switch: 'English',
  mute: '静音',
  unmute: '取消静音',
  signout: '退出登录',
  report_week: '本周报表',
  report_month: '上月通报',
  report_week_title: '本周 13510 响应达标报表（一周一上报）',
  report_month_title: '上月 13510 通报（一月一通报）',
  signin_title: '调度员登录',
  signin_token: '令牌',
  signin_submit: '登录',
  signin_hint: '请输入运维人员发放的令牌。',
  signin_failed: '登录失败',
  conn_live: '实时',
  conn_lost: '连接中断',
  conn_resyncing: '正在重新同步…',
  conn_resynced: '已重新同步',
  conn_connecting: '正在连接…',
  conn_no_feed: '无实时推送（角色不允许）',
  board: '事件看板',
  board_empty: '暂无未结事件',
  board_count: '{n} 起未结事件',
  detail: '事件详情',
  detail_empty: '在看板或地图上选择一个事件。',
  units: '力量看板',
  units_count: '显示 {shown} / {total} 支力量',
  units_refused: '当前角色无权查看力量。',
  all_tiers: '全部层级',
  all_towns: '全部镇街',
  all_statuses: '全部状态',
  unit_search: '搜索力量',
  unit_search_ph: '编号或名称',
  filter_tier: '层级',
  filter_town: '镇街',
  filter_status: '状态',
  col_unit: '力量',
  col_tier: '层级',
  col_town: '镇街',
  col_status: '状态',
  col_incident: '事件',
  col_action: '设置状态',
  set_status: '设置状态…',
  set_status_of: '设置 {unit} 的状态',
  report_title: '在此上报事件',
  report_kind: '类型',
  report_severity: '等级',
  report_description: '描述',
  report_description_ph: '现场情况（可选）',
  report_submit: '上报并调度',
  report_cancel: '取消',
  report_at: '位置 {lat}, {lng}',
  report_cell: '网格 {grid} · {town} {village} · 网格员 {worker} {contact}',
  report_no_cell: '不在任何网格内',
  reported: '已上报 {id}',
  severity_n: '{n} 级',
  tiers: '层级响应',
  assignments: '派遣力量',
  assign: '指派力量',
  assign_tier: '指派层级',
  assign_pick_tier: '选择层级…',
  candidates_none: '没有可用的候选力量',
  candidates_loading: '正在查找候选力量…',
  within_target: '可按时到达',
  beyond_target: '超出目标时间',
  eta: '预计 {eta}',
  distance: '{d}',
  release: '释放',
  release_reason: '调度员在控制台释放',
  confirm_arrival: '确认到场',
  unverified: '到场未核实',
  verified: '到场已核实',
  confirmed_by: '由 {name} 确认',
  close: '结案',
  close_reason: '结案原因',
  close_reason_ph: '例如：火已扑灭',
  close_submit: '结案',
  close_need_reason: '请填写结案原因',
  closed_at: '已于 {time} 结案',
  timeline: '时间线',
  timeline_empty: '暂无记录',
  by_actor: '{actor}',
  grid_worker: '网格员 {name} {contact}',
  no_grid: '不在网格内',
  outside: '服务区域外',
  reported_at: '上报于 {time}',
  units_on: '到场 {n}/需 {req}',
  required_n: '需 {n} 支',
  deadline_in: '剩余 {t}',
  overdue: '超时 {t}',
  dismiss: '关闭',
  alert_breached: '{incident} {tier} 超时未达标',
  alert_escalated: '{incident} {tier} 已升级调派',
  alert_unverified: '{incident} {unit} 到场未核实：{detail}',
  role_none: '当前角色（{role}）不能使用调度台。',
  signed_in_as: '{name}（{role}）',
  error_prefix: '操作被拒绝：',
  network_error: '网络错误：{message}',
  m: '{n} 米',
  km: '{n} 公里',
  s: '{n} 秒',
  min_s: '{m} 分 {s} 秒',
  grid_hover: '{grid} · {village}',
  kind: { FIRE: '火灾', FLOOD: '洪涝', RESCUE: '救援', HAZMAT: '危化品', TRAFFIC: '交通事故', MEDICAL: '医疗', OTHER: '其他' },
  tier: { TIER_1: '1分钟', TIER_3: '3分钟', TIER_5: '5分钟', TIER_10: '10分钟' },
  tier_long: {
    TIER_1: '1分钟 · 微型消防站',
    TIER_3: '3分钟 · 村居突击队',
    TIER_5: '5分钟 · 镇街救援队',
    TIER_10: '10分钟 · 专业消防队',
  },
  tier_state: { PAGING: '呼叫中', SHORT: '力量不足', MET: '已达标', BREACHED: '已超时', ESCALATED: '已升级', CANCELLED: '已取消', NOT_APPLICABLE: '不适用' },
  unit_status: {
    AVAILABLE: '空闲', PAGED: '已呼叫', EN_ROUTE: '出动中', ON_SCENE: '到场',
    RETURNING: '返回中', OUT_OF_SERVICE: '停用', UNRESPONSIVE: '无响应',
  },
  assignment_state: {
    PAGED: '已呼叫', ACKNOWLEDGED: '已接警', DECLINED: '已拒绝', TIMED_OUT: '应答超时', ON_SCENE: '到场', RELEASED: '已释放',
  },
  event: {
    INCIDENT_REPORTED: '事件上报', INCIDENT_CLOSED: '结案', UNIT_PAGED: '呼叫力量', UNIT_REPAGED: '重新呼叫',
    UNIT_ACKNOWLEDGED: '接警', UNIT_DECLINED: '拒绝', UNIT_TIMED_OUT: '应答超时', UNIT_EN_ROUTE: '出动',
    UNIT_ON_SCENE: '到场', UNIT_RELEASED: '释放', TIER_SHORT: '层级力量不足', TIER_MET: '层级达标',
    TIER_BREACHED: '层级超时', TIER_ESCALATED: '层级升级', UNIT_STATUS_CHANGED: '状态变更', UNIT_POSITION: '位置',
    GRID_WORKER_NOTIFIED: '通知网格员', UNIT_ARRIVAL_UNVERIFIED: '到场未核实', ARRIVAL_CONFIRMED: '确认到场',
  },
  role: { dispatcher: '调度员', integration: '四平台', admin: '管理员', terminal: '终端', anyone: '未启用认证' },
};

const en = {
  title: 'Luqiao 13510 dispatch console',
  brand: '13510 dispatch',
  lang_switch: '中文',
  mute: 'Mute',
  unmute: 'Unmute',
  signout: 'Sign out',
  report_week: 'This week',
  report_month: 'Last month',
  report_week_title: "This week's 13510 compliance report",
  report_month_title: "Last month's 13510 bulletin",
  signin_title: 'Dispatcher sign-in',
  signin_token: 'Token',
  signin_submit: 'Sign in',
  signin_hint: 'Enter the token your operator gave you.',
  signin_failed: 'Sign-in failed',
  conn_live: 'Live',
  conn_lost: 'Connection lost',
  conn_resyncing: 'Resyncing…',
  conn_resynced: 'Resynced',
  conn_connecting: 'Connecting…',
  conn_no_feed: 'No live feed (not allowed for this role)',
  board: 'Incident board',
  board_empty: 'No open incidents',
  board_count: 'open: {n}',
  detail: 'Incident detail',
  detail_empty: 'Select an incident on the board or the map.',
  units: 'Unit board',
  units_count: 'Showing {shown} of {total} units',
  units_refused: 'This role may not list units.',
  all_tiers: 'All tiers',
  all_towns: 'All towns',
  all_statuses: 'All statuses',
  unit_search: 'Search units',
  unit_search_ph: 'id or name',
  filter_tier: 'Tier',
  filter_town: 'Town',
  filter_status: 'Status',
  col_unit: 'Unit',
  col_tier: 'Tier',
  col_town: 'Town',
  col_status: 'Status',
  col_incident: 'Incident',
  col_action: 'Set status',
  set_status: 'Set status…',
  set_status_of: 'Set the status of {unit}',
  report_title: 'Report an incident here',
  report_kind: 'Kind',
  report_severity: 'Severity',
  report_description: 'Description',
  report_description_ph: 'What is happening (optional)',
  report_submit: 'Report and dispatch',
  report_cancel: 'Cancel',
  report_at: 'At {lat}, {lng}',
  report_cell: 'Grid {grid} · {town} {village} · worker {worker} {contact}',
  report_no_cell: 'Not in any grid cell',
  reported: 'Reported {id}',
  severity_n: 'severity {n}',
  tiers: 'Tiers',
  assignments: 'Assigned units',
  assign: 'Assign a unit',
  assign_tier: 'Tier to assign',
  assign_pick_tier: 'Choose a tier…',
  candidates_none: 'No candidate units',
  candidates_loading: 'Finding candidates…',
  within_target: 'within target',
  beyond_target: 'beyond target',
  eta: 'ETA {eta}',
  distance: '{d}',
  release: 'Release',
  release_reason: 'released by a dispatcher from the console',
  confirm_arrival: 'Confirm arrival',
  unverified: 'arrival unverified',
  verified: 'arrival verified',
  confirmed_by: 'confirmed by {name}',
  close: 'Close the incident',
  close_reason: 'Reason for closing',
  close_reason_ph: 'e.g. fire out',
  close_submit: 'Close',
  close_need_reason: 'Give a reason for closing',
  closed_at: 'Closed at {time}',
  timeline: 'Timeline',
  timeline_empty: 'No entries yet',
  by_actor: '{actor}',
  grid_worker: 'Grid worker {name} {contact}',
  no_grid: 'not in a grid cell',
  outside: 'outside the service area',
  reported_at: 'Reported {time}',
  units_on: '{n} of {req} on scene',
  required_n: '{n} required',
  deadline_in: '{t} left',
  overdue: 'over by {t}',
  dismiss: 'Dismiss',
  alert_breached: '{incident} {tier} breached its target',
  alert_escalated: '{incident} {tier} escalated',
  alert_unverified: '{incident} {unit} arrival unverified: {detail}',
  role_none: 'This role ({role}) cannot use the console.',
  signed_in_as: '{name} ({role})',
  error_prefix: 'Refused: ',
  network_error: 'Network error: {message}',
  m: '{n} m',
  km: '{n} km',
  s: '{n} s',
  min_s: '{m} min {s} s',
  grid_hover: '{grid} · {village}',
  kind: { FIRE: 'Fire', FLOOD: 'Flood', RESCUE: 'Rescue', HAZMAT: 'Hazmat', TRAFFIC: 'Traffic', MEDICAL: 'Medical', OTHER: 'Other' },
  tier: { TIER_1: '1 min', TIER_3: '3 min', TIER_5: '5 min', TIER_10: '10 min' },
  tier_long: {
    TIER_1: '1 min · micro fire station',
    TIER_3: '3 min · village shock team',
    TIER_5: '5 min · town rescue team',
    TIER_10: '10 min · fire brigade',
  },
  tier_state: { PAGING: 'paging', SHORT: 'short', MET: 'met', BREACHED: 'breached', ESCALATED: 'escalated', CANCELLED: 'cancelled', NOT_APPLICABLE: 'n/a' },
  unit_status: {
    AVAILABLE: 'available', PAGED: 'paged', EN_ROUTE: 'en route', ON_SCENE: 'on scene',
    RETURNING: 'returning', OUT_OF_SERVICE: 'out of service', UNRESPONSIVE: 'unresponsive',
  },
  assignment_state: {
    PAGED: 'paged', ACKNOWLEDGED: 'acknowledged', DECLINED: 'declined', TIMED_OUT: 'timed out', ON_SCENE: 'on scene', RELEASED: 'released',
  },
  event: {
    INCIDENT_REPORTED: 'Reported', INCIDENT_CLOSED: 'Closed', UNIT_PAGED: 'Unit paged', UNIT_REPAGED: 'Re-paged',
    UNIT_ACKNOWLEDGED: 'Acknowledged', UNIT_DECLINED: 'Declined', UNIT_TIMED_OUT: 'Page timed out', UNIT_EN_ROUTE: 'En route',
    UNIT_ON_SCENE: 'On scene', UNIT_RELEASED: 'Released', TIER_SHORT: 'Tier short', TIER_MET: 'Tier met',
    TIER_BREACHED: 'Tier breached', TIER_ESCALATED: 'Tier escalated', UNIT_STATUS_CHANGED: 'Status changed', UNIT_POSITION: 'Position',
    GRID_WORKER_NOTIFIED: 'Grid worker notified', UNIT_ARRIVAL_UNVERIFIED: 'Arrival unverified', ARRIVAL_CONFIRMED: 'Arrival confirmed',
  },
  role: { dispatcher: 'dispatcher', integration: 'integration', admin: 'admin', terminal: 'terminal', anyone: 'auth off' },
};

const tables = { 'zh-CN': zh, en };
const LANG_KEY = 'lastmile.console.lang';

let lang = 'zh-CN';
let timeZone = 'Asia/Shanghai';
let timeFormat = null;
let dateTimeFormat = null;

function loadLang() {
  try {
    const stored = localStorage.getItem(LANG_KEY);
    if (stored && tables[stored]) lang = stored;
  } catch {
    // storage may be off; Chinese it is
  }
}
loadLang();

function rebuildFormats() {
  const base = { timeZone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit' };
  timeFormat = new Intl.DateTimeFormat(lang, base);
  dateTimeFormat = new Intl.DateTimeFormat(lang, { ...base, month: '2-digit', day: '2-digit' });
}

export function currentLang() {
  return lang;
}

export function setLang(next) {
  if (!tables[next]) return;
  lang = next;
  try {
    localStorage.setItem(LANG_KEY, next);
  } catch {
    // not remembered, still switched
  }
  rebuildFormats();
}

export function setTimeZone(zone) {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    timeZone = zone;
  } catch {
    timeZone = 'Asia/Shanghai';
  }
  rebuildFormats();
}

export function currentTimeZone() {
  return timeZone;
}

/** Today's date in the district's time zone, as [year, month, day]. */
function todayInZone(now = new Date()) {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    .formatToParts(now);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return [get('year'), get('month'), get('day')];
}

/** The ISO week ("2026-W49") of today in the district's time zone. */
export function isoWeekInZone(now = new Date()) {
  const [y, m, d] = todayInZone(now);
  const date = new Date(Date.UTC(y, m - 1, d));
  const weekday = date.getUTCDay() || 7; // Monday 1 ... Sunday 7
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the week's Thursday decides its year
  const year = date.getUTCFullYear();
  const week = Math.ceil(((date - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** The month before this one ("2026-11") in the district's time zone. */
export function previousMonthInZone(now = new Date()) {
  const [y, m] = todayInZone(now);
  const [py, pm] = m === 1 ? [y - 1, 12] : [y, m - 1];
  return `${py}-${String(pm).padStart(2, '0')}`;
}

function fill(text, vars) {
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (all, name) => (name in vars ? String(vars[name]) : all));
}

/** The string `key` in the current language, with `{name}` replaced from `vars`. */
export function t(key, vars) {
  const text = tables[lang][key] ?? zh[key] ?? key;
  return fill(text, vars);
}

function label(group, value) {
  if (value == null) return '';
  return tables[lang][group]?.[value] ?? value;
}

export const kindLabel = (k) => label('kind', k);
export const tierLabel = (k) => label('tier', k);
export const tierLongLabel = (k) => label('tier_long', k);
export const tierStateLabel = (k) => label('tier_state', k);
export const unitStatusLabel = (k) => label('unit_status', k);
export const assignmentStateLabel = (k) => label('assignment_state', k);
export const eventLabel = (k) => label('event', k);
export const roleLabel = (k) => label('role', k);
export const severityText = (n) => t('severity_n', { n });

/** hh:mm:ss of an RFC 3339 time (or epoch ms) in the session's time zone. */
export function formatTime(value) {
  const ms = typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms)) return '';
  return timeFormat.format(ms);
}

/** MM-DD hh:mm:ss in the session's time zone. */
export function formatDateTime(value) {
  const ms = typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms)) return '';
  return dateTimeFormat.format(ms);
}

/** m:ss of a duration in whole seconds (never negative). */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  const rest = String(s % 60).padStart(2, '0');
  return `${m}:${rest}`;
}

export function formatDistance(m) {
  if (!Number.isFinite(m)) return '';
  if (m < 1000) return t('m', { n: Math.round(m) });
  return t('km', { n: (m / 1000).toFixed(1) });
}

export function formatEta(s) {
  if (!Number.isFinite(s)) return '';
  if (s < 60) return t('s', { n: Math.round(s) });
  return t('min_s', { m: Math.floor(s / 60), s: Math.round(s % 60) });
}

/** Replaces the text of every element with data-i18n (and the placeholders
 * and aria-labels with data-i18n-placeholder / data-i18n-label) under root. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  document.documentElement.lang = lang;
  document.title = t('title');
}

rebuildFormats();
