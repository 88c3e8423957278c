"""The connectors a configuration sets up, by source: what decodes a dead letter again on replay."""

from __future__ import annotations

from stadsdata.ingest.base import Decoder
from stadsdata.settings import Settings


def decoders(settings: Settings) -> dict[str, Decoder]:
    """Source name → the function that turns one of its payloads into a message, for the configured connectors."""
    return {}
