"""The pure-Python backend's public namespace."""

from ._socket_py import Socket, create_connection, create_server, fromfd, socketpair  # noqa: F401

BACKEND = "python"
