"""Independent WGS84 reference points for Argus's local east/north <-> lat/lon
(src/geo/wgs84.rs), printed as Rust literals for tests/known_answers.rs.

The reference uses Karney's geodesic algorithms (geographiclib), which share nothing
with the radii-of-curvature formula under test:

  north/south by d metres: the geodesic due north/south (a meridian arc) of length d
                           (Geodesic.Direct, azimuth 0 or 180);
  east/west by d metres:   the point on the origin's parallel whose geodesic distance
                           from the origin is d (Geodesic.Inverse, solved for the
                           longitude by bisection). Over <= 500 m the geodesic and the
                           parallel arc differ by well under a micrometre.

pyproj's Geod (PROJ's own geodesic code) is used as a second opinion: the script stops
if the two disagree by more than 1 micrometre.

usage: python3 -m venv /tmp/v && /tmp/v/bin/pip install geographiclib pyproj
       /tmp/v/bin/python scripts/reference/wgs84_points.py
"""
from geographiclib.geodesic import Geodesic
import pyproj

G = Geodesic.WGS84
P = pyproj.Geod(ellps="WGS84")

ORIGINS = [
    (37.5665, 126.978),  # Seoul
    (-33.86, 151.21),  # Sydney
    (0.25, -78.5),  # near the equator
    (69.65, 18.96),  # Tromso
    (48.8584, 2.2945),  # Paris
]
DISTANCES = [50.0, 500.0]


def north(lat0, lon0, d):
    r = G.Direct(lat0, lon0, 0.0 if d >= 0 else 180.0, abs(d))
    _, lat_p, _ = P.fwd(lon0, lat0, 0.0 if d >= 0 else 180.0, abs(d))
    assert abs(r["lat2"] - lat_p) * 111_000 < 1e-6, (r["lat2"], lat_p)
    assert abs(r["lon2"] - lon0) < 1e-12
    return r["lat2"], lon0


def east(lat0, lon0, d):
    # Bisection on the longitude offset: the geodesic distance grows with it.
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if G.Inverse(lat0, lon0, lat0, lon0 + mid)["s12"] < abs(d):
            lo = mid
        else:
            hi = mid
    lon = lon0 + (lo if d >= 0 else -lo)
    _, _, s_p = P.inv(lon0, lat0, lon, lat0)
    assert abs(s_p - abs(d)) < 1e-6, (s_p, d)
    return lat0, lon


print("// (origin_lat, origin_lon, east_m, north_m, lat, lon)")
for lat0, lon0 in ORIGINS:
    for d in DISTANCES:
        for sign in (1.0, -1.0):
            lat, lon = north(lat0, lon0, sign * d)
            print(f"    ({lat0!r}, {lon0!r}, 0.0, {sign * d!r}, {lat!r}, {lon!r}),")
            lat, lon = east(lat0, lon0, sign * d)
            print(f"    ({lat0!r}, {lon0!r}, {sign * d!r}, 0.0, {lat!r}, {lon!r}),")
