"""Ingestion: connectors decode what sensors and files send into readings, which one sink commits."""
