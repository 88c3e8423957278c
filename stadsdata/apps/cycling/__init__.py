"""Cyclists get green sooner: priority requests from a city app to traffic lights, evaluated in SUMO."""
