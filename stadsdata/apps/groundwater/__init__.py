"""Groundwater under homes: crawlspace wells in residents' homes, their levels, alerts, health and hydrology.

Modules: ``sensors`` (payload decoders of common well sensors), ``levels`` (pressure or distance →
m NAP → depth below the crawlspace floor, per calibration), ``registry`` (the homes and their
Things/Datastreams), ``alerts`` (criteria, hysteresis, notifiers), ``health`` (missing uplinks,
battery, flatline, drift), ``hydrology`` (pastas: GHG/GLG/GVG, rainfall response, forecast).
The app uses the platform's public HTTP API only (``platform``). See docs/groundwater.md.
"""
