"""Configuration: defaults < TOML file < STADSDATA_* environment < flags; invalid settings stop the start."""

from __future__ import annotations

import gc
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stadsdata import cli
from stadsdata.api import ops
from stadsdata.config import FIELDS, env_name, load
from stadsdata.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in FIELDS:
        monkeypatch.delenv(env_name(key), raising=False)


def _file(tmp_path: Path, text: str, name: str = "city.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    assert cli.main(["config", "show", *args]) == 0
    out = capsys.readouterr().out
    return tomllib.loads(out), out


def _source(out: str, key: str) -> str:
    line = next(line for line in out.splitlines() if line.startswith(f"{key} = "))
    return line.rpartition("  # ")[2]


def test_defaults_are_the_settings_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    doc, out = _show(capsys)
    expected = {k: v for k, v in vars(Settings()).items() if v is not None}
    assert doc == expected
    assert all(_source(out, key) == "default" for key in expected)
    assert "# base_url is unset" in out


def test_precedence_file_env_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _file(
        tmp_path,
        'db = "file.db"\nhost = "0.0.0.0"\nport = 9001\nmax_top = 500\n'
        'synchronous = "NORMAL"\nbase_url = "https://file.example/v1.1"\n',
    )
    monkeypatch.setenv("STADSDATA_PORT", "9002")
    monkeypatch.setenv("STADSDATA_MAX_TOP", "600")
    monkeypatch.setenv("STADSDATA_DB", "env.db")
    monkeypatch.setenv("STADSDATA_ESTIMATED_COUNT_ABOVE", "5")
    doc, out = _show(capsys, "--config", str(config), "--port", "9003", "--db", "flag.db")
    assert doc["port"] == 9003 and _source(out, "port") == "flag --port"
    assert doc["db"] == "flag.db" and _source(out, "db") == "flag --db"
    assert doc["max_top"] == 600 and _source(out, "max_top") == "environment variable STADSDATA_MAX_TOP"
    assert doc["estimated_count_above"] == 5
    assert doc["host"] == "0.0.0.0" and _source(out, "host") == f"file {config}"
    assert doc["synchronous"] == "NORMAL" and _source(out, "synchronous") == f"file {config}"
    assert doc["base_url"] == "https://file.example/v1.1"
    assert doc["default_top"] == Settings.default_top and _source(out, "default_top") == "default"

    # An unset flag does not override: without --port the environment's port holds.
    doc, _ = _show(capsys, "--config", str(config))
    assert doc["port"] == 9002 and doc["db"] == "env.db"
    # Without the environment, the file's.
    monkeypatch.delenv("STADSDATA_PORT")
    assert load(config).settings.port == 9001
    # A flag with the default's value still overrides.
    assert load(config, {"port": 8080}).settings.port == 8080
    # An empty STADSDATA_BASE_URL unsets the file's base_url.
    monkeypatch.setenv("STADSDATA_BASE_URL", "")
    assert load(config).settings.base_url is None


def test_serve_runs_with_the_effective_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import stadsdata.api.app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(stadsdata.api.app, "create_app", lambda settings: seen.setdefault("settings", settings))

    # The objects made while starting are left out of later garbage collections before serving begins.
    def run(app: Any, **kw: Any) -> None:
        seen["run"] = {**kw, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}

    monkeypatch.setattr(uvicorn, "run", run)
    config = _file(tmp_path, f'db = "{tmp_path / "x.db"}"\nport = 9001\nmax_top = 50\ndefault_top = 10\n')
    monkeypatch.setenv("STADSDATA_MAX_TOP", "70")
    assert gc.get_freeze_count() == 0
    threshold = gc.get_threshold()
    try:
        assert cli.main(["serve", "--config", str(config), "--host", "0.0.0.0"]) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert seen["run"]["frozen"] > 10_000 and seen["run"]["threshold"][0] == ops.YOUNG_OBJECTS
    settings = seen["settings"]
    assert (settings.port, settings.max_top, settings.default_top, settings.host) == (9001, 70, 10, "0.0.0.0")
    assert seen["run"]["port"] == 9001 and seen["run"]["host"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("file", "env", "flags", "named"),
    [
        ("prot = 9000\n", {}, [], ["prot", "unknown key", "city.toml", "'port'"]),
        ('port = "9000"\n', {}, [], ["port", "integer", "city.toml"]),
        ("port = 70000\n", {}, [], ["port", "70000", "out of range", "city.toml"]),
        ("max_top = true\n", {}, [], ["max_top", "integer", "city.toml"]),
        ('synchronous = "OFF"\n', {}, [], ["synchronous", "none of FULL, NORMAL", "city.toml"]),
        ('base_url = "data.example"\n', {}, [], ["base_url", "city.toml"]),
        ("port = \n", {}, [], ["city.toml", "not valid TOML", "line 1"]),
        ("", {"STADSDATA_PORT": "eighty"}, [], ["port", "not an integer", "STADSDATA_PORT"]),
        ("", {"STADSDATA_PORT": "0"}, [], ["port", "out of range", "STADSDATA_PORT"]),
        ("", {"STADSDATA_SYNCHRONOUS": "normal"}, [], ["synchronous", "STADSDATA_SYNCHRONOUS"]),
        ("", {"STADSDATA_MAX_TOP": "0"}, [], ["max_top", "STADSDATA_MAX_TOP"]),
        ("", {"STADSDATA_DB": ""}, [], ["db", "empty", "STADSDATA_DB"]),
        ("", {}, ["--port", "65536"], ["port", "out of range", "--port"]),
        ("", {}, ["--max-body-bytes", "-1"], ["max_body_bytes", "--max-body-bytes"]),
        ("max_top = 50\n", {}, ["--default-top", "60"], ["default_top", "max_top", "--default-top"]),
        ('mqtt_url = "tcp://broker:1883"\n', {}, [], ["mqtt_url", "mqtt://", "city.toml"]),
        ("", {"STADSDATA_MQTT_PORT": "-1"}, [], ["mqtt_port", "out of range", "STADSDATA_MQTT_PORT"]),
        ("", {}, ["--mqtt-port", "70000"], ["mqtt_port", "out of range", "--mqtt-port"]),
    ],
)
def test_invalid_configuration_exits_2_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    file: str,
    env: dict[str, str],
    flags: list[str],
    named: list[str],
) -> None:
    config = _file(tmp_path, file)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for command in (["serve"], ["config", "show"]):
        assert cli.main([*command, "--config", str(config), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("stadsdata: invalid configuration:")
        for part in named:
            assert part in err, err


def test_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and "cannot be read" in err
    assert cli.main(["serve", "--config", str(tmp_path)]) == 2  # a directory
    assert "cannot be read" in capsys.readouterr().err


def test_invalid_configuration_stops_the_process(tmp_path: Path) -> None:
    config = _file(tmp_path, "port = 123456\n")
    done = subprocess.run(
        [sys.executable, "-m", "stadsdata.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "port" in done.stderr and str(config) in done.stderr


def test_config_show_masks_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _file(tmp_path, 'db = "postgresql://city:s3cret@db.internal:5432/stadsdata"\n')
    doc, out = _show(capsys, "--config", str(config))
    assert "s3cret" not in out
    assert doc["db"] == "postgresql://city:***@db.internal:5432/stadsdata"
    assert _source(out, "db") == f"file {config}"

    monkeypatch.setenv("STADSDATA_DB", "postgresql://city:other-secret@db/x")
    doc, out = _show(capsys, "--config", str(config))
    assert "other-secret" not in out and _source(out, "db") == "environment variable STADSDATA_DB"

    monkeypatch.setenv("STADSDATA_WEBHOOK_SECRET", "hook-s3cret")
    monkeypatch.setenv("STADSDATA_MQTT_URL", "mqtt://ingest:broker-s3cret@broker.internal:1883")
    doc, out = _show(capsys, "--config", str(config))
    assert "hook-s3cret" not in out and doc["webhook_secret"] == "***"
    assert "broker-s3cret" not in out and doc["mqtt_url"] == "mqtt://ingest:***@broker.internal:1883"


def test_settings_validate_themselves() -> None:
    with pytest.raises(SettingsError) as e:
        Settings(port=0)
    assert e.value.key == "port"
    with pytest.raises(SettingsError):
        Settings(synchronous="OFF")
    with pytest.raises(SettingsError):
        Settings(max_top="10")  # type: ignore[arg-type]
    Settings(db="x.db", synchronous="NORMAL", base_url="https://data.example/v1.1")


def test_serve_help_names_the_layers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stadsdata.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for text in ("--config", "STADSDATA_", "--max-top", "--default-top", f"default: {Settings.port}"):
        assert text in done.stdout
