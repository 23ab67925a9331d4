#!/usr/bin/env bash
# The long churn: 100,000 connections, each a connect, one echo and a close,
# plain and TLS 1.3, against zerosock.aio on both backends; the server's
# descriptors back to their start after every tenth, its RSS and allocated
# blocks flat over the second half (tests/test_leaks.py, the "100k" variants).
#
#   tools/churn.sh [pytest arguments]     e.g. tools/churn.sh -k c-plain
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# The churn's 100,000-cycle variants are the only tests of the file marked full.
exec "${PYTHON:-python3}" -m pytest -p no:cacheprovider -q -s --full -m full \
    tests/test_leaks.py "$@"
