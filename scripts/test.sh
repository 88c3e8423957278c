#!/usr/bin/env bash
# Set up everything the test suite needs and run it: the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium and its driver for the dashboard's browser tests (tests/web; Debian packages).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "Chromium is not installed; run as root or: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
    echo "installing chromium and chromium-driver (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium chromium-driver >&2
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[all,test]'
.venv/bin/ruff check stadsdata tests benchmarks
.venv/bin/mypy
# A real PostgreSQL + PostGIS for the tests of the production store.
STADSDATA_TEST_POSTGRES=$(bash scripts/postgres.sh)
export STADSDATA_TEST_POSTGRES
.venv/bin/pytest -n 2 "$@"
