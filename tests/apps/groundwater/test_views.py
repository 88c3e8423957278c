"""The views: disclosure control on neighbourhood figures (k ≥ 5), the resident's summary and pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stadsdata.apps.groundwater import views
from stadsdata.apps.groundwater.views import HomeStatus, ResidentData

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def homes(code: str, n: int, depth: float = 0.6, risk: int = 0) -> list[HomeStatus]:
    return [HomeStatus(f"{code}-{i}", code, depth + i / 100, 0.01, i < risk) for i in range(n)]


def test_neighbourhoods_under_five_homes_are_not_shown() -> None:
    rows = homes("BU01530310", 5, risk=2) + homes("BU01530311", 4, 0.1) + homes("BU01530312", 7)
    view = views.aggregate(rows)
    assert [a.buurtcode for a in view.neighbourhoods] == ["BU01530310", "BU01530312"]
    assert view.suppressed == 1
    first = view.neighbourhoods[0]
    assert (first.homes, first.median_depth, first.at_risk) == (5, 0.62, 2)
    # the total counts only the homes shown: 12, not 16, so the 4 cannot be had by subtraction
    assert view.total is not None and view.total.homes == 12


def test_small_neighbourhoods_are_pooled_when_the_pool_has_five() -> None:
    rows = homes("BU01530310", 5) + homes("BU01530311", 3) + homes("BU01530320", 2)
    view = views.aggregate(rows)
    assert [(a.buurtcode, a.homes) for a in view.neighbourhoods] == [("BU01530310", 5), (views.OTHER, 5)]
    assert view.total is not None and view.total.homes == 10
    # one home less in the pool and it is left out altogether
    view = views.aggregate(homes("BU01530310", 5) + homes("BU01530311", 3) + homes("BU01530320", 1))
    assert [a.buurtcode for a in view.neighbourhoods] == ["BU01530310"]
    assert views.aggregate(homes("BU01530310", 4)).total is None


def test_city_page_lists_homes_at_risk_for_staff_only() -> None:
    rows = homes("BU01530310", 5, 0.1, risk=1) + homes("BU01530311", 2, 0.1, risk=2)
    public = views.city_page(rows)
    assert "BU01530311-0" not in public and "BU01530310-0" not in public
    assert "<polygon" in public and "niet apart getoond" in public
    staff = views.city_page(rows, staff=True)
    assert "BU01530310-0" in staff and "BU01530311-0" in staff


def resident(**extra: object) -> ResidentData:
    levels = [(T0 + timedelta(days=d), 37.20 + 0.01 * d) for d in range(15)]  # rising 1 cm a day to 37.34
    base: dict[str, object] = {
        "home": "home-1",
        "floor_nap": 38.55,
        "crawlspace_floor_nap": 37.85,
        "threshold": 0.20,
        "levels": levels,
        "rain": [(T0 + timedelta(days=d), 4.0) for d in range(15)],
    }
    return ResidentData(**{**base, **extra})  # type: ignore[arg-type]


def test_summary_in_dutch_and_english() -> None:
    d = resident()
    nl, en = views.summary(d, "nl"), views.summary(d, "en")
    # 37.85 - 37.34 = 0.51 m; over the last week (days 8-14) 37.28 → 37.34 = 6 cm; 7 days × 4 mm = 28 mm
    assert nl[0] == "Het grondwater staat 51 cm onder de bodem van uw kruipruimte."
    assert en[0] == "The groundwater is 51 cm below the floor of your crawlspace."
    assert "veilig" in nl[1] and "safe" in en[1]
    assert nl[2] == "In de afgelopen week is het 6 cm gestegen; er viel 28 mm regen."
    assert en[2] == "Over the last week it has risen 6 cm; 28 mm of rain fell."
    wet = views.summary(resident(levels=[(T0, 37.90)]), "en")
    assert wet[0] == "There is water in your crawlspace: 5 cm above its floor."
    ahead = resident(forecast=[(T0 + timedelta(days=15 + d), 37.40 + 0.05 * d) for d in range(4)], forecast_rain_mm=30)
    assert "come up to 30 cm below the crawlspace floor" in views.summary(ahead, "en")[-1]


def test_resident_page() -> None:
    page = views.resident_page(resident(alerts=["rising"]))
    assert "<svg" in page and "Snel stijgend" in page and 'lang="en"' in page
    assert "37.85 m NAP" in page  # the crawlspace floor line
