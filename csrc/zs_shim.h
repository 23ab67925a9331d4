/*
 * zs_shim.h -- the portable layer under zerosock's Cython code.
 *
 * One place hides what differs between BSD sockets and Winsock: the handle
 * type, the last error and its would-block / interrupted codes, closing,
 * non-blocking mode, the scatter/gather vector, close-on-exec creation and
 * batch datagram calls.  Cython code calls these and never #ifdefs itself.
 * Every function returns the syscall's own result; on failure the caller
 * reads zs_last_error(), an errno value (on Windows a WSA code, which is what
 * Python's errno module uses for socket errors there).
 */
#ifndef ZS_SHIM_H
#define ZS_SHIM_H

/* accept4, recvmmsg and sendmmsg are GNU extensions in glibc's headers;
 * Python.h asks for them too, so this only matters for C-only users. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1
#endif

#include <stddef.h>
#include <string.h>
#include <errno.h>
#include <limits.h>

#ifdef _WIN32
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <winsock2.h>
#  include <ws2tcpip.h>
#  include <afunix.h>
#else
#  include <sys/types.h>
#  include <sys/socket.h>
#  include <sys/uio.h>
#  include <sys/un.h>
#  include <netinet/in.h>
#  include <netinet/tcp.h>
#  include <arpa/inet.h>
#  include <poll.h>
#  include <fcntl.h>
#  include <unistd.h>
#endif

#include "zs_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* handle, errors, vectors                                             */
/* ------------------------------------------------------------------ */

#ifdef _WIN32
typedef SOCKET zs_sock_t;
typedef ADDRESS_FAMILY sa_family_t; /* POSIX's name; Winsock has none */
typedef WSABUF zs_iovec;
typedef int zs_socklen_t;
typedef WSAPOLLFD zs_pollfd;
#  define ZS_INVALID_SOCKET INVALID_SOCKET
#  define ZS_SOCKET_ERROR SOCKET_ERROR
#  define ZS_EWOULDBLOCK WSAEWOULDBLOCK
#  define ZS_EAGAIN WSAEWOULDBLOCK
#  define ZS_EINTR WSAEINTR
#  define ZS_EINPROGRESS WSAEWOULDBLOCK /* a non-blocking connect() says this */
#  define ZS_EBADF WSAENOTSOCK
#  define ZS_EINVAL WSAEINVAL
#  define ZS_ENOTSUP WSAEOPNOTSUPP
#  define ZS_EMSGSIZE WSAEMSGSIZE
#  define ZS_ENOBUFS WSAENOBUFS
#  define ZS_ECONNRESET WSAECONNRESET
#  define ZS_MSG_DONTWAIT 0
#  define ZS_HAVE_MSG_DONTWAIT 0
#  define ZS_SHUT_RDWR SD_BOTH
#  ifndef MSG_CTRUNC
#    define MSG_CTRUNC 0x0200 /* mingw-w64 has it in mswsock.h only */
#  endif
static inline int zs_last_error(void) { return WSAGetLastError(); }
static inline void zs_set_last_error(int code) { WSASetLastError(code); }
static inline int zs_close(zs_sock_t s) { return closesocket(s); }
static inline void zs_iov_set(zs_iovec *v, void *base, size_t len)
{
    v->buf = (char *)base;
    v->len = (ULONG)len;
}
static inline int zs_set_nonblocking(zs_sock_t s, int on)
{
    u_long arg = on ? 1 : 0;
    return ioctlsocket(s, FIONBIO, &arg);
}
static inline int zs_poll(zs_pollfd *fds, unsigned long n, int timeout_ms)
{
    return WSAPoll(fds, n, timeout_ms);
}
#else
typedef int zs_sock_t;
typedef struct iovec zs_iovec;
typedef socklen_t zs_socklen_t;
typedef struct pollfd zs_pollfd;
#  define ZS_INVALID_SOCKET (-1)
#  define ZS_SOCKET_ERROR (-1)
#  define ZS_EWOULDBLOCK EWOULDBLOCK
#  define ZS_EAGAIN EAGAIN
#  define ZS_EINTR EINTR
#  define ZS_EINPROGRESS EINPROGRESS
#  define ZS_EBADF EBADF
#  define ZS_EINVAL EINVAL
#  define ZS_ENOTSUP EOPNOTSUPP
#  define ZS_EMSGSIZE EMSGSIZE
#  define ZS_ENOBUFS ENOBUFS
#  define ZS_ECONNRESET ECONNRESET
#  ifdef MSG_DONTWAIT
#    define ZS_MSG_DONTWAIT MSG_DONTWAIT
#    define ZS_HAVE_MSG_DONTWAIT 1
#  else
#    define ZS_MSG_DONTWAIT 0
#    define ZS_HAVE_MSG_DONTWAIT 0
#  endif
#  define ZS_SHUT_RDWR SHUT_RDWR
static inline int zs_last_error(void) { return errno; }
static inline void zs_set_last_error(int code) { errno = code; }
static inline int zs_close(zs_sock_t s) { return close(s); }
static inline void zs_iov_set(zs_iovec *v, void *base, size_t len)
{
    v->iov_base = base;
    v->iov_len = len;
}
static inline int zs_set_nonblocking(zs_sock_t s, int on)
{
    int flags = fcntl(s, F_GETFL, 0);
    if (flags < 0)
        return -1;
    int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (wanted == flags)
        return 0;
    return fcntl(s, F_SETFL, wanted);
}
static inline int zs_poll(zs_pollfd *fds, unsigned long n, int timeout_ms)
{
    return poll(fds, (nfds_t)n, timeout_ms);
}
#endif

