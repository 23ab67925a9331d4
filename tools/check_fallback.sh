#!/usr/bin/env bash
# Prove the fallback: with no working compiler, pip install still succeeds,
# zerosock runs on its pure-Python backend, and `python -m zerosock` says why.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/tools/common.sh"
clean_copy "$work/src"
"$py" -m venv "$work/venv"
venv_py="$work/venv/bin/python"
"$venv_py" -m pip install --quiet --upgrade pip
CC=false "$venv_py" -m pip install --quiet "$work/src[test]"
backend=$(cd "$work" && "$venv_py" -c 'import zerosock; print(zerosock.BACKEND)')
echo "backend without a compiler: $backend"
[[ $backend == python ]]
report=$(cd "$work" && "$venv_py" -m zerosock)
echo "$report"
grep -q "^build: *C extension NOT built" <<<"$report"
cd "$work" && "$venv_py" -m pytest -q -p no:cacheprovider --no-c-extensions \
    --rootdir "$root" -c "$root/pyproject.toml" "$root/tests/test_backend.py" "$root/tests/test_socket.py"
