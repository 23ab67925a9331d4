"""The pure-Python backend's public namespace."""

from . import _selectors_py as selectors  # noqa: F401
from ._recvbuf_py import BufferPool, RecvBuffer  # noqa: F401
from ._recvbuf_shared import (  # noqa: F401
    BufferFullError, IncompleteReadError, LimitOverrunError, PoolExhaustedError,
)
from ._socket_py import Socket, create_connection, create_server, fromfd, socketpair  # noqa: F401

BACKEND = "python"
from . import _aio_py as aio  # noqa: F401
