"""Parse, type-check and plan SensorThings requests; no SQL here."""
