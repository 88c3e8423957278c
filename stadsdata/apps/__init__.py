"""City apps: they use only the public API and plugin hooks."""
