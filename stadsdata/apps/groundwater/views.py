"""What residents and the city see: a resident's own well, and the city's neighbourhood view.

* **Resident** (``resident_page``): the level of the last weeks against the home's floor, crawlspace
  floor and alert threshold (an SVG chart, no script needed), the rain of those weeks, what is
  expected after the forecast rain, and a plain-language summary in Dutch and English
  (``summary``). Only the resident may see it: it is built per home and carries the home's owner.
* **City** (``city_page``): per neighbourhood the number of monitored homes, the median depth below the
  crawlspace floor, the share at risk and the trend of the last week, on the bundled CBS
  neighbourhood map; and, for staff only, the list of homes at risk.

Disclosure control (``aggregate``): a neighbourhood with fewer than ``K_ANONYMITY`` (5) monitored homes is
not shown on its own; such neighbourhoods are pooled into one "other neighbourhoods" group when the pool
has 5 or more homes, and left out altogether otherwise, and the city total counts only what is shown, so
that no small group can be had by subtracting published figures from a total.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jinja2 import BaseLoader, Environment, select_autoescape

if TYPE_CHECKING:
    from pathlib import Path

    from stadsdata.apps.groundwater.alerts import State
    from stadsdata.apps.groundwater.platform import Platform
    from stadsdata.apps.groundwater.registry import Registry

K_ANONYMITY = 5
OTHER = "overige buurten"


@dataclass(frozen=True)
class HomeStatus:
    """One home's state as the city's views use it (pseudonymous: no address)."""

    home: str
    buurtcode: str
    depth: float
    """Latest depth of the water below the crawlspace floor (m)."""
    change_7d: float | None
    """Change of the level over the last 7 days (m; positive is rising)."""
    at_risk: bool
    """An alert is active (high or rising)."""


@dataclass(frozen=True)
class Aggregate:
    buurtcode: str
    homes: int
    median_depth: float | None
    at_risk: int
    median_change_7d: float | None


@dataclass(frozen=True)
class CityView:
    neighbourhoods: list[Aggregate]
    """Neighbourhoods with at least K homes, and possibly the pooled rest (``buurtcode`` ``OTHER``)."""
    suppressed: int
    """How many neighbourhoods are not shown on their own."""
    total: Aggregate | None
    """Over the homes shown only."""


def _aggregate(code: str, rows: Sequence[HomeStatus]) -> Aggregate:
    changes = [r.change_7d for r in rows if r.change_7d is not None]
    return Aggregate(
        code,
        len(rows),
        round(statistics.median(r.depth for r in rows), 3) if rows else None,
        sum(r.at_risk for r in rows),
        round(statistics.median(changes), 3) if changes else None,
    )


def aggregate(homes: Iterable[HomeStatus], k: int = K_ANONYMITY) -> CityView:
    """Neighbourhood figures with disclosure control (k homes at least per published group)."""
    by: dict[str, list[HomeStatus]] = {}
    for h in homes:
        by.setdefault(h.buurtcode, []).append(h)
    shown = {code: rows for code, rows in by.items() if len(rows) >= k}
    rest = [h for code, rows in by.items() if code not in shown for h in rows]
    groups = [_aggregate(code, rows) for code, rows in sorted(shown.items())]
    published = [h for rows in shown.values() for h in rows]
    if len(rest) >= k:
        groups.append(_aggregate(OTHER, rest))
        published += rest
    return CityView(groups, len(by) - len(shown), _aggregate("total", published) if published else None)


@dataclass(frozen=True)
class ResidentData:
    home: str
    floor_nap: float
    crawlspace_floor_nap: float
    threshold: float
    levels: Sequence[tuple[datetime, float]]
    """The last weeks' levels (m NAP), oldest first."""
    rain: Sequence[tuple[datetime, float]] = ()
    """Daily rain (mm) of those weeks."""
    forecast: Sequence[tuple[datetime, float]] = ()
    """Expected levels (m NAP) after the forecast rain, from the well's rainfall-response model."""
    forecast_rain_mm: float = 0.0
    t50_days: float | None = None
    alerts: Sequence[str] = ()
    """Active alerts: ``high``, ``rising``."""


