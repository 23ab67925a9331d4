# Declarations of csrc/zs_wire.h: the socket a transport lends the layer above
# it for one call (TLS receives into and sends from OpenSSL's own buffers).

from zerosock._shim cimport zs_sock_t

cdef extern from "zs_wire.h" nogil:
    ctypedef struct zs_wire:
        zs_sock_t fd
        size_t mem_len
        int recv_left
        int send_ok
        int eof
        int recv_err
        int send_err
    void zs_wire_lend_socket(zs_wire *w, zs_sock_t fd, int recv, int send)
    void zs_wire_lend_memory(zs_wire *w, const char *data, size_t len)
    int zs_wire_can_recv(const zs_wire *w)
    int zs_wire_to_report(const zs_wire *w)
    size_t zs_wire_recv(zs_wire *w, char *buf, size_t n)
    long zs_wire_send(zs_wire *w, const char *buf, size_t n)
