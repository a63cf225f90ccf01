#!/usr/bin/env python3
"""Makes data/map-eu-na.json, the country shapes of the admin dashboard's map (admin/src/dashboard/).

Input: Natural Earth 1:110m admin-0 countries (public domain) as TopoJSON, the `countries-110m.json` of the
npm package world-atlas 2.0.2 (ISC; get it with `npm pack world-atlas@2.0.2`), and Debian's iso-codes
(`/usr/share/iso-codes/json/iso_3166-1.json`) to turn its numeric ISO 3166-1 ids into the two-letter codes
Meridian's configuration uses.

Output: the countries of Europe and North America (and their neighbours inside the frame), projected once
here (equirectangular, longitudes scaled by cos 45 degrees; the page places regions with the same formula,
written in the file), as SVG path strings with coordinates rounded to 0.1 unit, so the page draws them
without a projection library and the file stays small.

Usage: tools/gen_map.py countries-110m.json > data/map-eu-na.json
"""

import json
import math
import sys

# The frame: longitudes and latitudes shown, and units per degree of latitude.
LON_MIN, LON_MAX, LAT_MIN, LAT_MAX, SCALE = -135.0, 45.0, 12.0, 72.0, 8.0
COS = math.cos(math.radians(45.0))

# Natural Earth shapes without a numeric ISO code that Meridian knows by a two-letter code.
BY_NAME = {"Kosovo": "XK"}


def project(lon, lat):
    return ((lon - LON_MIN) * COS * SCALE, (LAT_MAX - lat) * SCALE)


def main():
    topo = json.load(open(sys.argv[1]))
    iso = json.load(open("/usr/share/iso-codes/json/iso_3166-1.json"))["3166-1"]
    numeric = {c["numeric"]: c["alpha_2"] for c in iso}
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]

    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)

    def ring(indices):
        pts = []
        for i in indices:
            a = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
            pts.extend(a if not pts else a[1:])
        return pts

    width, height = project(LON_MAX, LAT_MIN)
    out = []
    for g in topo["objects"]["countries"]["geometries"]:
        name = g["properties"]["name"]
        code = numeric.get(g.get("id")) or BY_NAME.get(name)
        if code is None:
            continue
        polys = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
        parts = []
        for poly in polys:
            for r in poly:
                lonlat = ring(r)
                lons = [lon for lon, _ in lonlat]
                if max(lons) - min(lons) > 180:
                    # A ring across the antimeridian (Russia, Fiji): keep it in one piece, east of 180.
                    lonlat = [(lon + 360 if lon < 0 else lon, lat) for lon, lat in lonlat]
                pts = [project(lon, lat) for lon, lat in lonlat]
                xs = [p[0] for p in pts]
                ys = [p[1] for p in pts]
                # Rings wholly outside the frame are left out (the SVG clips the rest).
                if max(xs) < 0 or min(xs) > width or max(ys) < 0 or min(ys) > height:
                    continue
                # Rings smaller than a unit vanish at this scale.
                if max(xs) - min(xs) < 0.6 and max(ys) - min(ys) < 0.6:
                    continue
                d = "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z"
                parts.append(d.replace(".0,", ",").replace(".0L", "L").replace(".0Z", "Z"))
        if parts:
            out.append({"cc": code, "name": name, "d": "".join(parts)})
    out.sort(key=lambda c: c["cc"])
    doc = {
        "source": "Natural Earth 1:110m admin-0 countries (public domain), via world-atlas 2.0.2",
        "projection": {
            "lon_min": LON_MIN,
            "lat_max": LAT_MAX,
            "x_per_lon": round(COS * SCALE, 6),
            "y_per_lat": SCALE,
        },
        "width": round(width, 1),
        "height": round(height, 1),
        "countries": out,
    }
    json.dump(doc, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
