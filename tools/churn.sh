#!/usr/bin/env bash
# The long churn: 100,000 connections, each a connect, one echo and a close,
# plain and TLS 1.3, against zerosock.aio on both backends; the server's
# descriptors back to their start after every tenth, its RSS and allocated
# blocks flat over the second half (tests/test_leaks.py, the "100k" variants).
#
#   tools/churn.sh [pytest arguments]     e.g. tools/churn.sh -k "c and plain"
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m pytest -p no:cacheprovider -q -s --full \
    tests/test_leaks.py -k "test_churn_flat and 100k" "$@"
