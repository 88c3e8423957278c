"""Screenshots of every dashboard page, in headless Chromium.

    python -m stadsdata.web.screenshots docs/img                 # starts its own stadsdata demo
    python -m stadsdata.web.screenshots docs/img --url http://127.0.0.1:8080   # a demo already running

Writes ``dashboard-map.png``, ``dashboard-map-phone.png``, ``dashboard-catalogue.png``,
``dashboard-timeseries.png``, ``dashboard-timeseries-hourly.png`` and ``dashboard-sensors.png``.
Needs the ``test`` extra (Selenium) and Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from stadsdata.web.browser import DemoProcess, chromium, demo, wait_for


def _api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + urllib.parse.quote(path, safe="/?$=&(),'")) as r:
        return json.load(r)


def _datastream(base: str, name: str) -> int:
    found = _api(base, f"/v1.1/Datastreams?$filter=name eq '{name}'&$select=id")["value"]
    if not found:
        raise SystemExit(f"no Datastream {name!r} at {base}: is it a stadsdata demo?")
    return int(found[0]["@iot.id"])


def take(base: str, out: Path) -> list[Path]:
    """Screenshots of the dashboard at ``base`` into ``out``; the files written."""
    from selenium.webdriver.common.by import By

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    browser = chromium(1280, 900)

    def shot(name: str) -> None:
        time.sleep(0.8)  # let transitions and fonts settle
        path = out / f"dashboard-{name}.png"
        browser.save_screenshot(str(path))
        written.append(path)

    try:
        browser.get(base + "/")
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon")) > 10)
        marker = browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon")[0]
        browser.execute_script("arguments[0].click()", marker)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".leaflet-popup-content li"))
        shot("map")
        browser.get(base + "/catalogue?q=groundwater")
        wait_for(lambda: "match" in browser.find_element(By.ID, "count").text)
        shot("catalogue")
        well = _datastream(base, "Groundwater well Roombeek-Roomveldje 1: groundwater level")
        browser.get(f"{base}/datastreams/{well}?range=604800&agg=raw")
        wait_for(lambda: (browser.execute_script("return window.sdSeries && window.sdSeries.data[0].length") or 0) > 10)
        shot("timeseries")
        garage = _datastream(base, "Parking garage Van Heekplein: occupied spaces")
        browser.get(f"{base}/datastreams/{garage}?range=604800&agg=PT1H")
        wait_for(lambda: (browser.execute_script("return window.sdSeries && window.sdSeries.data[0].length") or 0) > 10)
        shot("timeseries-hourly")
        browser.get(base + "/sensors")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#health tbody tr"))
        shot("sensors")
        browser.set_window_size(390, 844)
        browser.get(base + "/")
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon")) > 10)
        shot("map-phone")
    finally:
        browser.quit()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stadsdata.web.screenshots", description="Screenshots of every dashboard page."
    )
    parser.add_argument("out", type=Path, help="the directory to write dashboard-*.png into (e.g. docs/img)")
    parser.add_argument("--url", help="a running stadsdata demo (default: start one in a temporary directory)")
    parser.add_argument("--days", type=float, default=14, help="days of history of the demo it starts (default: 14)")
    args = parser.parse_args(argv)
    running: AbstractContextManager[DemoProcess | None] = (
        nullcontext(None) if args.url else demo(days=args.days, speed=1, seed=53)
    )
    with running as started:
        base = args.url.rstrip("/") if args.url else started.url if started else ""
        for path in take(base, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
