"""Settings: one model, passed to the application factory; nothing is read at import time.

The values are checked when a ``Settings`` is made (``SettingsError`` names the field); where they
come from (a TOML file, ``STADSDATA_*`` environment variables, command-line flags) is
``stadsdata.config``'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SYNCHRONOUS = ("FULL", "NORMAL")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting with a value it may not have; ``key`` is the field's name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Settings:
    db: str = "stadsdata.db"
    """The database: a SQLite file path, or a PostgreSQL URL ``postgresql://user:password@host:port/name``."""
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str | None = None
    """The public URL of the service root (…/v1.1) used in links; derived from each request when unset."""
    default_top: int = 100
    max_top: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024
    estimated_count_above: int = 1_000_000
    """With ``Prefer: count=estimated``, a $count the database estimates above this many rows is that estimate."""
    synchronous: str = "FULL"
    """SQLite ``PRAGMA synchronous``: FULL survives power loss; NORMAL survives process crashes only."""
    log_level: str = "INFO"
    """INFO logs one line per request; WARNING only problems."""
    mqtt_url: str | None = None
    """An external MQTT broker, ``mqtt://user:password@host:port``; unset: the embedded broker on ``mqtt_port``."""
    mqtt_port: int = 1883
    """The port of the embedded MQTT broker (on ``host``); 0: no embedded broker (MQTT is off unless ``mqtt_url``)."""
    ingest_mapping: str | None = None
    """A TOML file that maps LoRaWAN devices and MQTT topics to Datastreams (docs/ingest.md)."""
    webhook_secret: str | None = None
    """The shared secret LoRaWAN network servers send with webhook uplinks; unset: the webhooks are off."""
    access: str = "off"
    """Access control (docs/access.md): ``on`` enforces tokens, projects, roles and visibility; ``off`` lets
    every request read and write everything (a development setting)."""
    anonymous: str = "public"
    """With access control on, what a request without a token may do: ``public`` (read public data) or ``none``."""
    default_project: str = "city"
    """The project of a Thing whose properties name none."""
    default_visibility: str = "public"
    """The visibility of a Thing or Datastream whose properties name none: public, internal or personal."""
    oidc_issuer: str | None = None
    """OpenID Connect: the issuer (``iss``) whose access tokens (JWTs) are accepted besides API tokens; unset: none."""
    oidc_audience: str | None = None
    """OpenID Connect: the audience (``aud``) the tokens must be for."""
    oidc_jwks: str | None = None
    """OpenID Connect: the provider's JWKS endpoint URL, or a file holding its keys (JWKS JSON)."""
    min_owners: int = 5
    """Disclosure control: an aggregate ($apply) over personal data is shown to others only when at least this many
    owners contribute to it."""

    def __post_init__(self) -> None:
        for f in fields(self):
            check(f.name, getattr(self, f.name))
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks)
        if any(v is not None for v in oidc) and not all(v is not None for v in oidc):
            missing = [k for k, v in zip(("oidc_issuer", "oidc_audience", "oidc_jwks"), oidc, strict=True) if v is None]
            raise SettingsError(missing[0], "OpenID Connect needs oidc_issuer, oidc_audience and oidc_jwks together")
        if self.default_top > self.max_top:
            raise SettingsError("default_top", f"{self.default_top} is above max_top ({self.max_top})")

    def db_path(self) -> Path:
        return Path(self.db)


# field -> (type, optional, lowest value for integers)
KINDS: dict[str, tuple[type, bool, int | None]] = {
    "db": (str, False, None),
    "host": (str, False, None),
    "port": (int, False, 1),
    "base_url": (str, True, None),
    "default_top": (int, False, 1),
    "max_top": (int, False, 1),
    "max_body_bytes": (int, False, 1),
    "estimated_count_above": (int, False, 0),
    "synchronous": (str, False, None),
    "log_level": (str, False, None),
    "mqtt_url": (str, True, None),
    "mqtt_port": (int, False, 0),
    "ingest_mapping": (str, True, None),
    "webhook_secret": (str, True, None),
    "access": (str, False, None),
    "anonymous": (str, False, None),
    "default_project": (str, False, None),
    "default_visibility": (str, False, None),
    "min_owners": (int, False, 1),
    "oidc_issuer": (str, True, None),
    "oidc_audience": (str, True, None),
    "oidc_jwks": (str, True, None),
}
CHOICES = {
    "synchronous": SYNCHRONOUS,
    "log_level": LOG_LEVELS,
    "access": ("on", "off"),
    "anonymous": ("public", "none"),
    "default_visibility": ("public", "internal", "personal"),
}

SECRETS = ("webhook_secret",)
"""Settings printed masked; the password in a URL (db, mqtt_url) is masked too."""


def check(key: str, value: Any) -> None:
    """Raise ``SettingsError`` unless ``value`` is fit for the field ``key``."""
    kind, optional, lowest = KINDS[key]
    if value is None:
        if optional:
            return
        raise SettingsError(key, "must be set")
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SettingsError(key, f"must be an integer, not {type(value).__name__} {value!r}")
        if key in ("port", "mqtt_port") and not (lowest or 0) <= value <= 65535:
            raise SettingsError(key, f"{value} is out of range: a port is {lowest} to 65535")
        if lowest is not None and value < lowest:
            raise SettingsError(key, f"{value} is too small: at least {lowest}")
        return
    if not isinstance(value, str):
        raise SettingsError(key, f"must be a string, not {type(value).__name__} {value!r}")
    if not value.strip():
        raise SettingsError(key, "must not be empty")
    if key in CHOICES and value not in CHOICES[key]:
        raise SettingsError(key, f"{value!r} is none of {', '.join(CHOICES[key])}")
    if key == "mqtt_url" and not value.startswith(("mqtt://", "mqtts://")):
        raise SettingsError(key, f"{value!r} is not an mqtt:// or mqtts:// URL")
    if key == "base_url" and not value.startswith(("http://", "https://")):
        raise SettingsError(key, f"{value!r} is not an http:// or https:// URL")