def summary(d: ResidentData, lang: str) -> list[str]:
    """Plain sentences about the well, in Dutch (``nl``) or English (``en``)."""
    if not d.levels:
        return ["Er zijn nog geen metingen." if lang == "nl" else "There are no readings yet."]
    t_last, level = d.levels[-1]
    depth_cm = round((d.crawlspace_floor_nap - level) * 100)
    limit_cm = round(d.threshold * 100)
    week = [v for t, v in d.levels if (t_last - t).days < 7]
    change_cm = round((level - week[0]) * 100) if week else 0
    rain = round(sum(v for t, v in d.rain if (t_last - t).days < 7))
    nl: list[str] = []
    en: list[str] = []
    if depth_cm < 0:
        nl.append(f"Er staat water in uw kruipruimte: {-depth_cm} cm boven de bodem.")
        en.append(f"There is water in your crawlspace: {-depth_cm} cm above its floor.")
    else:
        nl.append(f"Het grondwater staat {depth_cm} cm onder de bodem van uw kruipruimte.")
        en.append(f"The groundwater is {depth_cm} cm below the floor of your crawlspace.")
    if depth_cm < limit_cm:
        nl.append(f"Dat is hoger dan de grens van {limit_cm} cm: de kruipruimte kan vochtig worden.")
        en.append(f"That is higher than the limit of {limit_cm} cm: the crawlspace may become damp.")
    else:
        nl.append(f"Dat is veilig: de grens ligt op {limit_cm} cm.")
        en.append(f"That is safe: the limit is {limit_cm} cm.")
    way_nl = "gestegen" if change_cm > 0 else "gedaald"
    way_en = "risen" if change_cm > 0 else "fallen"
    if abs(change_cm) >= 1:
        nl.append(f"In de afgelopen week is het {abs(change_cm)} cm {way_nl}; er viel {rain} mm regen.")
        en.append(f"Over the last week it has {way_en} {abs(change_cm)} cm; {rain} mm of rain fell.")
    else:
        nl.append(f"In de afgelopen week bleef het gelijk; er viel {rain} mm regen.")
        en.append(f"Over the last week it stayed level; {rain} mm of rain fell.")
    if d.t50_days is not None:
        days = round(d.t50_days)
        nl.append(f"Regen bereikt het grondwater onder uw woning voor de helft na ongeveer {days} dagen.")
        en.append(f"Half of the effect of rain reaches the groundwater under your home after about {days} days.")
    if d.forecast:
        peak = max(v for _, v in d.forecast)
        peak_cm = round((d.crawlspace_floor_nap - peak) * 100)
        nl.append(
            f"Met de verwachte {round(d.forecast_rain_mm)} mm regen komt het naar verwachting tot {peak_cm} cm "
            "onder de bodem van de kruipruimte (een schatting, geen zekerheid)."
        )
        en.append(
            f"With the {round(d.forecast_rain_mm)} mm of rain expected it is likely to come up to {peak_cm} cm "
            "below the crawlspace floor (an estimate, not a certainty)."
        )
    return nl if lang == "nl" else en


