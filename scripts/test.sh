#!/usr/bin/env bash
# Installs everything and runs the whole test suite, including the interoperability tests
# against the real restic. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
# two workers (the machine's two cores); a test file's tests stay on one worker, so module
# fixtures are built once
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
