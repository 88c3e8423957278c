"""The dashboard in headless Chromium against a running ``stadsdata demo``."""

from __future__ import annotations

from typing import Any

import pytest

from stadsdata.web.browser import DemoProcess, wait_for
from tests.web.conftest import api, browser_missing

if (missing := browser_missing()) is not None:
    pytest.skip(missing, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


def datastream_id(running: DemoProcess, name: str) -> int:
    found = api(running, f"/v1.1/Datastreams?$filter=name eq '{name}'&$select=id")["value"]
    assert found, name
    return int(found[0]["@iot.id"])


def no_errors(browser: Any) -> None:
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_map_shows_markers_over_the_bundled_neighbourhoods(running_demo: DemoProcess, browser: Any) -> None:
    things = api(running_demo, "/v1.1/Things?$count=true&$top=0")["@iot.count"]
    browser.get(running_demo.url + "/")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon")) == things)
    outlines = browser.find_elements(By.CSS_SELECTOR, "path.leaflet-interactive")
    assert len(outlines) >= 70  # the 70 neighbourhoods of Enschede, without any tile server
    assert not browser.find_elements(By.CSS_SELECTOR, ".leaflet-tile")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#thing-list li")) == things
    no_errors(browser)


def test_a_marker_opens_with_the_keyboard(running_demo: DemoProcess, browser: Any) -> None:
    browser.get(running_demo.url + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon"))
    marker = browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon")[0]
    assert marker.get_attribute("tabindex") == "0"
    marker.send_keys(Keys.ENTER)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".leaflet-popup-content a"))
    link = browser.find_element(By.CSS_SELECTOR, ".leaflet-popup-content a")
    assert link.get_attribute("href").rsplit("/", 2)[-2] == "datastreams"


def test_chart_draws_points_and_aggregates(running_demo: DemoProcess, browser: Any) -> None:
    ds = datastream_id(running_demo, "Parking garage Van Heekplein: occupied spaces")
    browser.get(f"{running_demo.url}/datastreams/{ds}")
    wait_for(lambda: (browser.execute_script("return window.sdSeries && window.sdSeries.data[0].length") or 0) > 100)
    assert browser.find_element(By.CSS_SELECTOR, "#chart canvas").size["width"] > 200
    about = browser.find_element(By.ID, "ds-about").text
    assert "Occupied parking spaces in parking spaces (spaces)" in about and "simulated" in about
    Select(browser.find_element(By.ID, "agg")).select_by_value("PT1H")  # hourly means through $apply
    wait_for(lambda: browser.execute_script("return window.sdSeries.series.length") == 4)
    hours = browser.execute_script("return window.sdSeries.data[0].length")
    assert 20 <= hours <= 26
    assert "agg=PT1H" in browser.current_url
    no_errors(browser)


def test_live_value_updates(running_demo: DemoProcess, browser: Any) -> None:
    ds = datastream_id(running_demo, "Traffic light De Ruyterlaan / Stationsplein: cyclists detected")
    browser.get(f"{running_demo.url}/datastreams/{ds}")
    value = browser.find_element(By.ID, "latest-value")
    wait_for(lambda: value.get_attribute("data-time"))
    wait_for(lambda: browser.execute_script("return window.sdSeries && window.sdSeries.data[0].length"))
    first = value.get_attribute("data-time")
    wait_for(lambda: value.get_attribute("data-time") != first, timeout=45)
    assert value.get_attribute("data-time") > first
    # The chart got the new reading too: its last point is the newest reading.
    newest = "return window.sdSeries.data[0].at(-1) * 1000 === Date.parse(arguments[0])"
    wait_for(lambda: browser.execute_script(newest, value.get_attribute("data-time")), timeout=15)


def test_search_finds_a_sensor(running_demo: DemoProcess, browser: Any) -> None:
    browser.get(running_demo.url + "/catalogue")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#catalogue tbody tr")) > 50)
    box = browser.find_element(By.ID, "q")
    box.send_keys("pathmos 2")

    def visible() -> list[str]:
        return [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#catalogue tbody tr") if r.is_displayed()]

    # The well's level and battery, and the depth below the crawlspace floor the groundwater app derives.
    wait_for(lambda: len(visible()) == 3)
    assert all(row.startswith("Groundwater well Pathmos 2: ") for row in visible())
    assert any("m NAP" in row for row in visible()) and all("CC-BY-4.0" in row for row in visible())
    assert any("below the crawlspace floor" in row for row in visible())
    assert "simulated" in visible()[0]
    box.clear()
    box.send_keys("no such sensor anywhere")
    wait_for(lambda: not visible())
    assert "0 of" in browser.find_element(By.ID, "count").text


def test_health_highlights_the_stale_sensor(running_demo: DemoProcess, browser: Any) -> None:
    browser.get(running_demo.url + "/sensors")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#health tbody tr.stale"))
    stale = browser.find_elements(By.CSS_SELECTOR, "#health tbody tr.stale")
    assert [r.find_element(By.TAG_NAME, "th").text for r in stale] == ["Groundwater well Deppenbroek 2 simulated"]
    assert "low" in stale[0].text  # its battery ran down
    rows = browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")
    assert rows[0] == stale[0]  # problems first
    browser.find_element(By.ID, "problems").click()
    wait_for(lambda: len([r for r in browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")]) == 1)


def test_pages_fit_a_phone_and_start_with_a_skip_link(running_demo: DemoProcess, browser: Any) -> None:
    browser.set_window_size(390, 844)
    try:
        for path in ("/", "/catalogue", "/sensors", "/datastreams/1"):
            browser.get(running_demo.url + path)
            wait_for(lambda: browser.execute_script("return document.readyState") == "complete")
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, path
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
            focused = browser.switch_to.active_element
            assert focused.get_attribute("class") == "skip", path
            assert browser.find_element(By.TAG_NAME, "h1").text
    finally:
        browser.set_window_size(1280, 900)