def chart_svg(d: ResidentData, width: int = 720, height: int = 260) -> str:
    """The levels and the forecast against floor, crawlspace floor and threshold, as an SVG."""
    points = list(d.levels) + list(d.forecast)
    if not points:
        return ""
    threshold_nap = d.crawlspace_floor_nap - d.threshold
    values = [v for _, v in points] + [d.floor_nap, d.crawlspace_floor_nap, threshold_nap]
    lo, hi = min(values) - 0.1, max(values) + 0.1
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    pad = 50

    def x(t: datetime) -> float:
        return pad + (width - pad - 10) * ((t.timestamp() - t0) / (t1 - t0) if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return 10 + (height - 40) * (hi - v) / (hi - lo)

    def line(series: Sequence[tuple[datetime, float]]) -> str:
        return " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" class="gw-chart" '
        f'aria-label="groundwater level in m NAP, floor and crawlspace floor">'
    ]
    for name, value, colour, dash in (
        ("floor / vloer", d.floor_nap, "#1d2327", ""),
        ("crawlspace floor / bodem kruipruimte", d.crawlspace_floor_nap, "#5a636b", ""),
        (f"limit / grens ({round(d.threshold * 100)} cm)", threshold_nap, "#b3001b", ' stroke-dasharray="6 4"'),
    ):
        parts.append(
            f'<line x1="{pad}" x2="{width - 10}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="{colour}"{dash}/>'
            f'<text x="{pad + 4}" y="{y(value) - 4:.1f}" font-size="11" fill="{colour}">'
            f"{name}: {value:.2f} m NAP</text>"
        )
    parts.append(f'<polyline fill="none" stroke="#1f6fb2" stroke-width="2" points="{line(d.levels)}"/>')
    if d.forecast:
        joined = [d.levels[-1], *d.forecast] if d.levels else list(d.forecast)
        parts.append(
            f'<polyline fill="none" stroke="#1f6fb2" stroke-width="2" stroke-dasharray="3 3" points="{line(joined)}"/>'
        )
    if d.rain:
        most = max(v for _, v in d.rain) or 1.0
        for t, v in d.rain:
            h = 30 * v / most
            parts.append(
                f'<rect x="{x(t) - 2:.1f}" y="{height - 10 - h:.1f}" width="4" height="{h:.1f}" fill="#8fb8de"/>'
            )
    parts.append(f'<text x="4" y="{y(hi - 0.1) + 4:.1f}" font-size="11">{hi - 0.1:.2f}</text>')
    parts.append(f'<text x="4" y="{y(lo + 0.1) + 4:.1f}" font-size="11">{lo + 0.1:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


_PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · stadsdata Enschede</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
<style>.gw-chart{width:100%;max-width:760px;height:auto;background:#f4f6f8}
.gw-map{width:100%;max-width:760px;height:auto}.gw-risk{color:#b3001b;font-weight:700}</style>
</head><body><header class="top"><a class="brand" href="/">stadsdata <span>Enschede</span></a></header>
<main id="main">{{ body }}</main>
<footer><p>Grondwater onder woningen · groundwater under homes. Kaart: buurten © CBS, Kadaster (CC BY 4.0).
Regen: KNMI.</p></footer></body></html>"""

_RESIDENT = """<h1>Uw grondwater · Your groundwater</h1>
{% if alerts %}<p class="gw-risk">{% for a in alerts %}{{ {"high": "Hoog grondwater / High groundwater",
 "rising": "Snel stijgend / Rising fast"}[a] }}{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
{{ chart | safe }}
<p class="small muted">Lijn: grondwaterstand (m NAP); stippellijn: verwachting; balken: regen per dag.
Line: groundwater level (m NAP); dotted: expected; bars: daily rain.</p>
<h2 lang="nl">Samenvatting</h2>{% for s in nl %}<p lang="nl">{{ s }}</p>{% endfor %}
<h2 lang="en">Summary</h2>{% for s in en %}<p lang="en">{{ s }}</p>{% endfor %}
<p class="small muted">Put / well {{ home }}.</p>"""

_CITY = """<h1>Grondwater per buurt · Groundwater by neighbourhood</h1>
{{ map | safe }}
<p class="small">Kleur · colour: mediane diepte onder de kruipruimte · median depth below the crawlspace floor:
<span style="color:#b3001b">■</span> &lt; 0,20 m · <span style="color:#e8a33d">■</span> 0,20-0,50 m ·
<span style="color:#6fa8dc">■</span> &gt; 0,50 m · <span style="color:#c9cdd2">■</span> niet getoond · not shown</p>
<p class="small muted">Buurten met minder dan {{ k }} gemeten woningen worden niet apart getoond
({{ suppressed }} buurten). Neighbourhoods with fewer than {{ k }} monitored homes are not shown on their own.</p>
<div class="table-wrap"><table class="data"><thead><tr><th scope="col">Buurt</th><th scope="col">Woningen · homes</th>
<th scope="col">Mediaan diepte onder kruipruimte (m)</th><th scope="col">Risico · at risk</th>
<th scope="col">Verandering 7 d (cm)</th></tr></thead><tbody>
{% for a in groups %}<tr><td>{{ names.get(a.buurtcode, a.buurtcode) }}</td><td>{{ a.homes }}</td>
<td>{{ "%.2f"|format(a.median_depth) if a.median_depth is not none else "-" }}</td><td>{{ a.at_risk }}</td>
<td>{{ "%+d"|format((a.median_change_7d * 100)|round|int) if a.median_change_7d is not none else "-" }}</td></tr>
{% endfor %}
{% if total %}<tr><th scope="row">Totaal (getoond)</th><td>{{ total.homes }}</td>
<td>{{ "%.2f"|format(total.median_depth) }}</td><td>{{ total.at_risk }}</td><td></td></tr>{% endif %}
</tbody></table></div>
{% if at_risk is not none %}<h2>Woningen met risico · Homes at risk (medewerkers · staff only)</h2>
<ul>{% for h in at_risk %}<li>{{ h.home }} ({{ names.get(h.buurtcode, h.buurtcode) }}): {{ "%.2f"|format(h.depth) }} m
onder de kruipruimte</li>{% else %}<li>geen · none</li>{% endfor %}</ul>{% endif %}"""

_env = Environment(loader=BaseLoader(), autoescape=select_autoescape(default=True, default_for_string=True))


def _page(title: str, body: str, lang: str = "nl") -> str:
    from markupsafe import Markup

    return _env.from_string(_PAGE).render(title=title, body=Markup(body), lang=lang)


def resident_page(d: ResidentData) -> str:
    body = _env.from_string(_RESIDENT).render(
        home=d.home, chart=chart_svg(d), nl=summary(d, "nl"), en=summary(d, "en"), alerts=list(d.alerts)
    )
    return _page("Uw grondwater", body)


def neighbourhood_map(view: CityView, width: int = 760) -> str:
    """The bundled CBS neighbourhood outlines, coloured by the published median depth; others grey."""
    from stadsdata.sim.places import buurten_geojson

    features = buurten_geojson()["features"]
    coords = [pt for f in features for ring in _rings(f["geometry"]) for pt in ring]
    west, east = min(c[0] for c in coords), max(c[0] for c in coords)
    south, north = min(c[1] for c in coords), max(c[1] for c in coords)
    aspect = 0.612  # cos(52.2°): a degree of longitude is shorter than one of latitude here
    height = int(width * (north - south) / ((east - west) * aspect))
    shown = {a.buurtcode: a for a in view.neighbourhoods}
    out = [f'<svg class="gw-map" viewBox="0 0 {width} {height}" role="img" aria-label="neighbourhood map">']
    for f in features:
        code = f["properties"]["buurtcode"]
        a = shown.get(code)
        if a is None or a.median_depth is None:
            fill = "#e5e7ea"
        elif a.median_depth < 0.2:
            fill = "#b3001b"
        elif a.median_depth < 0.5:
            fill = "#e8a33d"
        else:
            fill = "#6fa8dc"
        for ring in _rings(f["geometry"]):
            pts = " ".join(
                f"{(lon - west) / (east - west) * width:.1f},{(north - lat) / (north - south) * height:.1f}"
                for lon, lat in ring
            )
            name = f["properties"]["buurtnaam"]
            label = f"{name}: {a.homes} woningen, mediaan {a.median_depth:.2f} m" if a and a.median_depth else name
            out.append(f'<polygon points="{pts}" fill="{fill}" stroke="#fff"><title>{_esc(label)}</title></polygon>')
    out.append("</svg>")
    return "".join(out)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"][0]]
    if geometry["type"] == "MultiPolygon":
        return [p[0] for p in geometry["coordinates"]]
    return []


def city_page(homes: Sequence[HomeStatus], staff: bool = False, k: int = K_ANONYMITY) -> str:
    """The city's page; the list of homes at risk only when ``staff``."""
    from stadsdata.sim.places import buurten_geojson

    view = aggregate(homes, k)
    names = {f["properties"]["buurtcode"]: f["properties"]["buurtnaam"] for f in buurten_geojson()["features"]}
    names[OTHER] = "Overige buurten (samen)"
    body = _env.from_string(_CITY).render(
        map=neighbourhood_map(view),
        groups=view.neighbourhoods,
        total=view.total,
        suppressed=view.suppressed,
        k=k,
        names=names,
        at_risk=sorted((h for h in homes if h.at_risk), key=lambda h: h.depth) if staff else None,
    )
    return _page("Grondwater per buurt", body)


def write_pages(
    platform: Platform,
    registry: Registry,
    state: State,
    out: Path,
    precipitation: int | None = None,
    staff: bool = False,
    days: float = 28.0,
) -> None:
    """Write ``out/homes/<home>.html`` for each resident and ``out/city.html``, from the platform's data."""
    from datetime import UTC, timedelta

    from stadsdata.apps.groundwater.registry import lookup

    (out / "homes").mkdir(parents=True, exist_ok=True)
    since = datetime.now(UTC) - timedelta(days=days)
    rain: list[tuple[datetime, float]] = []
    if precipitation:
        rain = [(t, float(v)) for t, v in platform.observations(precipitation, after=since)]
    statuses: list[HomeStatus] = []
    for home in registry.homes:
        stored = lookup(platform, home)
        levels = [(t, float(v)) for t, v in platform.observations(stored.datastreams["level"], after=since)]
        hs = state.homes.get(home.id)
        alerts = [k for k, c in (("high", hs.high), ("rising", hs.rising)) if c.active] if hs else []
        data = ResidentData(
            home.id, home.floor_nap, home.crawlspace_floor_nap, home.alert.min_depth, levels, rain, alerts=alerts
        )
        (out / "homes" / f"{home.id}.html").write_text(resident_page(data))
        if levels:
            t_last, last = levels[-1]
            week = [v for t, v in levels if (t_last - t).days < 7]
            depth = home.crawlspace_floor_nap - last
            statuses.append(HomeStatus(home.id, home.buurtcode, depth, last - week[0], bool(alerts)))
    (out / "city.html").write_text(city_page(statuses, staff=staff))
