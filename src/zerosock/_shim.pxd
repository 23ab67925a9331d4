# Declarations of csrc/zs_shim.h, the portable socket layer (no #ifdefs in Cython).

cdef extern from "zs_shim.h" nogil:
    ctypedef long zs_sock_t
    ctypedef int zs_socklen_t

    ctypedef struct zs_iovec:
        pass

    ctypedef struct zs_pollfd:
        zs_sock_t fd
        short events
        short revents

    const zs_sock_t ZS_INVALID_SOCKET
    const int ZS_SOCKET_ERROR
    const int ZS_EWOULDBLOCK
    const int ZS_EAGAIN
    const int ZS_EINTR
    const int ZS_EINPROGRESS
    const int ZS_EBADF
    const int ZS_EINVAL
    const int ZS_ENOTSUP
    const int ZS_EMSGSIZE
    const int ZS_ENOBUFS
    const int ZS_MSG_DONTWAIT
    const int ZS_HAVE_MSG_DONTWAIT
    const size_t ZS_MAX_IO_LEN

    int zs_last_error()
    void zs_set_last_error(int code)
    int zs_is_would_block(int err)
    int zs_close(zs_sock_t s)
    int zs_set_nonblocking(zs_sock_t s, int on)
    void zs_iov_set(zs_iovec *v, void *base, size_t length)
    int zs_poll(zs_pollfd *fds, unsigned long n, int timeout_ms)
    int zs_startup()

    zs_sock_t zs_socket(int family, int type, int proto)
    int zs_socketpair(int family, int type, int proto, zs_sock_t out[2])
    zs_sock_t zs_accept(zs_sock_t s, void *addr, zs_socklen_t *length)

    long zs_recv(zs_sock_t s, void *buf, size_t length, int flags)
    long zs_send(zs_sock_t s, const void *buf, size_t length, int flags)
    long zs_recvfrom(zs_sock_t s, void *buf, size_t length, int flags,
                     void *addr, zs_socklen_t *addrlen)
    long zs_sendto(zs_sock_t s, const void *buf, size_t length, int flags,
                   const void *addr, zs_socklen_t addrlen)
    int zs_wait(zs_sock_t s, int writing, int timeout_ms)
    int zs_connect_result(zs_sock_t s, int *result)
