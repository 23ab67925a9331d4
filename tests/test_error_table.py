"""The Winsock error table in csrc/zs_errors.h promises, for each Winsock code,
the errno Python code sees and the OSError subclass it raises.  Check those
promises against the running Python: on POSIX, the error of the same name
raises the same subclass (what a Linux user gets for the same situation); on
Windows, the errno module's value is the table's and selects that subclass.
The C side (the shim's lookup, the Winsock headers) is checked by
csrc/tests/zs_shim_test.c; the raise path itself by the socket tests, which
expect the standard library's subclasses from both backends."""

import builtins
import errno
import re
import sys
from pathlib import Path

import pytest

HEADER = Path(__file__).resolve().parents[1] / "csrc" / "zs_errors.h"
ROW = re.compile(r'X\((\d+),\s*"(\w+)",\s*(\d+),\s*"(\w*)",\s*"(\w+)"\)')

pytestmark = pytest.mark.skipif(not HEADER.exists(), reason="needs the source tree (csrc/)")


def rows():
    if not HEADER.exists():  # read at collection, before the skip applies
        return []
    return [(int(code), name, int(py_errno), errno_name, exc)
            for code, name, py_errno, errno_name, exc in ROW.findall(HEADER.read_text())]


def test_table_is_parsed():
    found = rows()
    assert len(found) >= 39
    assert len({r[0] for r in found}) == len(found), "a code appears twice"
    names = {r[1] for r in found}
    for needed in ("WSAEWOULDBLOCK", "WSAEINTR", "WSAECONNRESET", "WSAECONNREFUSED",
                   "WSAECONNABORTED", "WSAETIMEDOUT", "WSAEOPNOTSUPP", "WSAENOTSOCK"):
        assert needed in names


@pytest.mark.parametrize("code,name,py_errno,errno_name,exc", rows(), ids=lambda v: str(v))
def test_row_matches_python(code, name, py_errno, errno_name, exc):
    expected = getattr(builtins, exc)
    assert issubclass(expected, OSError)
    if sys.platform == "win32":
        # CPython's socket errors on Windows: errno.<name> is this value...
        if errno_name:
            assert getattr(errno, errno_name) == py_errno
        assert getattr(errno, name) == code
        # ...and OSError picks the subclass from it.
        assert type(OSError(py_errno, "x")) is expected
        return
    if not errno_name:
        assert exc == "OSError"  # nothing POSIX could raise differently
        return
    value = getattr(errno, errno_name, None)
    if value is None:
        pytest.skip(f"errno.{errno_name} does not exist on {sys.platform}")
    # The same situation on POSIX raises the same subclass.
    assert type(OSError(value, "x")) is expected

