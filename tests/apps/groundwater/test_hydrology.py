"""pastas statistics and the rainfall-response model: hand-computed GHG/GLG, a known response fitted back."""

from __future__ import annotations

import pytest

pytest.importorskip("pastas")  # the optional extra stadsdata[groundwater]

import numpy as np  # noqa: E402  (pastas brings numpy and pandas)
import pandas as pd  # noqa: E402

from stadsdata.apps.groundwater import hydrology  # noqa: E402
from stadsdata.sim import weather  # noqa: E402


def knmi(start: str, end: str) -> tuple[pd.Series, pd.Series]:
    """Real daily precipitation and Makkink evaporation at Twenthe (the package's KNMI extract)."""
    days = {d: w for d, w in weather._table().items() if pd.Timestamp(start) <= pd.Timestamp(d) <= pd.Timestamp(end)}
    index = pd.DatetimeIndex([pd.Timestamp(d) for d in days])
    return (
        pd.Series([w.precip_mm for w in days.values()], index=index, name="prec"),
        pd.Series([w.evap_mm for w in days.values()], index=index, name="evap"),
    )


def test_ghg_glg_by_hand_and_by_pastas() -> None:
    # Eight hydrological years (April-March) at a steady 10.00 m, except in year k (k = 0..7): the three highest
    # 14th/28th values 10.50, 10.40, 10.30 and the three lowest 9.00, 9.10, 9.20, each + k cm.
    # GHG = mean over years of (10.4 + k/100) = 10.4 + 0.035 = 10.435; GLG = 9.1 + 0.035 = 9.135.
    index = pd.date_range("2010-04-01", "2018-03-31", freq="D")
    s = pd.Series(10.0, index=index)
    for k in range(8):
        y = 2010 + k
        for day, value in (
            (f"{y + 1}-02-14", 10.5),
            (f"{y + 1}-02-28", 10.4),
            (f"{y + 1}-01-14", 10.3),
            (f"{y}-08-14", 9.0),
            (f"{y}-08-28", 9.1),
            (f"{y}-09-14", 9.2),
        ):
            s[day] = value + k / 100
    stats = hydrology.dutch_statistics(s, min_years=8)
    assert stats.ghg == pytest.approx(10.435)
    assert stats.glg == pytest.approx(9.135)
    assert stats.gvg == pytest.approx(10.0)  # 14 and 28 March, 14 April are untouched
    assert stats.years == 8 and not stats.provisional
    import pastas as ps

    assert stats.ghg == pytest.approx(ps.stats.ghg(s, min_n_years=8))


def test_young_well_is_provisional() -> None:
    s = pd.Series(10.0 + np.sin(np.arange(400) / 58), index=pd.date_range("2025-04-01", periods=400, freq="D"))
    stats = hydrology.dutch_statistics(s)
    assert stats.provisional and stats.years == 2
    assert stats.ghg is not None and stats.glg is not None and stats.ghg > stats.glg


def test_known_response_to_real_rain_is_recovered() -> None:
    # A well that answers recharge P - 0.9 E through a Gamma response (gain 0.30 m per mm/day, n 1.5, a 10 days:
    # t50 = 10 × Γinc⁻¹(1.5, 0.5) = 11.8 days) with 1 cm of measurement noise; two years of levels after two
    # years of warm-up, on Twenthe's real weather of 2004-2007.
    prec, evap = knmi("2004-01-01", "2007-12-31")
    recharge = (prec - 0.9 * evap).to_numpy()
    block = hydrology.gamma_block_response(0.30, 1.5, 10.0, 600)
    head = 36.0 + np.convolve(recharge, block)[: len(recharge)]
    rng = np.random.default_rng(7)
    series = pd.Series(head + rng.normal(0, 0.01, len(head)), index=prec.index)["2006-01-01":]
    true_t50 = hydrology.gamma_t(1.5, 10.0, 0.5)
    true_t90 = hydrology.gamma_t(1.5, 10.0, 0.9)
    assert true_t50 == pytest.approx(11.8, abs=0.1)

    fit = hydrology.fit_response(series, prec, evap, warmup_days=730)
    assert abs(fit.t50 - true_t50) / true_t50 < 0.10
    assert abs(fit.t90 - true_t90) / true_t90 < 0.10
    assert fit.evp > 95 and fit.rmse < 0.02
    assert fit.evaporation_factor == pytest.approx(0.9, abs=0.1)
    assert fit.gain_mm == pytest.approx(300, rel=0.1)

    # A forecast: 30 mm of rain over three days after the record ends makes the level rise, then recede.
    rain = pd.Series([10.0, 10.0, 10.0, 0, 0, 0, 0, 0, 0, 0], index=pd.date_range("2008-01-01", periods=10, freq="D"))
    ahead = fit.forecast(rain)
    assert len(ahead) == 10 and ahead.index[0] == pd.Timestamp("2008-01-01")
    assert ahead.max() > series.iloc[-1] + 0.05
    dry = fit.forecast(rain * 0)
    assert (ahead - dry).iloc[-1] > 0.05  # the rain is still in the ground ten days later


def test_too_short_a_series_is_refused() -> None:
    prec, evap = knmi("2004-01-01", "2004-12-31")
    s = pd.Series(10.0, index=pd.date_range("2004-06-01", periods=30, freq="D"))
    with pytest.raises(hydrology.HydrologyError, match="at least 60"):
        hydrology.fit_response(s, prec, evap)
