# What the C accept path (zerosock._aio_accept_c) asks of the TLS layer.
cdef bint uses_own_tls_protocol() except -1
cdef object new_server_tls_protocol(object loop, object app_protocol, object sslcontext,
                                    object ssl_handshake_timeout, object ssl_shutdown_timeout)
