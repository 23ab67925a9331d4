#!/usr/bin/env bash
# Build csrc/tests/zs_shim_test.c and run it: natively with the system C
# compiler, and for Windows with mingw-w64, run under wine.  Both builds use
# -Wall -Wextra -Werror.  Each also compiles and links a program using every
# name the .pxd files declare from csrc/ (tools/pxd_names_c.py), so a
# declaration the Windows headers lack fails here, not in a Windows wheel build.
#
#   tools/test_shim.sh            # linux, then windows if mingw-w64 and wine exist
#   tools/test_shim.sh linux      # only the native build
#   tools/test_shim.sh windows    # only the Windows build (fails without the tools)
#
# Environment: CC (native compiler, default cc), MINGW_CC (default
# x86_64-w64-mingw32-gcc), WINE (default: wine64 or wine on PATH),
# ZS_SHIM_TEST_OUT (build directory, default a temporary one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/csrc/tests/zs_shim_test.c"
extra_sources=("$root/csrc/zs_loadgen.c" "$root/csrc/zs_echo_server.c" "$root/csrc/zs_uring.c" "$root/csrc/zs_uring_poll.c"
               "$root/csrc/zs_uring_echo_server.c")
python=${PYTHON:-$(command -v python3 || command -v python || true)}
[[ -n $python ]] || { echo "test_shim.sh: no python3 on PATH; set PYTHON" >&2; exit 1; }
cflags=(-std=c11 -O1 -g -Wall -Wextra -Werror -I"$root/csrc")
out=${ZS_SHIM_TEST_OUT:-}
if [[ -z $out ]]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
what=${1:-all}

find_wine() {
    if [[ -n ${WINE:-} ]]; then echo "$WINE"; return; fi
    local w
    for w in wine64 wine /usr/lib/wine/wine64; do
        if command -v "$w" >/dev/null 2>&1; then command -v "$w"; return; fi
    done
    return 1
}

run_linux() {
    local cc=${CC:-cc}
    echo "== native build ($($cc --version | head -1))"
    "$cc" "${cflags[@]}" "$src" -o "$out/zs_shim_test"
    "$python" "$root/tools/pxd_names_c.py" > "$out/pxd_names.c"
    "$cc" "${cflags[@]}" -Wno-unused-function "$out/pxd_names.c" "${extra_sources[@]}" -o "$out/pxd_names"
    "$out/zs_shim_test"
}

run_windows() {
    local cc=${MINGW_CC:-x86_64-w64-mingw32-gcc} wine
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "== windows build skipped: $cc not found" >&2
        return 77
    fi
    if ! wine=$(find_wine); then
        echo "== windows build skipped: wine not found" >&2
        return 77
    fi
    echo "== windows build ($($cc --version | head -1)), run under $wine"
    "$cc" "${cflags[@]}" "$src" -o "$out/zs_shim_test.exe" -lws2_32
    "$python" "$root/tools/pxd_names_c.py" > "$out/pxd_names.c"
    "$cc" "${cflags[@]}" -Wno-unused-function "$out/pxd_names.c" "${extra_sources[@]}" \
        -o "$out/pxd_names.exe" -lws2_32
    # A private prefix keeps the user's ~/.wine out of it; WINEDEBUG quiets wine.
    export WINEPREFIX=${WINEPREFIX:-$HOME/.cache/zerosock-wine}
    export WINEDEBUG=${WINEDEBUG:--all}
    mkdir -p "$WINEPREFIX"
    "$wine" "$out/zs_shim_test.exe"
}

case $what in
    linux) run_linux ;;
    windows) run_windows ;;
    all)
        run_linux
        rc=0
        run_windows || rc=$?
        [[ $rc -eq 77 ]] && rc=0
        exit $rc
        ;;
    *) echo "usage: $0 [linux|windows|all]" >&2; exit 2 ;;
esac
