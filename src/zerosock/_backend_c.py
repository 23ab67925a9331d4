"""The C backend's public namespace; importing it fails when the extension is not built."""

from ._socket_c import Socket, create_connection, create_server, fromfd, socketpair  # noqa: F401

BACKEND = "c"
