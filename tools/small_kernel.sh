#!/usr/bin/env bash
# Run tests in a fresh network namespace whose kernel tunables are small:
# TCP buffers of 4 KiB / 16 KiB / 64 KiB, somaxconn 16 and a narrow ephemeral
# port range.  A test that assumes this machine's generous defaults (a send
# buffer that takes megabytes, a backlog of thousands, tens of thousands of
# ports) fails here, where it must either derive what it needs from the
# running system, set it on its own sockets, or skip with the reason.
#
#   tools/small_kernel.sh [pytest arguments]   the socket, selector and aio test files
#                                              unless test files are named
#
# Each test file runs in a namespace of its own: the 1,000 ports are plenty
# for one file, but the whole run's closed connections hold theirs in
# TIME_WAIT for a minute, which the tests cannot help and which is not what
# this check is about.
#
# Needs root (unshare -n, and sysctls that are the namespace's own).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

if [[ $(id -u) -ne 0 ]]; then
    echo "small_kernel.sh: needs root (a network namespace of its own)" >&2
    exit 2
fi
options=() files=()
for arg in "$@"; do
    if [[ $arg == tests/* ]]; then files+=("$arg"); else options+=("$arg"); fi
done
if [[ ${#files[@]} -eq 0 ]]; then  # no test files named: these
    files=(tests/test_socket.py tests/test_socket_errors.py tests/test_socket_hotpath.py
        tests/test_selectors.py tests/test_recvbuffer.py tests/test_faults.py
        tests/test_soak.py tests/test_aio*.py)
fi

# The namespace's own tunables; the loopback interface starts down.
failed=()
for file in "${files[@]}"; do
    unshare --net -- bash -c '
set -euo pipefail
ip link set lo up
sysctl -q -w net.ipv4.tcp_rmem="4096 16384 65536" net.ipv4.tcp_wmem="4096 16384 65536" \
    net.core.somaxconn=16 net.ipv4.ip_local_port_range="40000 40999"
echo "== $2, in a network namespace of its own:" \
    "$(sysctl -n net.ipv4.tcp_wmem | tr "\t" " ") (tcp_wmem)," \
    "somaxconn $(sysctl -n net.core.somaxconn)," \
    "ports $(sysctl -n net.ipv4.ip_local_port_range | tr "\t" "-")"
py=$1 file=$2; shift 2
exec "$py" -m pytest -q -p no:cacheprovider "$@" "$file"
' small_kernel "$python" "$file" "${options[@]}" || failed+=("$file")
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "small_kernel.sh: failed in ${failed[*]}" >&2
    exit 1
fi