#ifdef MSG_WAITALL
#  define ZS_MSG_WAITALL MSG_WAITALL
#else
#  define ZS_MSG_WAITALL 0
#endif

/* True for the codes that mean "try again when the socket is ready". */
static inline int zs_is_would_block(int err)
{
    return err == ZS_EWOULDBLOCK || err == ZS_EAGAIN;
}

/* Largest byte count one send/recv call takes (Winsock lengths are int). */
#ifdef _WIN32
#  define ZS_MAX_IO_LEN ((size_t)INT_MAX)
#else
#  define ZS_MAX_IO_LEN ((size_t)SSIZE_MAX)
#endif

static inline size_t zs_clamp_io_len(size_t n)
{
    return n > ZS_MAX_IO_LEN ? ZS_MAX_IO_LEN : n;
}

/* Drop the first `done` bytes from an iovec array in place, after a partial
 * gather send; returns the number of vectors left. */
static inline size_t zs_iov_consume(zs_iovec *v, size_t n, size_t done)
{
    size_t i = 0;
#ifdef _WIN32
    while (i < n && done >= v[i].len) { done -= v[i].len; i++; }
    if (i < n) { v[i].buf += done; v[i].len -= (ULONG)done; }
#else
    while (i < n && done >= v[i].iov_len) { done -= v[i].iov_len; i++; }
    if (i < n) { v[i].iov_base = (char *)v[i].iov_base + done; v[i].iov_len -= done; }
#endif
    if (i > 0 && i < n)
        memmove(v, v + i, (n - i) * sizeof(*v));
    return n - i;
}

/* Winsock needs WSAStartup() once per process; POSIX needs nothing. */
static inline int zs_startup(void)
{
#ifdef _WIN32
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data);
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ */
/* creation with close-on-exec                                         */
/* ------------------------------------------------------------------ */

static inline zs_sock_t zs_socket(int family, int type, int proto)
{
#ifdef _WIN32
    return WSASocketW(family, type, proto, NULL, 0,
                      WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
#elif defined(SOCK_CLOEXEC)
    return socket(family, type | SOCK_CLOEXEC, proto);
#else
    zs_sock_t s = socket(family, type, proto);
    if (s >= 0)
        (void)fcntl(s, F_SETFD, FD_CLOEXEC);
    return s;
#endif
}

static inline int zs_socketpair(int family, int type, int proto, zs_sock_t out[2])
{
#ifdef _WIN32
    (void)family; (void)type; (void)proto; (void)out;
    WSASetLastError(WSAEOPNOTSUPP);
    return -1;
#elif defined(SOCK_CLOEXEC)
    return socketpair(family, type | SOCK_CLOEXEC, proto, out);
#else
    int rc = socketpair(family, type, proto, out);
    if (rc == 0) {
        (void)fcntl(out[0], F_SETFD, FD_CLOEXEC);
        (void)fcntl(out[1], F_SETFD, FD_CLOEXEC);
    }
    return rc;
#endif
}

/* accept() whose new descriptor is close-on-exec and blocking. */
/* accept(), the new socket not inheritable and blocking or not as asked, in
 * one call where the system has accept4(). */
static inline zs_sock_t zs_accept_as(zs_sock_t s, struct sockaddr *addr, zs_socklen_t *len,
                                     int nonblocking)
{
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    return accept4(s, addr, len, SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0));
#elif defined(_WIN32)
    /* An accepted socket copies the listener's attributes: set both, as
     * CPython does. */
    zs_sock_t c = accept(s, addr, len);
    if (c != INVALID_SOCKET) {
        (void)SetHandleInformation((HANDLE)c, HANDLE_FLAG_INHERIT, 0);
        (void)zs_set_nonblocking(c, nonblocking);
    }
    return c;
#else
    zs_sock_t c = accept(s, addr, len);
    if (c >= 0) {
        (void)fcntl(c, F_SETFD, FD_CLOEXEC);
        (void)zs_set_nonblocking(c, nonblocking); /* BSD accept() inherits O_NONBLOCK */
    }
    return c;
#endif
}

