"""stadsdata: the city's own data platform, an OGC SensorThings API 1.1 server."""

__version__ = "0.1.0"
