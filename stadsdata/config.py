"""The effective configuration: defaults < TOML file < ``STADSDATA_*`` environment < command-line flags.

Every field of ``Settings`` can be set in each layer: in the file under its own name (``max_top = 500``),
in the environment as ``STADSDATA_`` and the name in capitals (``STADSDATA_MAX_TOP=500``), on the
command line as ``--`` and the name with hyphens (``--max-top 500``). A layer that does not set a field
leaves it to the layers below. Values are converted and checked; a bad one is a ``ConfigError`` that
names the key and where it came from.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from stadsdata.settings import KINDS, SECRETS, Settings, SettingsError, check

ENV_PREFIX = "STADSDATA_"
FIELDS = tuple(f.name for f in fields(Settings))
DEFAULT = "default"


class ConfigError(Exception):
    """Configuration that stops the start: the message names the key and its source."""


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


@dataclass(frozen=True)
class Effective:
    """The settings in force, and for each field where its value came from."""

    settings: Settings
    sources: dict[str, str]


def load(
    config_file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Effective:
    """The effective configuration. ``flags`` maps field names to command-line values; ``None`` is unset."""
    values: dict[str, Any] = {f.name: f.default for f in fields(Settings)}
    sources = dict.fromkeys(FIELDS, DEFAULT)
    if config_file is not None:
        for key, value in read_file(config_file).items():
            where = f"file {config_file}"
            values[key] = _checked(key, value, where)
            sources[key] = where
    env = os.environ if environ is None else environ
    for key in FIELDS:
        raw = env.get(env_name(key))
        if raw is not None:
            where = f"environment variable {env_name(key)}"
            values[key] = _checked(key, _from_text(key, raw, where), where)
            sources[key] = where
    for key, value in (flags or {}).items():
        if key not in values:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            where = f"flag {flag_name(key)}"
            values[key] = _checked(key, value, where)
            sources[key] = where
    try:
        settings = Settings(**values)
    except SettingsError as e:  # a rule across fields
        raise ConfigError(f"{e.key}: {e.message} (from {sources[e.key]})") from None
    return Effective(settings, sources)


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML file: top-level keys named as the fields of ``Settings``."""
    try:
        with Path(path).open("rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"configuration file {path} cannot be read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"configuration file {path} is not valid TOML: {e}") from None
    for key in doc:
        if key not in KINDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(FIELDS)}"
            raise ConfigError(f"{key}: unknown key in configuration file {path}{hint}")
    return doc


def _from_text(key: str, raw: str, where: str) -> Any:
    """An environment variable's text as the field's type."""
    kind, optional, _ = KINDS[key]
    if optional and raw == "":
        return None
    if kind is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not an integer (from {where})") from None
    return raw


def _checked(key: str, value: Any, where: str) -> Any:
    try:
        check(key, value)
    except SettingsError as e:
        raise ConfigError(f"{key}: {e.message} (from {where})") from None
    return value


def to_toml(effective: Effective, *, redact: Any = None) -> str:
    """The effective configuration as a TOML document, each value with its source as a comment.

    ``redact`` (str -> str) masks the password in a URL (the database, the MQTT broker); secrets are
    printed as ``***``.
    """
    lines = ["# stadsdata: the effective configuration (flag > environment > file > default)"]
    for key in FIELDS:
        value = getattr(effective.settings, key)
        if key in SECRETS and value is not None:
            value = "***"
        elif key in ("db", "mqtt_url") and redact is not None and value is not None:
            value = redact(value)
        source = effective.sources[key]
        if value is None:
            lines.append(f"# {key} is unset  # {source}")
        else:
            lines.append(f"{key} = {_toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'