/* accept() as socket.accept(): a blocking socket. */
static inline zs_sock_t zs_accept(zs_sock_t s, struct sockaddr *addr, zs_socklen_t *len)
{
    return zs_accept_as(s, addr, len, 0);
}

/* accept() for an event loop: a non-blocking socket. */
static inline zs_sock_t zs_accept_nonblocking(zs_sock_t s, struct sockaddr *addr, zs_socklen_t *len)
{
    return zs_accept_as(s, addr, len, 1);
}

/* 1 if a child process would inherit `s`, 0 if not, -1 on error. */
static inline int zs_get_inheritable(zs_sock_t s)
{
#ifdef _WIN32
    DWORD flags;
    if (!GetHandleInformation((HANDLE)s, &flags)) {
        zs_set_last_error((int)GetLastError());
        return -1;
    }
    return (flags & HANDLE_FLAG_INHERIT) != 0;
#else
    int flags = fcntl(s, F_GETFD);
    if (flags < 0)
        return -1;
    return (flags & FD_CLOEXEC) == 0;
#endif
}

/* ------------------------------------------------------------------ */
/* data transfer                                                       */
/* ------------------------------------------------------------------ */

static inline long zs_recv(zs_sock_t s, void *buf, size_t len, int flags)
{
    return (long)recv(s, (char *)buf, (int)zs_clamp_io_len(len), flags);
}

static inline long zs_send(zs_sock_t s, const void *buf, size_t len, int flags)
{
#ifdef MSG_NOSIGNAL
    flags |= MSG_NOSIGNAL; /* a broken pipe is an EPIPE, never a SIGPIPE */
#endif
    return (long)send(s, (const char *)buf, (int)zs_clamp_io_len(len), flags);
}

static inline long zs_recvfrom(zs_sock_t s, void *buf, size_t len, int flags,
                               struct sockaddr *addr, zs_socklen_t *addrlen)
{
    return (long)recvfrom(s, (char *)buf, (int)zs_clamp_io_len(len), flags, addr, addrlen);
}

static inline long zs_sendto(zs_sock_t s, const void *buf, size_t len, int flags,
                             const struct sockaddr *addr, zs_socklen_t addrlen)
{
#ifdef MSG_NOSIGNAL
    flags |= MSG_NOSIGNAL;
#endif
    return (long)sendto(s, (const char *)buf, (int)zs_clamp_io_len(len), flags, addr, addrlen);
}

/* Gather send and scatter receive on a connected socket, on every platform:
 * WSASend/WSARecv on Windows, sendmsg/recvmsg without a name or ancillary
 * data on POSIX.  Return the byte count, or -1 with zs_last_error() set.
 * (A datagram larger than the buffers is an EMSGSIZE error on Windows, a
 * silently truncated read on POSIX, as with recv() on each.) */
static inline long zs_sendv(zs_sock_t s, zs_iovec *iov, size_t n, int flags)
{
#ifdef _WIN32
    DWORD sent = 0;
    if (n > ULONG_MAX)
        n = ULONG_MAX;
    if (WSASend(s, iov, (DWORD)n, &sent, (DWORD)flags, NULL, NULL) != 0)
        return -1;
    return (long)sent;
#else
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    m.msg_iovlen = n;
#  ifdef MSG_NOSIGNAL
    flags |= MSG_NOSIGNAL;
#  endif
    return (long)sendmsg(s, &m, flags);
#endif
}

