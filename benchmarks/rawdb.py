"""The baseline of the write benchmarks: the same schema, written with Python's sqlite3 directly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stadsdata.model.entities import sensing_registry
from stadsdata.store.sqlite import SQLiteStore

OBSERVATION_INSERT = (
    "INSERT INTO observations (phenomenon_time_start, result_type, result_number, result_quality_type,"
    " datastream_id, feature_of_interest_id) VALUES (?, 2, ?, 0, 1, 1)"
)
"""One numeric Observation of Datastream 1 at FeatureOfInterest 1; values: (start µs, result)."""


def raw_database(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A new database with stadsdata's schema and indexes and one Datastream, opened as the server opens it."""
    SQLiteStore(path, sensing_registry())
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(f"PRAGMA synchronous={synchronous}")
    raw.execute("PRAGMA foreign_keys=ON")
    raw.executescript(
        "INSERT INTO things (name, description) VALUES ('t', 'd');"
        "INSERT INTO sensors (name, description, encoding_type, metadata_type, metadata_string)"
        " VALUES ('s', 'd', 'text/plain', 3, 'm');"
        "INSERT INTO observed_properties (name, definition, description) VALUES ('p', 'x', 'd');"
        "INSERT INTO datastreams (name, description, unit_of_measurement, observation_type, thing_id, sensor_id,"
        " observed_property_id) VALUES ('d', 'd', '{}', 'x', 1, 1, 1);"
        "INSERT INTO features_of_interest (name, description, encoding_type, feature, feature_minx, feature_miny,"
        " feature_maxx, feature_maxy) VALUES ('f', 'd', 'application/geo+json', '{}', 0, 0, 0, 0);"
    )
    return raw
