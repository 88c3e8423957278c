#!/usr/bin/env bash
# Set up everything the test suite needs and run it: the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[all,test]'
.venv/bin/ruff check stadsdata tests benchmarks
.venv/bin/mypy
# A real PostgreSQL + PostGIS for the tests of the production store.
STADSDATA_TEST_POSTGRES=$(bash scripts/postgres.sh)
export STADSDATA_TEST_POSTGRES
.venv/bin/pytest -n 2 "$@"