static inline long zs_recvv(zs_sock_t s, zs_iovec *iov, size_t n, int flags)
{
#ifdef _WIN32
    DWORD got = 0, fl = (DWORD)flags;
    if (n > ULONG_MAX)
        n = ULONG_MAX;
    if (WSARecv(s, iov, (DWORD)n, &got, &fl, NULL, NULL) != 0)
        return -1;
    return (long)got;
#else
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    m.msg_iovlen = n;
    return (long)recvmsg(s, &m, flags);
#endif
}

/* Wait until `s` is readable (writing == 0) or writable; 1 ready, 0 timed out,
 * -1 error.  A negative timeout waits forever. */
static inline int zs_wait(zs_sock_t s, int writing, int timeout_ms)
{
#ifdef _WIN32
    /* select(), as CPython does here: a failed non-blocking connect() shows
     * only in the exception set, and WSAPoll() before Windows 10 2004 never
     * reports it at all.  One socket per set, so FD_SETSIZE is no limit. */
    fd_set set, err;
    struct timeval tv, *tvp = NULL;
    FD_ZERO(&set);
    FD_ZERO(&err);
    FD_SET(s, &set);
    FD_SET(s, &err);
    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    int rc = select(0, writing ? NULL : &set, writing ? &set : NULL, &err, tvp);
    return rc > 0 ? 1 : rc;
#else
    zs_pollfd p;
    p.fd = s;
    p.events = writing ? POLLOUT : POLLIN;
    p.revents = 0;
    int rc = zs_poll(&p, 1, timeout_ms);
    return rc > 0 ? 1 : rc;
#endif
}

/* The error a non-blocking connect() finished with (0 on success). */
static inline int zs_connect_result(zs_sock_t s, int *result)
{
    zs_socklen_t len = (zs_socklen_t)sizeof(*result);
    return getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)result, &len);
}

/* ------------------------------------------------------------------ */
/* time and error text                                                 */
/* ------------------------------------------------------------------ */

#ifndef _WIN32
#  include <time.h>
#endif

/* Seconds on a monotonic clock, for deadlines. */
static inline double zs_monotonic(void)
{
#ifdef _WIN32
    LARGE_INTEGER freq, now;
    QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (double)now.QuadPart / (double)freq.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}

#if defined(_MSC_VER)
#  define ZS_THREAD_LOCAL __declspec(thread)
#else
#  define ZS_THREAD_LOCAL __thread
#endif

/* Text for an error code from zs_last_error(). */
static inline const char *zs_strerror(int code)
{
#ifdef _WIN32
    static ZS_THREAD_LOCAL char text[256];
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                             NULL, (DWORD)code, 0, text, sizeof(text), NULL);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == '.'))
        text[--n] = '\0';
    return n ? text : "Unknown error";
#else
    return strerror(code);
#endif
}

/* ------------------------------------------------------------------ */
/* scatter/gather messages and batches of datagrams                    */
/* ------------------------------------------------------------------ */

#ifdef _WIN32
/* Winsock has no sendmsg/recvmsg; the same fields let the batch fallback
 * below (one datagram per call) run there. */
typedef struct zs_msghdr {
    void *msg_name;
    int msg_namelen;
    zs_iovec *msg_iov;
    size_t msg_iovlen;
    void *msg_control;
    size_t msg_controllen;
    int msg_flags;
} zs_msghdr;
#  define ZS_HAVE_MSG 0
#else
typedef struct msghdr zs_msghdr;
#  define ZS_HAVE_MSG 1
#endif

/* Linux's abstract AF_UNIX namespace: a path that starts with NUL, or is
 * empty (bind() then picks a name), is passed without a terminator. */
#if defined(__linux__)
#  define ZS_HAVE_ABSTRACT_UNIX 1
#else
#  define ZS_HAVE_ABSTRACT_UNIX 0
#endif

#if defined(__linux__)
typedef struct mmsghdr zs_mmsghdr;
#  define ZS_HAVE_MMSG 1
#else
typedef struct zs_mmsghdr {
    zs_msghdr msg_hdr;
    unsigned int msg_len;
} zs_mmsghdr;
#  define ZS_HAVE_MMSG 0
#endif

static inline long zs_sendmsg(zs_sock_t s, const zs_msghdr *msg, int flags)
{
#if ZS_HAVE_MSG
#  ifdef MSG_NOSIGNAL
    flags |= MSG_NOSIGNAL;
#  endif
    return (long)sendmsg(s, msg, flags);
#else
    (void)s; (void)msg; (void)flags;
    zs_set_last_error(ZS_ENOTSUP);
    return -1;
#endif
}

