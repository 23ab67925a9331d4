"""zerosock: socket I/O that costs what the kernel costs.

The C backend is used when the extension is built; otherwise, or when
``ZEROSOCK_PURE_PYTHON=1`` is set, a pure-Python backend with the same API.
``zerosock.BACKEND`` says which (``"c"`` or ``"python"``).
"""

from typing import TYPE_CHECKING

from ._compat import BACKEND, backend as _backend

if TYPE_CHECKING:
    from ._socket_py import Socket, create_connection, create_server, fromfd, socketpair
else:
    Socket = _backend.Socket
    socketpair = _backend.socketpair
    create_connection = _backend.create_connection
    create_server = _backend.create_server
    fromfd = _backend.fromfd

if TYPE_CHECKING:
    from ._recvbuf_py import BufferPool, RecvBuffer
else:
    RecvBuffer = _backend.RecvBuffer
    BufferPool = _backend.BufferPool
from ._recvbuf_shared import (
    BufferFullError, IncompleteReadError, LimitOverrunError, PoolExhaustedError,
)

__version__ = "0.1.0.dev0"


def get_include() -> str:
    """The directory of the C headers that zerosock's ``.pxd`` files declare.

    An extension that cimports zerosock (``from zerosock._selectors_c cimport
    Selector``) adds it to its ``include_dirs``, as with ``numpy.get_include()``.
    """
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "include")
    if os.path.isdir(installed):
        return installed
    # a source checkout built in place: the headers live in csrc/
    return os.path.join(os.path.dirname(os.path.dirname(package)), "csrc")

__all__ = [
    "BACKEND",
    "BufferFullError",
    "BufferPool",
    "IncompleteReadError",
    "LimitOverrunError",
    "PoolExhaustedError",
    "RecvBuffer",
    "Socket",
    "create_connection",
    "create_server",
    "fromfd",
    "get_include",
    "socketpair",
]
