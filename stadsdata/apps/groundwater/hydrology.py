"""Hydrology of a well with the field's own tool, pastas (Collenteur et al. 2019, Groundwater 57(6)).

* **Dutch statistics** of a level series (``dutch_statistics``): GHG (gemiddeld hoogste
  grondwaterstand, mean of the three highest levels of each hydrological year, April-March,
  measured on the 14th and 28th of the month), GLG (the same of the three lowest) and GVG (mean
  spring level: 14 March, 28 March, 14 April), each averaged over the years, by
  ``pastas.stats.ghg/glg/gvg``. By definition they need 8 years; for a younger well they are given
  over the years there are and marked ``provisional``.
* **Rainfall response** (``fit_response``): a pastas time series model, level = d +
  (P - f·E) ⊛ θ, with daily precipitation P and (Makkink) reference evaporation E through
  ``ps.RechargeModel`` and a Gamma response function θ, fitted by least squares. Its response
  time is the time to 50 % and 90 % of the step response (t50, t90 in days); its fit is reported as
  EVP (explained variance, %), RMSE (m) and R².
* **Forecast** (``Response.forecast``): the fitted model run on into the days of forecast rain;
  evaporation in those days is the mean of the last 14 days (it changes slowly and forecasts of it
  are rarely at hand).

Limits: a linear, stationary model of one well; it knows nothing of pumping, drains, frost or a
sewer that leaks, and a forecast is only as good as the rain forecast. Daily steps: the model
cannot resolve the hours after a cloudburst.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MIN_YEARS_DEFINITIVE = 8
"""Years of record the Dutch definition of GHG, GLG and GVG asks for."""

log = logging.getLogger(__name__)


def _pastas() -> Any:
    """pastas, imported on first use (the optional extra ``stadsdata[groundwater]``), quiet about its own logging."""
    try:
        import pastas as ps
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise HydrologyError("pastas is not installed: pip install 'stadsdata[groundwater]'") from e
    ps.set_log_level("ERROR")
    return ps


class HydrologyError(Exception):
    """A series that cannot be analysed (too short, no overlap with the weather), or pastas is missing."""


@dataclass(frozen=True)
class DutchStatistics:
    ghg: float | None
    glg: float | None
    gvg: float | None
    years: int
    provisional: bool
    """Fewer than 8 hydrological years: not yet the Dutch definition's GHG/GLG/GVG."""


def dutch_statistics(levels: pd.Series, min_years: int = 1) -> DutchStatistics:
    """GHG, GLG and GVG (m NAP) of a level series by pastas.stats; years with too few values are left out."""
    ps = _pastas()
    series = levels.dropna().sort_index()
    if series.empty:
        raise HydrologyError("the series is empty")
    years = int(series.index.to_period("Y-MAR").nunique())

    def stat(f: Any) -> float | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = f(series, min_n_years=min_years)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return DutchStatistics(
        ghg=stat(ps.stats.ghg),
        glg=stat(ps.stats.glg),
        gvg=stat(ps.stats.gvg),
        years=years,
        provisional=years < MIN_YEARS_DEFINITIVE,
    )


@dataclass
class Response:
    """A fitted rainfall-response model of one well."""

    model: Any
    """The ``pastas.Model``."""
    t50: float
    t90: float
    evp: float
    rmse: float
    rsq: float
    gain_mm: float
    """Rise of the level (mm) for 1 mm of sustained recharge a day: the step response's end value × 1000."""
    evaporation_factor: float
    """f in P - f·E: how much of the reference evaporation the ground really loses."""

    def forecast(self, rain_mm: pd.Series) -> pd.Series:
        """The level (m NAP) day by day through the days of ``rain_mm`` (daily rain, mm, indexed by day)."""
        ps = _pastas()
        sm = self.model.stressmodels["recharge"]
        prec: pd.Series = sm.prec.series_original
        evap: pd.Series = sm.evap.series_original
        last = prec.index[-1]
        future = rain_mm[rain_mm.index > last].astype(float)
        if future.empty:
            raise HydrologyError("the forecast rain has no day after the weather series ends")
        days = pd.date_range(last + pd.Timedelta(days=1), future.index[-1], freq="D")
        future = future.reindex(days, fill_value=0.0)
        evap_next = pd.Series(float(evap.iloc[-14:].mean()), index=days)
        model = ps.Model(self.model.oseries.series_original, name=self.model.name)
        _recharge_model(ps, model, pd.concat([prec, future]), pd.concat([evap, evap_next]))
        optimal = self.model.parameters["optimal"].to_numpy()
        sim: pd.Series = model.simulate(p=optimal, tmin=self.model.settings["tmin"], tmax=days[-1])
        return sim.loc[days[0] :]


def daily(levels: pd.Series) -> pd.Series:
    """Daily means of a level series (the model's step); days without a reading are left out."""
    series = levels.dropna().sort_index()
    if series.index.tz is not None:
        series = series.tz_convert("UTC").tz_localize(None)
    out: pd.Series = series.resample("D").mean().dropna()
    return out


def fit_response(levels: pd.Series, prec_mm: pd.Series, evap_mm: pd.Series, warmup_days: int = 365) -> Response:
    """Fit the rainfall-response model to daily ``levels`` (m NAP) with daily precipitation and evaporation (mm)."""
    ps = _pastas()
    head = daily(levels)
    prec = prec_mm.astype(float).sort_index()
    evap = evap_mm.astype(float).sort_index()
    if len(head) < 60:
        raise HydrologyError(f"{len(head)} days of levels: at least 60 are needed to fit a response")
    if prec.index[0] > head.index[0] - pd.Timedelta(days=60) or prec.index[-1] < head.index[-1]:
        raise HydrologyError("the precipitation must start at least 60 days before the levels and cover them")
    model = ps.Model(head, name="well")
    _recharge_model(ps, model, prec, evap)
    warmup = min(warmup_days, int((head.index[0] - prec.index[0]).days))
    model.solve(report=False, warmup=warmup, tmin=head.index[0], tmax=head.index[-1])
    p = model.get_parameters("recharge")
    rfunc = model.stressmodels["recharge"].rfunc
    return Response(
        model=model,
        t50=float(rfunc.get_tmax(p[:3], cutoff=0.5)),
        t90=float(rfunc.get_tmax(p[:3], cutoff=0.9)),
        evp=float(model.stats.evp()),
        rmse=float(model.stats.rmse()),
        rsq=float(model.stats.rsq()),
        gain_mm=float(p[0]) * 1000,
        evaporation_factor=-float(p[3]),  # pastas' Linear recharge is P + f·E with f below 0
    )


def _recharge_model(ps: Any, model: Any, prec: pd.Series, evap: pd.Series) -> None:
    """Add the recharge stress model (P - f·E through a Gamma response) to ``model``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ps.RechargeModel(model, prec, evap, rfunc=ps.Gamma(), name="recharge", recharge=ps.rch.Linear())


def gamma_block_response(a_gain: float, n: float, a: float, days: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The daily block response of a Gamma step response A·Γinc(n, t/a): what a day of unit recharge adds
    to the level on each following day. Used to simulate wells with a known response."""
    from scipy.special import gammainc

    t = np.arange(0, days + 1, dtype=float)
    step = a_gain * gammainc(n, t / a)
    out: np.ndarray[Any, np.dtype[np.float64]] = np.diff(step)
    return out


def gamma_t(n: float, a: float, fraction: float) -> float:
    """Days until the Gamma step response reaches ``fraction`` of its end value."""
    from scipy.special import gammaincinv

    return float(a * gammaincinv(n, fraction))
