#!/usr/bin/env bash
# Build the C backend with AddressSanitizer and UndefinedBehaviorSanitizer in
# a clean copy of the tree and run the whole test suite against it, with the
# ASan runtime preloaded into the (uninstrumented) interpreter.  Fails on any
# sanitizer report, even one printed by a subprocess a test started.
#
#   tools/sanitize.sh [pytest arguments]     e.g. tools/sanitize.sh -x tests/test_socket.py
#
# ZEROSOCK_SANITIZE_DIR keeps the build somewhere other than a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
python=${PYTHON:-python3}

if [[ $(uname) == MINGW* || $(uname) == CYGWIN* ]]; then
    echo "sanitize.sh: not supported on Windows" >&2
    exit 2
fi
if command -v gcc >/dev/null; then
    asan=$(gcc -print-file-name=libasan.so)
else
    asan=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
fi
if [[ ! -e $asan ]]; then
    echo "sanitize.sh: no ASan runtime found ($asan); install libasan / libclang-rt" >&2
    exit 2
fi

work=${ZEROSOCK_SANITIZE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/zerosock-asan.XXXXXX")}
logdir="$work/sanitizer-logs"
clean_copy "$work/tree"
rm -rf "$logdir" && mkdir -p "$logdir"
cd "$work/tree"

echo "== building with ZEROSOCK_SANITIZE=1 in $work/tree"
ZEROSOCK_SANITIZE=1 ZEROSOCK_REQUIRE_EXTENSION=1 ZEROSOCK_WERROR=1 CC=${CC:-gcc} \
    "$python" setup.py -q build_ext --inplace >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log"; exit 1; }
# The extension modules must really carry the instrumentation.
for so in src/zerosock/_*.so; do
    nm -D "$so" | grep __asan_ >/dev/null || { echo "sanitize.sh: $so is not instrumented" >&2; exit 1; }
done

# CPython itself is not instrumented and keeps memory until exit: leaks are
# the leak tests' job (tests/test_leaks.py), not LeakSanitizer's.
# PYTHONMALLOC=malloc routes every object allocation through ASan's malloc, so
# an overrun of a Python buffer is caught too, not hidden inside pymalloc arenas.
# log_path: reports of subprocesses (which tests start a lot) land in files we check.
# libstdc++ rides along: ASan resolves __cxa_throw when it starts, and a C++
# extension loaded later (matplotlib's, for the benchmark plots) throws.
cxx=$(${CC:-gcc} -print-file-name=libstdc++.so)
export LD_PRELOAD="$asan${cxx:+:$cxx}${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=0:allocator_may_return_null=1:log_path=$logdir/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logdir/ubsan"
export PYTHONPATH="$work/tree/src"
export PYTHONFAULTHANDLER=1

echo "== running the test suite under ASan/UBSan"
status=0
# wine (the Windows build of the shim) cannot live with the ASan runtime
# preloaded; the ordinary CI run covers it.  Tests that start valgrind skip
# themselves when the runtime is preloaded.
"$python" -m pytest -p no:cacheprovider -q \
    --deselect tests/test_shim_c.py::test_shim_windows_under_wine \
    "$@" || status=$?

reports=$(find "$logdir" -type f -size +0 | sort)
if [[ -n $reports ]]; then
    echo "== sanitizer reports:"
    for f in $reports; do echo "--- $f"; head -60 "$f"; done
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "== tests failed under the sanitizers (status $status)"
    exit "$status"
fi
echo "== sanitizers: no reports"
