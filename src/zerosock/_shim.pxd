# Declarations of csrc/zs_shim.h, the portable socket layer: Cython code calls
# these and carries no platform #ifdefs of its own.

cdef extern from "zs_shim.h" nogil:
    ctypedef long zs_sock_t
    ctypedef unsigned int zs_socklen_t
    ctypedef unsigned short sa_family_t

    ctypedef struct zs_iovec:
        pass

    ctypedef struct zs_pollfd:
        zs_sock_t fd
        short events
        short revents

    struct sockaddr:
        sa_family_t sa_family

    struct sockaddr_storage:
        sa_family_t ss_family

    struct in_addr:
        unsigned int s_addr

    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr

    struct in6_addr:
        pass

    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id

    struct sockaddr_un:
        sa_family_t sun_family
        char sun_path[1]

    ctypedef struct zs_msghdr:
        void *msg_name
        zs_socklen_t msg_namelen
        zs_iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    ctypedef struct zs_mmsghdr:
        zs_msghdr msg_hdr
        unsigned int msg_len

    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type

    const int AF_INET
    const int AF_INET6
    const int AF_UNIX
    const int INET6_ADDRSTRLEN
    const unsigned int INADDR_ANY
    const unsigned int INADDR_BROADCAST
    const int SOL_SOCKET
    const int SO_ERROR
    const int MSG_CTRUNC

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
    const int ZS_ECONNRESET
    const int ZS_MSG_DONTWAIT
    const int ZS_MSG_WAITALL
    const int ZS_HAVE_MSG_DONTWAIT
    const int ZS_HAVE_MSG
    const int ZS_HAVE_MMSG
    const int ZS_HAVE_ABSTRACT_UNIX
    const size_t ZS_MAX_IO_LEN

    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)
    unsigned int htonl(unsigned int)
    unsigned int ntohl(unsigned int)
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, zs_socklen_t size)

    int zs_last_error()
    int zs_python_errno(int code)
    void zs_set_last_error(int code)
    const char *zs_strerror(int code)
    int zs_is_would_block(int err)
    double zs_monotonic()
    int zs_close(zs_sock_t s)
    int zs_set_nonblocking(zs_sock_t s, int on)
    void zs_iov_set(zs_iovec *v, void *base, size_t length)
    size_t zs_iov_consume(zs_iovec *v, size_t n, size_t done)
    int zs_poll(zs_pollfd *fds, unsigned long n, int timeout_ms)
    int zs_startup()

    zs_sock_t zs_socket(int family, int type, int proto)
    int zs_socketpair(int family, int type, int proto, zs_sock_t out[2])
    zs_sock_t zs_accept(zs_sock_t s, sockaddr *addr, zs_socklen_t *length)
    zs_sock_t zs_accept_nonblocking(zs_sock_t s, sockaddr *addr, zs_socklen_t *length)

    long zs_recv(zs_sock_t s, void *buf, size_t length, int flags)
    long zs_send(zs_sock_t s, const void *buf, size_t length, int flags)
    long zs_recvfrom(zs_sock_t s, void *buf, size_t length, int flags,
                     sockaddr *addr, zs_socklen_t *addrlen)
    long zs_sendto(zs_sock_t s, const void *buf, size_t length, int flags,
                   const sockaddr *addr, zs_socklen_t addrlen)
    long zs_sendmsg(zs_sock_t s, const zs_msghdr *msg, int flags)
    long zs_recvmsg(zs_sock_t s, zs_msghdr *msg, int flags)
    int zs_recvmmsg(zs_sock_t s, zs_mmsghdr *vec, unsigned int n, int flags, int wait_first)
    int zs_sendmmsg(zs_sock_t s, zs_mmsghdr *vec, unsigned int n, int flags)
    long zs_sendv(zs_sock_t s, zs_iovec *iov, size_t n, int flags)
    long zs_recvv(zs_sock_t s, zs_iovec *iov, size_t n, int flags)
    int zs_get_inheritable(zs_sock_t s)
    int zs_wait(zs_sock_t s, int writing, int timeout_ms)
    int zs_connect_result(zs_sock_t s, int *result)

    size_t zs_cmsg_space(size_t length)
    size_t zs_cmsg_len(size_t length)
    cmsghdr *zs_cmsg_first(zs_msghdr *m)
    cmsghdr *zs_cmsg_next(zs_msghdr *m, cmsghdr *c)
    unsigned char *zs_cmsg_data(cmsghdr *c)

    # the plain calls the shim does not need to wrap
    int bind(zs_sock_t s, const sockaddr *addr, zs_socklen_t length)
    int connect(zs_sock_t s, const sockaddr *addr, zs_socklen_t length)
    int listen(zs_sock_t s, int backlog)
    int shutdown(zs_sock_t s, int how)
    int getsockname(zs_sock_t s, sockaddr *addr, zs_socklen_t *length)
    int getpeername(zs_sock_t s, sockaddr *addr, zs_socklen_t *length)
    int getsockopt(zs_sock_t s, int level, int name, void *value, zs_socklen_t *length)
    int setsockopt(zs_sock_t s, int level, int name, const void *value, zs_socklen_t length)


cdef extern from "Python.h":
    void *_set_from_errno "PyErr_SetFromErrno"(object exc_type) noexcept

cdef extern from "errno.h":
    int errno


cdef inline int set_os_error(int code) noexcept:
    """Set (not raise) the OSError subclass the standard library raises for
    ``code`` and return -1.  Setting it through the C API keeps Cython from
    adding a traceback entry per frame, which would cost more than the
    syscall on hot error paths such as would-block.  (On Windows the codes
    are WSA values; zs_python_errno() gives the errno CPython's own socket
    module would report for them, see csrc/zs_errors.h.)"""
    global errno
    errno = zs_python_errno(code)
    _set_from_errno(OSError)
    return -1


cdef inline int raise_os_error(int code) except -1:
    """Raise the OSError subclass the standard library raises for ``code``."""
    return set_os_error(code)
