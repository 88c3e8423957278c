"""``stadsdata import``: CSV (wide and long) and Parquet on the bulk path, time zones, rejected rows, resuming.

The samples in tests/fixtures/files are excerpts of KNMI's Twenthe station data (see SOURCE.md there).
Values are checked through the HTTP API, on every store.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from stadsdata import cli
from stadsdata.ingest import files
from stadsdata.ingest.base import Delivery
from stadsdata.ingest.files import FileMapping, ImportProblem, LongFormat, Summary, ValueColumn
from stadsdata.service import Service
from stadsdata.settings import Settings
from tests import fixtures

V = "/v1.1"
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "files"
DAILY = SAMPLES / "knmi_290_daily_2014-03_04.csv"
DAILY_NL = SAMPLES / "knmi_290_daily_2014-03_04_nl.csv"
HOURLY_LONG = SAMPLES / "knmi_290_hourly_2021-10-31_long.csv"


@pytest.fixture
def city(client: TestClient) -> TestClient:
    """Three Datastreams, 1 to 3, each of a Thing with a Location (so FeaturesOfInterest can be derived)."""
    for i in range(3):
        assert client.post(f"{V}/Things", json=fixtures.full_thing(f"station {i}")).status_code == 201
    return client


def _import(
    client: TestClient,
    path: Path,
    mapping: FileMapping,
    rejected: Path | None = None,
    on_chunk: Callable[[int, Delivery], None] | None = None,
) -> Summary:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    assert client.portal is not None
    return client.portal.call(
        lambda: files.import_file(service, path, mapping, rejected=rejected, progress=False, on_chunk=on_chunk)
    )


def _series(client: TestClient, ds: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    url: str | None = f"{V}/Datastreams({ds})/Observations"
    params: dict[str, str] | None = {
        "$orderby": "phenomenonTime,id",
        "$top": "10000",
        "$select": "phenomenonTime,result",
    }
    while url:
        r = client.get(url, params=params)
        assert r.status_code == 200, r.text
        doc = r.json()
        out += [(o["phenomenonTime"], o["result"]) for o in doc["value"]]
        url, params = doc.get("@iot.nextLink"), None
    return out


def _rejected(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- CSV -----------------------------------------------------------------------------------------


def test_wide_csv_of_knmi_daily_values(city: TestClient, tmp_path: Path) -> None:
    mapping = FileMapping(
        time="date",
        values=(ValueColumn("precip_mm", 1), ValueColumn("temp_mean_c", 2, offset=273.15)),
    )
    summary = _import(city, DAILY, mapping, tmp_path / "rejected.csv")
    assert (summary.rows, summary.imported, summary.rejected, summary.skipped) == (61, 122, 0, 0)
    assert not (tmp_path / "rejected.csv").exists()
    precip, temp = _series(city, 1), _series(city, 2)
    assert len(precip) == len(temp) == 61
    assert precip[0] == ("2014-03-01T00:00:00Z", 0.9)
    assert temp[0] == ("2014-03-01T00:00:00Z", 279.15)  # 6.0 °C
    assert precip[-1][0] == "2014-04-30T00:00:00Z"
    # Every row of the file, in order.
    with open(DAILY, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r for _, r in precip] == [float(r["precip_mm"]) for r in rows]


def test_dutch_csv_with_decimal_comma_semicolons_and_local_dates(city: TestClient) -> None:
    mapping = FileMapping(
        time="datum",
        time_format="%d-%m-%Y",
        timezone="Europe/Amsterdam",
        decimal=",",
        values=(ValueColumn("neerslag_mm", 1), ValueColumn("temperatuur_gem_c", 2)),
    )
    summary = _import(city, DAILY_NL, mapping)
    assert (summary.imported, summary.rejected) == (122, 0)
    precip = dict(_series(city, 1))
    # Local midnight: 23:00 UTC the day before in winter time, 22:00 after the change on 30 March 2014.
    assert precip["2014-02-28T23:00:00Z"] == 0.9
    assert precip["2014-03-29T23:00:00Z"] == 0.0
    assert "2014-03-30T22:00:00Z" in precip
    assert dict(_series(city, 2))["2014-02-28T23:00:00Z"] == 6.0


def _long_mapping(dst: str) -> FileMapping:
    names = {"T": 1, "RH": 2}
    return FileMapping(
        time="tijd",
        time_format="%Y-%m-%d %H:%M",
        timezone="Europe/Amsterdam",
        dst=dst,
        long=LongFormat("grootheid", "waarde", names, scale=0.1),
    )


def test_long_csv_on_the_day_summer_time_ends_rejects_the_repeated_hour(city: TestClient, tmp_path: Path) -> None:
    rejected = tmp_path / "hourly.rejected.csv"
    summary = _import(city, HOURLY_LONG, _long_mapping("reject"), rejected)
    assert (summary.rows, summary.imported, summary.rejected) == (22, 18, 4)
    rows = _rejected(rejected)
    assert [r["line"] for r in rows] == ["10", "11", "12", "13"]
    assert {r["column"] for r in rows} == {"tijd"}
    assert rows[0]["reason"] == (
        "local time 2021-10-31 02:00:00 occurs twice in Europe/Amsterdam (clocks go back); "
        "choose --dst earlier, later or infer"
    )
    assert rows[0]["raw"] == "2021-10-31 02:00,T,113"


def test_long_csv_infers_the_repeated_hour_from_the_order_of_rows(city: TestClient) -> None:
    summary = _import(city, HOURLY_LONG, _long_mapping("infer"))
    assert (summary.imported, summary.rejected) == (22, 0)
    temperature = _series(city, 1)
    # The hours end at 20:00 … 06:00 UT; every hour once, the repeated local 02:00 as 00:00 and 01:00 UTC.
    assert [t for t, _ in temperature] == [f"2021-10-30T{h:02}:00:00Z" for h in (20, 21, 22, 23)] + [
        f"2021-10-31T{h:02}:00:00Z" for h in range(7)
    ]
    assert temperature[4:6] == [("2021-10-31T00:00:00Z", 11.3), ("2021-10-31T01:00:00Z", 10.3)]
    assert len(_series(city, 2)) == 11


def test_a_local_time_that_does_not_exist(city: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "spring.csv"
    path.write_text("tijd;waarde\n2021-03-28 01:30;1\n2021-03-28 02:30;2\n2021-03-28 03:30;3\n")

    def run(dst: str) -> Summary:
        mapping = FileMapping(
            time="tijd",
            time_format="%Y-%m-%d %H:%M",
            timezone="Europe/Amsterdam",
            dst=dst,
            values=(ValueColumn("waarde", {"reject": 1, "earlier": 2, "later": 3}[dst]),),
        )
        return _import(city, path, mapping, tmp_path / f"{dst}.rejected.csv")

    assert run("reject").rejected == 1
    assert _rejected(tmp_path / "reject.rejected.csv")[0]["reason"] == (
        "local time 2021-03-28 02:30:00 does not exist in Europe/Amsterdam (clocks go forward); "
        "choose --dst earlier or later"
    )
    assert [t for t, _ in _series(city, 1)] == ["2021-03-28T00:30:00Z", "2021-03-28T01:30:00Z"]
    assert run("earlier").imported == 3
    assert _series(city, 2)[1] == ("2021-03-28T00:30:00Z", 2)  # 02:30 read as winter time (+01:00)
    assert run("later").imported == 3
    assert _series(city, 3)[1] == ("2021-03-28T01:30:00Z", 2)  # 02:30 read as summer time (+02:00)


def test_times_with_offsets_and_epochs(city: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("t,ms,v\n2026-11-22T10:00:00+01:00,1795338000000,1\n2026-11-22T10:00:00Z,1795341600500,2\n")
    iso = FileMapping(time="t", timezone="Europe/Amsterdam", values=(ValueColumn("v", 1),))
    assert _import(city, path, iso).imported == 2
    assert [t for t, _ in _series(city, 1)] == ["2026-11-22T09:00:00Z", "2026-11-22T10:00:00Z"]
    epoch = FileMapping(time="ms", time_format="epoch-ms", values=(ValueColumn("v", 2),))
    assert _import(city, path, epoch).imported == 2
    assert [t for t, _ in _series(city, 2)] == ["2026-11-22T09:00:00Z", "2026-11-22T10:00:00.500Z"]


# -- rejected rows -------------------------------------------------------------------------------


def test_rejected_rows_are_written_with_line_row_and_reason(city: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "meting.csv"
    path.write_text(
        "datum;neerslag;temperatuur\n"
        "01-03-2014;0,9;6,0\n"  # 2: fine
        "31-02-2014;1,0;5,0\n"  # 3: no such day
        "02-03-2014;veel;5,9\n"  # 4: not a number (the temperature is still stored)
        "03-03-2014;;5,1\n"  # 5: empty precipitation: skipped
        '"04-03-2014";"1.234,5";NaN\n'  # 6: thousands separator; NaN is not a finite number
        "05-03-2014;1.5;4,0\n"  # 7: a decimal point where a comma is expected
        "06-03-2014\n",  # 8: too few fields
        encoding="utf-8",
    )
    mapping = FileMapping(
        time="datum",
        time_format="%d-%m-%Y",
        decimal=",",
        values=(ValueColumn("neerslag", 1), ValueColumn("temperatuur", 2)),
    )
    summary = _import(city, path, mapping)
    assert summary.rejected_path == str(tmp_path / "meting.csv.rejected.csv")
    rows = _rejected(tmp_path / "meting.csv.rejected.csv")
    assert [(r["line"], r["column"], r["reason"], r["raw"]) for r in rows] == [
        ("3", "datum", "time '31-02-2014' does not match the format '%d-%m-%Y'", "31-02-2014;1,0;5,0"),
        ("4", "neerslag", "'veel' is not a number", "02-03-2014;veel;5,9"),
        ("6", "temperatuur", "'NaN' is not a finite number", "04-03-2014;1.234,5;NaN"),
        ("7", "neerslag", "'1.5' is not a number with a decimal comma", "05-03-2014;1.5;4,0"),
        ("8", "", "the row has 1 fields; the mapping reads field 3", "06-03-2014"),
    ]
    assert (summary.rows, summary.rejected, summary.empty, summary.imported) == (7, 5, 1, 6)
    assert _series(city, 1) == [("2014-03-01T00:00:00Z", 0.9), ("2014-03-04T00:00:00Z", 1234.5)]
    assert [v for _, v in _series(city, 2)] == [6.0, 5.9, 5.1, 4.0]
    assert "5 rejected (see " in summary.line()


def test_empty_cells_can_be_rejected_and_unknown_datastreams_are_rejected(city: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        "time,series,value\n2026-01-01T00:00Z,1,1.5\n2026-01-01T00:00Z,9,2\n2026-01-01T00:00Z,x,3\n2026-01-01T00:00Z,2,\n"
    )
    mapping = FileMapping(time="time", empty="reject", long=LongFormat("series", "value"))
    summary = _import(city, path, mapping, tmp_path / "r.csv")
    assert [(r["line"], r["column"], r["reason"]) for r in _rejected(tmp_path / "r.csv")] == [
        ("3", "series", "there is no Datastream with @iot.id 9"),
        ("4", "series", "Datastream 'x' is not an id, nor a name of the mapping's [long.datastreams]"),
        ("5", "value", "no value"),
    ]
    assert (summary.imported, summary.rejected) == (1, 3)
    assert _series(city, 1) == [("2026-01-01T00:00:00Z", 1.5)]


# -- Parquet -------------------------------------------------------------------------------------


def test_parquet_read_by_row_groups(city: TestClient, tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 250
    start = dt.datetime(2021, 10, 30, 12)  # local Amsterdam time, through the night summer time ends
    times = [start + dt.timedelta(minutes=10 * i) for i in range(n)]
    table = pa.table(
        {
            "tijd": pa.array(times, pa.timestamp("us")),
            "stand_cm": pa.array([float(i) if i != 7 else None for i in range(n)], pa.float64()),
            "teller": pa.array(list(range(n)), pa.int64()),
        }
    )
    path = tmp_path / "peilbuis.parquet"
    pq.write_table(table, path, row_group_size=64)
    mapping = FileMapping(
        time="tijd",
        timezone="Europe/Amsterdam",
        dst="earlier",
        chunk_rows=100,  # not a multiple of the row groups: chunks are counted in rows, not batches
        values=(ValueColumn("stand_cm", 1, scale=0.01), ValueColumn("teller", 2)),
    )
    summary = _import(city, path, mapping, tmp_path / "r.csv")
    assert (summary.rows, summary.chunks, summary.empty, summary.imported, summary.rejected) == (250, 3, 1, 499, 0)
    level = _series(city, 1)
    assert len(level) == 249 and level[0] == ("2021-10-30T10:00:00Z", 0.0) and level[1][1] == 0.01
    counter = _series(city, 2)
    assert counter[0] == ("2021-10-30T10:00:00Z", 0)
    # 02:00-02:50 local occurs twice that night; "earlier" takes the summer-time instants (+02:00) and leaves
    # the hour after them empty.
    assert sum(1 for t, _ in counter if t.startswith("2021-10-31T00:")) == 6
    assert not [t for t, _ in counter if t.startswith("2021-10-31T01:")]


def test_parquet_with_zoned_timestamps_text_cells_and_a_result_time(city: TestClient, tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
    table = pa.table(
        {
            "gemeten": pa.array([t0, t0 + dt.timedelta(hours=1), None], pa.timestamp("ms", tz="Europe/Amsterdam")),
            "ontvangen": pa.array(["2026-11-22T11:05:00+01:00", "2026-11-22T12:05:00+01:00", "x"]),
            "waarde": pa.array(["1,25", "kapot", "3"]),
        }
    )
    path = tmp_path / "zoned.parquet"
    pq.write_table(table, path)
    mapping = FileMapping(time="gemeten", result_time="ontvangen", decimal=",", values=(ValueColumn("waarde", 1),))
    summary = _import(city, path, mapping, tmp_path / "r.csv")
    assert (summary.imported, summary.rejected) == (1, 2)
    rows = _rejected(tmp_path / "r.csv")
    assert [(r["row"], r["column"], r["reason"]) for r in rows] == [
        ("2", "waarde", "'kapot' is not a number"),
        ("3", "gemeten", "no time"),
    ]
    assert orjson.loads(rows[0]["raw"]) == {
        "gemeten": "2026-11-22T12:00:00+01:00",
        "ontvangen": "2026-11-22T12:05:00+01:00",
        "waarde": "kapot",
    }
    obs = city.get(f"{V}/Datastreams(1)/Observations").json()["value"]
    assert [(o["phenomenonTime"], o["resultTime"], o["result"]) for o in obs] == [
        ("2026-11-22T10:00:00Z", "2026-11-22T10:05:00Z", 1.25)
    ]


def test_corrupt_parquet_and_missing_pyarrow_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "kapot.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")
    argv = ["import", str(bad), "--db", str(tmp_path / "x.db"), "--time", "t", "--value", "v=1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stadsdata import: {bad} is not a readable Parquet file") and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert cli.main(argv) == 2
    assert "pip install 'stadsdata[files]'" in capsys.readouterr().err


# -- resuming ------------------------------------------------------------------------------------


def test_rerun_after_an_interruption_stores_every_row_once(city: TestClient, tmp_path: Path) -> None:
    mapping = FileMapping(
        time="date", chunk_rows=10, values=(ValueColumn("precip_mm", 1), ValueColumn("temp_mean_c", 2))
    )

    class Crash(Exception):
        pass

    def crash_after_three(n: int, delivery: Delivery) -> None:
        if n == 2:
            raise Crash

    with pytest.raises(Crash):
        _import(city, DAILY, mapping, on_chunk=crash_after_three)
    assert len(_series(city, 1)) == 30
    summary = _import(city, DAILY, mapping)
    assert (summary.chunks, summary.skipped_chunks, summary.skipped, summary.imported) == (7, 3, 60, 62)
    assert "60 skipped as imported before (3 of 7 chunks)" in summary.line()
    for ds in (1, 2):
        times = [t for t, _ in _series(city, ds)]
        assert len(times) == len(set(times)) == 61
    # Once complete, a rerun stores nothing; another mapping of the same file is another import.
    assert _import(city, DAILY, mapping).imported == 0
    other = FileMapping(time="date", values=(ValueColumn("temp_max_c", 3),))
    assert _import(city, DAILY, other).imported == 61


def _write_series(path: Path, rows: int) -> None:
    with open(path, "w", newline="") as f:
        f.write("time,value\n")
        for i in range(rows):
            f.write(f"{1_700_000_000 + 60 * i},{i % 1000 / 10}\n")


def _count(client: TestClient) -> int:
    r = client.get(f"{V}/Datastreams(1)/Observations", params={"$count": "true", "$top": "0"})
    count: int = r.json()["@iot.count"]
    return count


def test_killed_import_resumes_when_run_again(city: TestClient, settings: Settings, tmp_path: Path) -> None:
    rows = 60_000
    path = tmp_path / "series.csv"
    _write_series(path, rows)
    command = [
        *(sys.executable, "-m", "stadsdata.cli", "import", str(path), "--db", settings.db),
        *("--time", "time", "--time-format", "epoch-s", "--value", "value=1", "--chunk-rows", "1000"),
    ]
    env = {**os.environ, "STADSDATA_SYNCHRONOUS": "NORMAL"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _count(city) == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(city)
    assert 0 < partial < rows and partial % 1000 == 0  # killed mid-file, after whole chunks only
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{partial:,} skipped as imported before" in done.stdout
    assert _count(city) == rows
    r = city.get(f"{V}/Datastreams(1)/Observations", params={"$top": "1", "$orderby": "phenomenonTime desc"})
    assert r.json()["value"][0]["result"] == (rows - 1) % 1000 / 10


# -- the command and the mapping file --------------------------------------------------------------


def test_the_command_with_a_mapping_file(city: TestClient, settings: Settings, tmp_path: Path) -> None:
    toml = tmp_path / "knmi.toml"
    toml.write_text(
        'time = "datum"\ntime_format = "%d-%m-%Y"\ntimezone = "Europe/Amsterdam"\ndecimal = ","\n\n'
        "[values]\nneerslag_mm = 1\n"
        "temperatuur_gem_c = { datastream = 2, offset = 273.15 }\n"
        "globale_straling_jcm2 = { datastream = 3, scale = 0.01 }\n"
    )
    argv = ["import", str(DAILY_NL), "--db", settings.db, "--mapping", str(toml), "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "stadsdata.cli", *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 183 observations from 61 rows; 0 skipped")
    assert _series(city, 2)[0] == ("2014-02-28T23:00:00Z", 279.15)
    assert _series(city, 3)[0] == ("2014-02-28T23:00:00Z", 5.93)  # 593 J/cm² is 5.93 MJ/m²


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--time", "date", "--value", "precip_mm=1"], "missing.csv: no such file"),
        (
            [str(DAILY), "--time", "datum", "--value", "precip_mm=1"],
            "the file has no column 'datum'; its columns are: date,",
        ),
        ([str(DAILY), "--time", "date", "--value", "regen=1"], "the file has no column 'regen'"),
        ([str(DAILY), "--time", "date"], "the mapping names no value column"),
        ([str(DAILY), "--value", "precip_mm=1"], "the mapping needs the time column"),
        ([str(DAILY), "--time", "date", "--value", "precip_mm"], "--value 'precip_mm': expected COLUMN=DATASTREAM_ID"),
        ([str(DAILY), "--time", "date", "--value", "precip_mm=1", "--timezone", "Europe/Enschede"], "is not an IANA"),
        (
            [str(DAILY), "--time", "date", "--value", "precip_mm=7"],
            "there is no Datastream with these ids: precip_mm → 7",
        ),
        ([str(DAILY), "--mapping", "nope.toml"], "mapping file nope.toml:"),
    ],
)
def test_unusable_input_is_exit_status_2_without_a_traceback(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["import", *args, "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stadsdata import: ") and message in err, err


def test_mapping_file_errors_are_problems(tmp_path: Path) -> None:
    toml = tmp_path / "m.toml"
    toml.write_text('time = "t"\ncolour = "blue"\n[values]\nv = 1\n')
    with pytest.raises(ImportProblem, match="unknown key"):
        files.load_mapping(str(toml))
    toml.write_text('time = "t"\n[long]\ndatastream = "s"\nvalue = "v"\n[long.datastreams]\nT = 4\n')
    mapping = files.load_mapping(str(toml), {"dst": "infer", "timezone": None})
    assert mapping.long == LongFormat("s", "v", {"T": 4}) and mapping.dst == "infer" and mapping.timezone == "UTC"
    assert mapping.fingerprint() != files.load_mapping(str(toml)).fingerprint()
