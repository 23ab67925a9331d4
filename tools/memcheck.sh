#!/usr/bin/env bash
# Run the C backend's socket and selector tests under valgrind memcheck, on a
# -O0 -g build in a clean copy of the tree; fails on any invalid read or
# write, use of uninitialised memory, or bad free (leaks are the leak tests'
# job: CPython keeps memory until exit).
#
#   tools/memcheck.sh [pytest arguments]     default: the Socket and selectors tests, C backend
#
# ZEROSOCK_MEMCHECK_DIR keeps the build somewhere other than a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
# The interpreter itself, not a wrapper script (pyenv shims): valgrind runs
# the program it is given and does not follow children.
python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')

command -v valgrind >/dev/null || { echo "memcheck.sh: valgrind is not installed" >&2; exit 2; }

work=${ZEROSOCK_MEMCHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/zerosock-memcheck.XXXXXX")}
clean_copy "$work/tree"
cd "$work/tree"

echo "== building with ZEROSOCK_DEBUG_BUILD=1 in $work/tree"
ZEROSOCK_DEBUG_BUILD=1 ZEROSOCK_REQUIRE_EXTENSION=1 ZEROSOCK_WERROR=1 \
    "$python" setup.py -q build_ext --inplace >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log"; exit 1; }

if [[ $# -eq 0 ]]; then
    # Everything with a C parameter in the Socket and selectors tests (new
    # layers' test files join by adding their names here), minus what measures
    # time or memory (the leak tests read RSS in subprocesses) or runs the
    # interpreter's own suite in subprocesses, and the signal storms (under
    # valgrind a blocked call is restarted after the handler's C half runs, so
    # the Python handler never does: a hang, not a finding; the storms run
    # under the sanitizers instead).  The TLS test of loops in threads is left
    # out too: valgrind runs one thread at a time, so the race it looks for
    # cannot happen there, and its 300 handshakes take minutes; the
    # sanitizers run it.
    set -- tests/test_socket.py tests/test_socket_errors.py tests/test_socket_hotpath.py \
        tests/test_selectors.py tests/test_recvbuffer.py tests/test_aio.py tests/test_aio_datagram.py \
        tests/test_aio_reentrancy.py tests/test_aio_debug.py \
        tests/test_aio_tls.py tests/test_aio_tls_engines.py tests/test_aio_streams.py tests/test_aio_streams_order.py \
        tests/test_faults.py tests/test_fuzz.py \
        -m "c_extension and not slow and not leaks" \
        -k "not stdlib_suite and not stdlib_stream_tests and not allocate and not storm and not ciphertext_apart"
fi

# Memory that CPython allocates goes through malloc, where memcheck sees it.
export PYTHONMALLOC=malloc PYTHONPATH="$work/tree/src"
# Property tests: 25 examples each (test_fuzz's count, the others' cap).
export ZEROSOCK_FUZZ_EXAMPLES=${ZEROSOCK_FUZZ_EXAMPLES:-25}
# The tests' bound on one event loop run: a hang, not a speed, is what it catches.
export ZEROSOCK_AIO_TIMEOUT=${ZEROSOCK_AIO_TIMEOUT:-300}
# Signal storms, when asked for, at 100 Hz: at 3 kHz the handlers alone use up valgrind's CPU.
export ZEROSOCK_STORM_INTERVAL=${ZEROSOCK_STORM_INTERVAL:-0.01}
log="$work/memcheck.log"
echo "== running under valgrind memcheck (log: $log)"
status=0
valgrind --tool=memcheck --leak-check=no --track-origins=yes --num-callers=40 \
    --log-file="$log" \
    "$python" -m pytest -p no:cacheprovider -q -o timeout=3600 "$@" || status=$?

# An error counts when one of zerosock's frames is on its stack.  The
# interpreter reports a few of its own (3.11's int.from_bytes(b"") reads an
# uninitialised digit, for one): counted and shown, but not ours to fix.
# That digit also makes the small int it returns "uninitialised" wherever the
# pointer goes, so its uses can carry our frames (the collector traversing an
# object while our loop runs a task): told apart by where the value was made.
filter=0
"$python" - "$log" <<'PY' || filter=$?
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"\n==\d+== \n", text)
kinds = re.compile(r"Invalid (read|write|free)|uninitialised|Mismatched free|overlap|"
                   r"Syscall param .* points to unaddressable")
ours_re = re.compile(r"__pyx_|_socket_c\.|_selectors_c\.|_sockaddr_c\.|_loadgen_c\.|\bzs_\w+ \(")
from_bytes = re.compile(r"Uninitialised value was created by a heap allocation\n"
                        r"(?:[^\n]*\n){1,3}[^\n]*_PyLong_FromByteArray")
ours = [b for b in blocks if kinds.search(b) and ours_re.search(b) and not from_bytes.search(b)]
theirs = [b for b in blocks if kinds.search(b) and b not in ours]
summary = re.findall(r"ERROR SUMMARY: .*", text)
print(f"== valgrind: {summary[-1] if summary else 'no summary'}")
print(f"== errors with a zerosock frame: {len(ours)}; in the interpreter alone: {len(theirs)}")
for b in ours[:5]:
    print(b[:4000])
sys.exit(1 if ours else 0)
PY
if [[ $filter -ne 0 ]]; then
    echo "== memcheck found errors in zerosock"
    exit 1
fi
exit "$status"
