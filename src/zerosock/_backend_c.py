"""The C backend's public namespace; importing it fails when the extension is not built."""

from . import _selectors_c as selectors  # noqa: F401
from ._recvbuf_c import BufferPool, RecvBuffer  # noqa: F401
from ._recvbuf_shared import (  # noqa: F401
    BufferFullError, IncompleteReadError, LimitOverrunError, PoolExhaustedError,
)
from ._socket_c import Socket, create_connection, create_server, fromfd, socketpair  # noqa: F401

BACKEND = "c"
from . import _aio_c as aio  # noqa: F401
