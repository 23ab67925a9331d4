#!/usr/bin/env bash
# The long soak: 10,000 loopback connections against the selectors echo
# server on each backend and on the standard library, for a few minutes each.
#
#   tools/soak.sh [seconds per server, default 180] [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-180}
shift || true
export ZEROSOCK_SOAK_SECONDS=$seconds
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m pytest -p no:cacheprovider -q -s -o timeout=$((seconds * 4 + 600)) \
    tests/test_soak.py "$@"
