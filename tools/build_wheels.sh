#!/usr/bin/env bash
# Build an sdist, then from it a wheel with each given CPython (so the sdist is
# proven to build from scratch); install each wheel into a fresh venv and run
# the test suite against it (both backends).
#
#   tools/build_wheels.sh python3.9 /opt/python3.13/bin/python ...
#   tools/build_wheels.sh            # every CPython 3.9-3.15 that pyenv or PATH has
#
# A version number such as 3.12 is looked up on PATH and under pyenv.  Warnings
# are errors in these builds (ZEROSOCK_WERROR=1).  Each wheel is built and
# tested in a fresh virtual environment of its interpreter, so a distribution's
# interpreter without pip of its own (Debian's python3.14) serves as well.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dist="$root/dist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/tools/common.sh"
clean_copy "$work/src"

find_python() {  # a path, a command, or a version like 3.12; must really run
    local want=$1 candidate
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    for candidate in "$want" "$pyenv_root"/versions/"$want".*/bin/python \
            "$(command -v "$want" 2>/dev/null)" "$(command -v "python$want" 2>/dev/null)"; do
        if [[ -n $candidate && -x $candidate ]] && "$candidate" -c pass >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
    return 1
}

if [[ $# -eq 0 ]]; then
    set -- 3.9 3.10 3.11 3.12 3.13 3.14 3.15
fi

mkdir -p "$dist"
builder=
for want in "$@"; do  # the sdist is built with the first interpreter found
    builder=$(find_python "$want") && break
done
[[ -n $builder ]] || { echo "no interpreter for any of: $*" >&2; exit 1; }
"$builder" -m venv "$work/venv-build"
"$work/venv-build/bin/python" -m pip install --quiet build
"$work/venv-build/bin/python" -m build --sdist --outdir "$work/sdist" "$work/src" >/dev/null
sdist=$(ls "$work"/sdist/zerosock-*.tar.gz)
cp "$sdist" "$dist/"
echo "== sdist: $(basename "$sdist")"

failed=()
for want in "$@"; do
    if ! py=$(find_python "$want"); then
        echo "== $want: no such interpreter, skipped"
        continue
    fi
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "== CPython $version ($py)"
    out="$work/wheel-$version"
    "$py" -m venv "$work/venv-$version"
    venv_py="$work/venv-$version/bin/python"
    "$venv_py" -m pip install --quiet --upgrade pip
    ZEROSOCK_REQUIRE_EXTENSION=1 ZEROSOCK_WERROR=1 "$venv_py" -m pip wheel --quiet --no-deps -w "$out" "$sdist"
    wheel=$(ls "$out"/zerosock-*.whl)
    cp "$wheel" "$dist/"
    # The bench and apps extras too: their tests (uvloop contenders, the plots,
    # the frameworks adopting zerosock.aio) then run rather than skip.
    "$venv_py" -m pip install --quiet "$wheel[test,bench,apps]"
    # Run from outside the tree so the installed wheel, not src/, is imported.
    if (cd "$work" && "$venv_py" -c 'import zerosock, sys; assert zerosock.BACKEND == "c", zerosock.BACKEND' &&
        "$venv_py" -m pytest -q -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" "$root/tests"); then
        echo "== CPython $version: $(basename "$wheel") passed"
    else
        failed+=("$version")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "wheel tests failed for: ${failed[*]}" >&2
    exit 1
fi