static inline long zs_recvmsg(zs_sock_t s, zs_msghdr *msg, int flags)
{
#if ZS_HAVE_MSG
    return (long)recvmsg(s, msg, flags);
#else
    (void)s; (void)msg; (void)flags;
    zs_set_last_error(ZS_ENOTSUP);
    return -1;
#endif
}

/* Receive up to n datagrams, each into vec[i].msg_hdr's first iovec.  With
 * wait_first, block for the first and take only what is queued after it.
 * Returns the count received, or -1 with the error of the first call. */
static inline int zs_recvmmsg(zs_sock_t s, zs_mmsghdr *vec, unsigned int n, int flags,
                              int wait_first)
{
#if ZS_HAVE_MMSG
    return recvmmsg(s, vec, n, flags | (wait_first ? MSG_WAITFORONE : 0), NULL);
#else
    unsigned int i;
    for (i = 0; i < n; i++) {
        zs_msghdr *h = &vec[i].msg_hdr;
        int f = flags | (i > 0 ? ZS_MSG_DONTWAIT : 0);
        zs_socklen_t alen = (zs_socklen_t)h->msg_namelen;
        long r;
        if (i > 0 && !ZS_HAVE_MSG_DONTWAIT && zs_wait(s, 0, 0) != 1)
            break;
#ifdef _WIN32
        r = zs_recvfrom(s, h->msg_iov[0].buf, h->msg_iov[0].len, f,
                        (struct sockaddr *)h->msg_name, &alen);
#else
        r = zs_recvfrom(s, h->msg_iov[0].iov_base, h->msg_iov[0].iov_len, f,
                        (struct sockaddr *)h->msg_name, &alen);
#endif
        if (r < 0) {
            if (i > 0)
                break;
            return -1;
        }
        h->msg_namelen = alen;
        h->msg_flags = 0;
        vec[i].msg_len = (unsigned int)r;
    }
    (void)wait_first;
    return (int)i;
#endif
}

/* Send n datagrams; returns the count sent (stops at the first failure after
 * at least one was sent), or -1 with the error of the first. */
static inline int zs_sendmmsg(zs_sock_t s, zs_mmsghdr *vec, unsigned int n, int flags)
{
#if ZS_HAVE_MMSG
    return sendmmsg(s, vec, n, flags | MSG_NOSIGNAL);
#else
    unsigned int i;
    for (i = 0; i < n; i++) {
        zs_msghdr *h = &vec[i].msg_hdr;
        long r;
#ifdef _WIN32
        r = zs_sendto(s, h->msg_iov[0].buf, h->msg_iov[0].len, flags,
                      (const struct sockaddr *)h->msg_name, (zs_socklen_t)h->msg_namelen);
#else
        r = zs_sendto(s, h->msg_iov[0].iov_base, h->msg_iov[0].iov_len, flags,
                      (const struct sockaddr *)h->msg_name, (zs_socklen_t)h->msg_namelen);
#endif
        if (r < 0) {
            if (i > 0)
                break;
            return -1;
        }
        vec[i].msg_len = (unsigned int)r;
    }
    return (int)i;
#endif
}

/* Ancillary data (POSIX only): the CMSG macros as functions for Cython. */
#if ZS_HAVE_MSG
static inline size_t zs_cmsg_space(size_t len) { return CMSG_SPACE(len); }
static inline size_t zs_cmsg_len(size_t len) { return CMSG_LEN(len); }
static inline struct cmsghdr *zs_cmsg_first(zs_msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *zs_cmsg_next(zs_msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *zs_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }
#else
struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; };
static inline size_t zs_cmsg_space(size_t len) { return len + sizeof(struct cmsghdr); }
static inline size_t zs_cmsg_len(size_t len) { return len + sizeof(struct cmsghdr); }
static inline struct cmsghdr *zs_cmsg_first(zs_msghdr *m) { (void)m; return NULL; }
static inline struct cmsghdr *zs_cmsg_next(zs_msghdr *m, struct cmsghdr *c) { (void)m; (void)c; return NULL; }
static inline unsigned char *zs_cmsg_data(struct cmsghdr *c) { return (unsigned char *)(c + 1); }
#endif

#ifdef __cplusplus
}
#endif

#endif /* ZS_SHIM_H */
