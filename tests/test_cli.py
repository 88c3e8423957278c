"""The `stadsdata` command: help texts and `db upgrade`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stadsdata.cli import main
from stadsdata.store import migrations


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stadsdata.cli", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_commands() -> None:
    out = _run("--help")
    assert out.returncode == 0
    assert "serve" in out.stdout and "db upgrade" in out.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--help"], ["--db", "--host", "--port", "--base-url", "--synchronous"]),
        (["db", "upgrade", "--help"], ["--db"]),
    ],
)
def test_subcommand_help(args: list[str], expected: list[str]) -> None:
    out = _run(*args)
    assert out.returncode == 0
    for option in expected:
        assert option in out.stdout


def test_db_upgrade_creates_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "new.db"
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    assert db.exists()
    assert migrations.head() in capsys.readouterr().out


def test_bad_arguments_exit_with_usage() -> None:
    out = _run("serve", "--port", "not-a-number")
    assert out.returncode == 2
    assert "invalid int value" in out.stderr
