/*
 * zs_shim_test.c -- drives csrc/zs_shim.h and csrc/zs_poller.h the way the
 * Cython layer does, so the same checks run on Linux (system compiler) and
 * on Windows (mingw-w64, run under wine or natively).  tools/test_shim.sh
 * builds and runs it; exit status 0 means every check passed.
 *
 * Platform #ifdefs here are limited to what a test needs to set up (receive
 * timeouts, descriptor limits) and to what each platform must report
 * differently (sendmsg exists on POSIX only).
 */
#include "zs_poller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#  include <sys/resource.h>
#  include <sys/time.h>
#endif

static int checks, failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s -- ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, " (last error %d: %s)\n", zs_last_error(),     \
                    zs_strerror(zs_last_error()));                         \
        }                                                                  \
    } while (0)

#define SECTION(name) printf("-- %s\n", name)

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static struct sockaddr_in loopback(unsigned short port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static unsigned short port_of(zs_sock_t s)
{
    struct sockaddr_in a;
    zs_socklen_t len = (zs_socklen_t)sizeof(a);
    if (getsockname(s, (struct sockaddr *)&a, &len) != 0)
        return 0;
    return ntohs(a.sin_port);
}

static zs_sock_t tcp_listener(void)
{
    zs_sock_t s = zs_socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    if (s == ZS_INVALID_SOCKET)
        return s;
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 128) != 0) {
        zs_close(s);
        return ZS_INVALID_SOCKET;
    }
    return s;
}

/* A connected pair through `listener`: *client from connect(), *server from
 * zs_accept(). */
static int tcp_pair(zs_sock_t listener, zs_sock_t *client, zs_sock_t *server)
{
    struct sockaddr_in a = loopback(port_of(listener));
    *client = zs_socket(AF_INET, SOCK_STREAM, 0);
    if (*client == ZS_INVALID_SOCKET)
        return -1;
    if (connect(*client, (struct sockaddr *)&a, sizeof(a)) != 0) {
        zs_close(*client);
        return -1;
    }
    *server = zs_accept(listener, NULL, NULL);
    if (*server == ZS_INVALID_SOCKET) {
        zs_close(*client);
        return -1;
    }
    return 0;
}

static zs_sock_t udp_socket(void)
{
    zs_sock_t s = zs_socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = loopback(0);
    if (s != ZS_INVALID_SOCKET && bind(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        zs_close(s);
        return ZS_INVALID_SOCKET;
    }
    return s;
}

static int set_recv_timeout(zs_sock_t s, int ms)
{
#ifdef _WIN32
    DWORD v = (DWORD)ms;
#else
    struct timeval v;
    v.tv_sec = ms / 1000;
    v.tv_usec = (ms % 1000) * 1000;
#endif
    return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&v, sizeof(v));
}

/* Receive exactly `len` bytes, waiting up to a few seconds. */
static long recv_all(zs_sock_t s, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        if (zs_wait(s, 0, 5000) != 1)
            return -1;
        long n = zs_recv(s, buf + got, len - got, 0);
        if (n <= 0)
            return n < 0 ? -1 : (long)got;
        got += (size_t)n;
    }
    return (long)got;
}

/* Whether this Windows build runs under wine, which some checks allow for. */
static int under_wine(void)
{
#ifdef _WIN32
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ */
/* the error table                                                     */
/* ------------------------------------------------------------------ */

/* CPython's errnomap (Objects/exceptions.c) as it is built on Windows: the
 * errno values that select an OSError subclass there.  The CRT values come
 * from MSVC's errno.h; the socket ones are the WSA codes CPython redefines
 * them to. */
static const char *cpython_windows_class(int py_errno)
{
    switch (py_errno) {
    case 11: case 10035: case 10036: case 10037: return "BlockingIOError"; /* EAGAIN, EWOULDBLOCK, EINPROGRESS, EALREADY */
    case 32: case 10058: return "BrokenPipeError";                      /* EPIPE, ESHUTDOWN */
    case 10: return "ChildProcessError";
    case 10053: return "ConnectionAbortedError";
    case 10061: return "ConnectionRefusedError";
    case 10054: return "ConnectionResetError";
    case 17: return "FileExistsError";
    case 2: return "FileNotFoundError";
    case 21: return "IsADirectoryError";
    case 20: return "NotADirectoryError";
    case 4: return "InterruptedError";
    case 1: case 13: return "PermissionError";                          /* EPERM, EACCES */
    case 3: return "ProcessLookupError";
    case 138: case 10060: return "TimeoutError";                        /* ETIMEDOUT, WSAETIMEDOUT */
    default: return "OSError";
    }
}

/* CPython's winerror_to_errno() (PC/errmap.h) for Winsock codes. */
static int cpython_winerror_to_errno(int code)
{
    switch (code) {
    case 10004: case 10009: case 10013: case 10014: case 10022: case 10024:
        return code - 10000;
    default:
        return code;
    }
}

struct error_row {
    int code;
    const char *name;
    int py_errno;
    const char *errno_name;
    const char *exc;
};

#define ZS_TEST_ROW(code, name, py_errno, errno_name, exc) {code, name, py_errno, errno_name, exc},
static const struct error_row error_rows[] = {ZS_WINSOCK_ERRORS(ZS_TEST_ROW)};
#undef ZS_TEST_ROW

#ifdef _WIN32
/* The table's codes, spelled with the Winsock headers' own names. */
#  define WSA_NAMED(sym) {sym, #sym}
static const struct { int code; const char *name; } winsock_names[] = {
    WSA_NAMED(WSAEINTR), WSA_NAMED(WSAEBADF), WSA_NAMED(WSAEACCES), WSA_NAMED(WSAEFAULT),
    WSA_NAMED(WSAEINVAL), WSA_NAMED(WSAEMFILE), WSA_NAMED(WSAEWOULDBLOCK),
    WSA_NAMED(WSAEINPROGRESS), WSA_NAMED(WSAEALREADY), WSA_NAMED(WSAENOTSOCK),
    WSA_NAMED(WSAEDESTADDRREQ), WSA_NAMED(WSAEMSGSIZE), WSA_NAMED(WSAEPROTOTYPE),
    WSA_NAMED(WSAENOPROTOOPT), WSA_NAMED(WSAEPROTONOSUPPORT), WSA_NAMED(WSAESOCKTNOSUPPORT),
    WSA_NAMED(WSAEOPNOTSUPP), WSA_NAMED(WSAEPFNOSUPPORT), WSA_NAMED(WSAEAFNOSUPPORT),
    WSA_NAMED(WSAEADDRINUSE), WSA_NAMED(WSAEADDRNOTAVAIL), WSA_NAMED(WSAENETDOWN),
    WSA_NAMED(WSAENETUNREACH), WSA_NAMED(WSAENETRESET), WSA_NAMED(WSAECONNABORTED),
    WSA_NAMED(WSAECONNRESET), WSA_NAMED(WSAENOBUFS), WSA_NAMED(WSAEISCONN),
    WSA_NAMED(WSAENOTCONN), WSA_NAMED(WSAESHUTDOWN), WSA_NAMED(WSAETOOMANYREFS),
    WSA_NAMED(WSAETIMEDOUT), WSA_NAMED(WSAECONNREFUSED), WSA_NAMED(WSAELOOP),
    WSA_NAMED(WSAENAMETOOLONG), WSA_NAMED(WSAEHOSTDOWN), WSA_NAMED(WSAEHOSTUNREACH),
    WSA_NAMED(WSANOTINITIALISED), WSA_NAMED(WSAEDISCON),
};
#endif

/* Every code the shim's own ZS_E* constants stand for is a table row. */
static int in_table(int code)
{
    for (size_t i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++)
        if (error_rows[i].code == code)
            return 1;
    return 0;
}

static void test_error_table(void)
{
    SECTION("error table");
    size_t n = sizeof(error_rows) / sizeof(error_rows[0]);
    CHECK(n >= 39, "%u rows", (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        const struct error_row *r = &error_rows[i];
        /* The Python errno is what CPython's socket module derives... */
        CHECK(r->py_errno == cpython_winerror_to_errno(r->code), "%s: %d", r->name, r->py_errno);
        /* ...which selects the subclass the table promises... */
        CHECK(strcmp(cpython_windows_class(r->py_errno), r->exc) == 0, "%s: %s vs %s",
              r->name, cpython_windows_class(r->py_errno), r->exc);
        /* ...and the names pair up: WSAEXXX beside EXXX. */
        CHECK(r->errno_name[0] == '\0' || strcmp(r->name + 3, r->errno_name) == 0,
              "%s beside %s", r->name, r->errno_name);
        for (size_t j = 0; j < i; j++)
            CHECK(error_rows[j].code != r->code, "%s twice", r->name);
#ifdef _WIN32
        CHECK(zs_python_errno(r->code) == r->py_errno, "%s -> %d", r->name, zs_python_errno(r->code));
        int named = 0;
        for (size_t j = 0; j < sizeof(winsock_names) / sizeof(winsock_names[0]); j++)
            if (winsock_names[j].code == r->code) {
                named = 1;
                CHECK(strcmp(winsock_names[j].name, r->name) == 0, "%d is %s, not %s",
                      r->code, winsock_names[j].name, r->name);
            }
        CHECK(named, "%s is not in the Winsock headers", r->name);
#else
        CHECK(zs_python_errno(r->code) == r->code, "POSIX codes pass unchanged");
#endif
    }
#ifdef _WIN32
    int shim_codes[] = {ZS_EWOULDBLOCK, ZS_EAGAIN, ZS_EINTR, ZS_EINPROGRESS, ZS_EBADF,
                        ZS_EINVAL, ZS_ENOTSUP, ZS_EMSGSIZE, ZS_ENOBUFS, ZS_ECONNRESET};
    for (size_t i = 0; i < sizeof(shim_codes) / sizeof(shim_codes[0]); i++)
        CHECK(in_table(shim_codes[i]), "ZS code %d has a row", shim_codes[i]);
    /* The would-block a Linux user catches as BlockingIOError. */
    CHECK(zs_python_errno(ZS_EWOULDBLOCK) == 10035, "EWOULDBLOCK");
    CHECK(zs_python_errno(ZS_EINTR) == 4, "EINTR -> InterruptedError");
    /* Codes outside the table (a CRT errno the poller sets) pass unchanged. */
    CHECK(zs_python_errno(ENOENT) == ENOENT, "ENOENT");
#else
    (void)in_table;
#endif
}

/* ------------------------------------------------------------------ */
/* TCP                                                                 */
/* ------------------------------------------------------------------ */

static void test_tcp(void)
{
    SECTION("tcp: connect, accept, blocking and non-blocking transfer");
    zs_sock_t l = tcp_listener(), c, s;
    CHECK(l != ZS_INVALID_SOCKET, "listener");
    CHECK(zs_get_inheritable(l) == 0, "zs_socket() creates non-inheritable sockets");
    CHECK(tcp_pair(l, &c, &s) == 0, "pair");
    CHECK(zs_get_inheritable(s) == 0, "zs_accept() returns non-inheritable sockets");

    char buf[64];
    CHECK(zs_send(c, "hello", 5, 0) == 5, "send");
    CHECK(recv_all(s, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "recv");

    /* would-block on an empty socket, as a code zs_is_would_block() knows */
    CHECK(zs_set_nonblocking(s, 1) == 0, "non-blocking on");
    CHECK(zs_set_nonblocking(s, 1) == 0, "non-blocking on twice");
    long n = zs_recv(s, buf, sizeof(buf), 0);
    int err = zs_last_error();
    CHECK(n < 0 && zs_is_would_block(err), "recv would block: %ld", n);
    CHECK(zs_python_errno(err) == (ZS_HAVE_MSG ? EWOULDBLOCK : 10035), "Python sees EWOULDBLOCK");
    CHECK(zs_wait(s, 0, 0) == 0, "not readable");
    CHECK(zs_wait(s, 1, 0) == 1, "writable");

    /* fill the pipe until the kernel says would-block */
    CHECK(zs_set_nonblocking(c, 1) == 0, "non-blocking client");
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    long total = 0;
    for (int i = 0; i < 10000; i++) {
        n = zs_send(c, chunk, sizeof(chunk), 0);
        if (n < 0)
            break;
        total += n;
    }
    CHECK(n < 0 && zs_is_would_block(zs_last_error()), "send would block after %ld bytes", total);
    CHECK(total > 0, "sent something first");
    CHECK(zs_wait(s, 0, 1000) == 1, "peer readable");
    /* drain it */
    long drained = 0;
    while (drained < total) {
        if (zs_wait(s, 0, 5000) != 1)
            break;
        n = zs_recv(s, chunk, sizeof(chunk), 0);
        if (n <= 0)
            break;
        drained += n;
    }
    CHECK(drained == total, "drained %ld of %ld", drained, total);
    CHECK(zs_set_nonblocking(c, 0) == 0 && zs_set_nonblocking(s, 0) == 0, "blocking again");

    /* zs_wait times out on an idle socket */
    double t0 = zs_monotonic();
    CHECK(zs_wait(s, 0, 60) == 0, "wait times out");
    double waited = zs_monotonic() - t0;
    CHECK(waited >= 0.04 && waited < 5.0, "waited %.3f s", waited);

    /* shutdown: the peer reads end of stream */
    CHECK(shutdown(c, ZS_SHUT_RDWR) == 0, "shutdown");
    CHECK(zs_wait(s, 0, 2000) == 1, "EOF is readable");
    CHECK(zs_recv(s, buf, sizeof(buf), 0) == 0, "EOF");
    zs_close(c);
    zs_close(s);

    SECTION("tcp: accept from a non-blocking listener gives a blocking socket");
    CHECK(zs_set_nonblocking(l, 1) == 0, "listener non-blocking");
    s = zs_accept(l, NULL, NULL);
    CHECK(s == ZS_INVALID_SOCKET && zs_is_would_block(zs_last_error()), "accept would block");
    c = zs_socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port_of(l));
    CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
    CHECK(zs_wait(l, 0, 2000) == 1, "listener readable");
    struct sockaddr_storage peer;
    zs_socklen_t plen = (zs_socklen_t)sizeof(peer);
    s = zs_accept(l, (struct sockaddr *)&peer, &plen);
    CHECK(s != ZS_INVALID_SOCKET, "accept");
    CHECK(peer.ss_family == AF_INET && plen == (zs_socklen_t)sizeof(struct sockaddr_in), "peer address");
    CHECK(zs_get_inheritable(s) == 0, "accepted socket not inheritable");
    /* A blocking socket waits out its receive timeout; a non-blocking one
     * fails at once. */
    CHECK(set_recv_timeout(s, 200) == 0, "SO_RCVTIMEO");
    t0 = zs_monotonic();
    n = zs_recv(s, buf, sizeof(buf), 0);
    waited = zs_monotonic() - t0;
    CHECK(n < 0 && waited >= 0.1, "accepted socket blocks: %ld after %.3f s", n, waited);
    zs_close(s);
    zs_close(c);
    zs_close(l);
}

/* ------------------------------------------------------------------ */
/* gather / scatter                                                    */
/* ------------------------------------------------------------------ */

static void test_vectors(void)
{
    SECTION("gather send and scatter receive");
    zs_sock_t l = tcp_listener(), c, s;
    CHECK(tcp_pair(l, &c, &s) == 0, "pair");

    char p1[] = "gather-", p2[] = "send-", p3[] = "works";
    zs_iovec out[3];
    zs_iov_set(&out[0], p1, 7);
    zs_iov_set(&out[1], p2, 5);
    zs_iov_set(&out[2], p3, 5);
    CHECK(zs_sendv(c, out, 3, 0) == 17, "zs_sendv");
    CHECK(zs_wait(s, 0, 2000) == 1, "readable");
    char a[10], b[32];
    memset(b, 0, sizeof(b));
    zs_iovec in[2];
    zs_iov_set(&in[0], a, sizeof(a));
    zs_iov_set(&in[1], b, sizeof(b));
    long got = 0;
    while (got < 17) {
        long n = zs_recvv(s, in, 2, 0);
        if (n <= 0)
            break;
        got += n;
        zs_iov_consume(in, 2, (size_t)n);
    }
    CHECK(got == 17, "zs_recvv got %ld", got);
    CHECK(memcmp(a, "gather-sen", 10) == 0 && memcmp(b, "d-works", 7) == 0, "scattered in order");

    /* what the Cython layer does after a partial gather send */
    zs_iovec v[3];
    zs_iov_set(&v[0], p1, 7);
    zs_iov_set(&v[1], p2, 5);
    zs_iov_set(&v[2], p3, 5);
    size_t left = zs_iov_consume(v, 3, 9);
    CHECK(left == 2, "two vectors left");
    CHECK(zs_sendv(c, v, left, 0) == 8, "the rest");
    char rest[8];
    CHECK(recv_all(s, rest, 8) == 8 && memcmp(rest, "nd-works", 8) == 0, "rest arrives");
    CHECK(zs_iov_consume(v, left, 8) == 0, "all consumed");

    /* sendmsg/recvmsg: POSIX has them; Windows says it does not, cleanly */
    zs_msghdr m;
    memset(&m, 0, sizeof(m));
    zs_iov_set(&out[0], p1, 7);
    m.msg_iov = out;
    m.msg_iovlen = 1;
#if ZS_HAVE_MSG
    CHECK(zs_sendmsg(c, &m, 0) == 7, "sendmsg");
    CHECK(recv_all(s, a, 7) == 7 && memcmp(a, "gather-", 7) == 0, "sendmsg data");
#else
    CHECK(zs_sendmsg(c, &m, 0) == -1 && zs_last_error() == ZS_ENOTSUP, "sendmsg not supported");
    CHECK(zs_last_error() == WSAEOPNOTSUPP && zs_python_errno(zs_last_error()) == 10045,
          "as WSAEOPNOTSUPP, errno.EOPNOTSUPP in Python");
    CHECK(zs_recvmsg(s, &m, 0) == -1 && zs_last_error() == ZS_ENOTSUP, "recvmsg not supported");
    zs_sock_t pair[2];
    CHECK(zs_socketpair(AF_INET, SOCK_STREAM, 0, pair) == -1 && zs_last_error() == ZS_ENOTSUP,
          "socketpair not supported");
    CHECK(zs_cmsg_first(&m) == NULL, "no ancillary data");
#endif
    zs_close(c);
    zs_close(s);
    zs_close(l);
}

/* ------------------------------------------------------------------ */
/* refused and reset                                                   */
/* ------------------------------------------------------------------ */

static void test_refused_and_reset(void)
{
    SECTION("connection refused (blocking and non-blocking) and reset");
    /* A bound socket that does not listen holds a port nobody accepts on. */
    zs_sock_t holder = zs_socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    CHECK(bind(holder, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
    a = loopback(port_of(holder));

    zs_sock_t c = zs_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) != 0, "blocking connect fails");
    int err = zs_last_error();
    CHECK(zs_python_errno(err) == (ZS_HAVE_MSG ? ECONNREFUSED : 10061), "ECONNREFUSED: %d", err);
    zs_close(c);

    c = zs_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(zs_set_nonblocking(c, 1) == 0, "non-blocking");
    int rc = connect(c, (struct sockaddr *)&a, sizeof(a));
    err = zs_last_error();
    if (rc != 0 && err == ZS_EINPROGRESS) {
        CHECK(zs_wait(c, 1, 5000) == 1, "a failed connect wakes a writer");
        int result = -1;
        CHECK(zs_connect_result(c, &result) == 0, "SO_ERROR");
        CHECK(zs_python_errno(result) == (ZS_HAVE_MSG ? ECONNREFUSED : 10061), "refused: %d", result);
    } else {
        CHECK(rc != 0 && zs_python_errno(err) == (ZS_HAVE_MSG ? ECONNREFUSED : 10061),
              "refused at once: %d", err);
    }
    zs_close(c);
    zs_close(holder);

    zs_sock_t l = tcp_listener(), s;
    CHECK(tcp_pair(l, &c, &s) == 0, "pair");
    struct linger lin;
    lin.l_onoff = 1;
    lin.l_linger = 0;
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&lin, sizeof(lin)) == 0, "SO_LINGER 0");
    /* Closing with unread data aborts the connection too: wine passes the
     * close to the host kernel but not the zero linger, so this is what
     * makes the reset there. */
    CHECK(zs_send(c, "unread", 6, 0) == 6, "send data the peer never reads");
    CHECK(zs_wait(s, 0, 2000) == 1, "it arrived");
    zs_close(s); /* sends RST */
    CHECK(zs_wait(c, 0, 2000) == 1, "reset wakes a reader");
    char buf[8];
    long n = zs_recv(c, buf, sizeof(buf), 0);
    err = zs_last_error();
    if (n == 0 && under_wine()) {
        /* wine (8.0) reports a reset to recv() as end of stream; send()
         * still sees it. */
        printf("   note: wine: recv() after a reset returns 0; checking send()\n");
        n = zs_send(c, "x", 1, 0);
        err = zs_last_error();
    }
    CHECK(n < 0 && err == ZS_ECONNRESET, "ECONNRESET: %ld, %d", n, err);
    CHECK(zs_python_errno(err) == (ZS_HAVE_MSG ? ECONNRESET : 10054), "Python sees ECONNRESET");
    zs_close(c);
    zs_close(l);
}

/* ------------------------------------------------------------------ */
/* UDP and the batch calls                                             */
/* ------------------------------------------------------------------ */

static void test_udp(void)
{
    SECTION("udp: sendto/recvfrom and zs_sendmmsg/zs_recvmmsg");
    zs_sock_t u1 = udp_socket(), u2 = udp_socket();
    CHECK(u1 != ZS_INVALID_SOCKET && u2 != ZS_INVALID_SOCKET, "udp sockets");
    struct sockaddr_in to = loopback(port_of(u2));
    CHECK(zs_sendto(u1, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)) == 4, "sendto");
    char buf[64];
    struct sockaddr_in from;
    zs_socklen_t flen = (zs_socklen_t)sizeof(from);
    CHECK(zs_wait(u2, 0, 2000) == 1, "readable");
    CHECK(zs_recvfrom(u2, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen) == 4
          && memcmp(buf, "ping", 4) == 0, "recvfrom");
    CHECK(ntohs(from.sin_port) == port_of(u1), "sender address");

    /* a batch of three datagrams */
    char d0[] = "one", d1[] = "two!", d2[] = "three";
    char *data[3] = {d0, d1, d2};
    zs_iovec siov[3];
    zs_mmsghdr out[3];
    memset(out, 0, sizeof(out));
    for (int i = 0; i < 3; i++) {
        zs_iov_set(&siov[i], data[i], strlen(data[i]));
        out[i].msg_hdr.msg_iov = &siov[i];
        out[i].msg_hdr.msg_iovlen = 1;
        out[i].msg_hdr.msg_name = &to;
        out[i].msg_hdr.msg_namelen = sizeof(to);
    }
    CHECK(zs_sendmmsg(u1, out, 3, 0) == 3, "zs_sendmmsg sent 3");
    CHECK(out[2].msg_len == 5, "lengths reported");

    char rbuf[4][16];
    zs_iovec riov[4];
    struct sockaddr_in names[4];
    zs_mmsghdr in[4];
    memset(in, 0, sizeof(in));
    for (int i = 0; i < 4; i++) {
        zs_iov_set(&riov[i], rbuf[i], sizeof(rbuf[i]));
        in[i].msg_hdr.msg_iov = &riov[i];
        in[i].msg_hdr.msg_iovlen = 1;
        in[i].msg_hdr.msg_name = &names[i];
        in[i].msg_hdr.msg_namelen = sizeof(names[i]);
    }
    CHECK(zs_set_nonblocking(u2, 1) == 0, "non-blocking");
    CHECK(zs_wait(u2, 0, 2000) == 1, "readable");
    int got = 0;
    for (int tries = 0; got < 3 && tries < 50; tries++) {
        int r = zs_recvmmsg(u2, in + got, (unsigned)(4 - got), 0, 0);
        if (r > 0)
            got += r;
        else
            zs_wait(u2, 0, 100);
    }
    CHECK(got == 3, "zs_recvmmsg got %d", got);
    for (int i = 0; i < got && i < 3; i++) {
        CHECK(in[i].msg_len == strlen(data[i]) && memcmp(rbuf[i], data[i], in[i].msg_len) == 0,
              "datagram %d in order", i);
        CHECK(ntohs(names[i].sin_port) == port_of(u1), "datagram %d sender", i);
    }
    int r = zs_recvmmsg(u2, in, 4, 0, 0);
    CHECK(r == -1 && zs_is_would_block(zs_last_error()), "empty batch would block: %d", r);

    /* wait_first: block for the first datagram, take what follows it */
    CHECK(zs_set_nonblocking(u2, 0) == 0, "blocking");
    CHECK(zs_sendto(u1, d0, 3, 0, (struct sockaddr *)&to, sizeof(to)) == 3, "one more");
    CHECK(zs_wait(u2, 0, 2000) == 1, "readable");
    r = zs_recvmmsg(u2, in, 4, 0, 1);
    CHECK(r == 1 && in[0].msg_len == 3, "wait_first got %d", r);

    /* the batch send reports the first failure when nothing was sent */
    zs_sock_t bad = zs_socket(AF_INET, SOCK_DGRAM, 0);
    zs_close(bad);
    CHECK(zs_sendmmsg(bad, out, 3, 0) == -1, "closed socket fails");
    zs_close(u1);
    zs_close(u2);
}

/* ------------------------------------------------------------------ */
/* pollers with many sockets                                           */
/* ------------------------------------------------------------------ */

#define NPAIRS 300 /* 600 sockets watched: past the stdlib's 512 on Windows */

static const char *poller_name(int kind)
{
    switch (kind) {
    case ZS_POLLER_EPOLL: return "epoll";
    case ZS_POLLER_KQUEUE: return "kqueue";
    case ZS_POLLER_POLL: return "poll";
    case ZS_POLLER_SELECT: return "select";
    default: return "?";
    }
}

static int find_event(const zs_event *ev, int n, zs_sock_t fd)
{
    for (int i = 0; i < n; i++)
        if (ev[i].fd == fd)
            return i;
    return -1;
}

static void test_poller(int kind, zs_sock_t *socks, int nsocks)
{
    char title[64];
    snprintf(title, sizeof(title), "poller %s with %d sockets", poller_name(kind), nsocks);
    SECTION(title);
    zs_poller p;
    CHECK(zs_poller_init(&p, kind, 0) == 0, "init");

    zs_event *ev = (zs_event *)calloc((size_t)nsocks * 2, sizeof(zs_event));
    /* nothing registered: a short wait returns nothing */
    CHECK(zs_poller_prepare(&p, 1) == 0, "prepare empty");
    CHECK(zs_poller_wait(&p, ev, 1, 10) == 0, "empty wait");

    for (int i = 0; i < nsocks; i++)
        CHECK(zs_poller_add(&p, socks[i], ZS_EV_READ) == 0, "add %d", i);
    CHECK(p.count == nsocks, "count");

    /* write to the peers of three sockets, the last one far past 512 */
    int hot[3] = {1, nsocks / 2 + 1, nsocks - 1};
    for (int h = 0; h < 3; h++)
        CHECK(zs_send(socks[hot[h] ^ 1], "!", 1, 0) == 1, "poke %d", hot[h]);
    int cap = zs_poller_capacity(&p);
    CHECK(cap >= nsocks, "capacity %d", cap);
    int n = 0;
    for (int tries = 0; tries < 20 && n < 3; tries++) {
        CHECK(zs_poller_prepare(&p, cap) == 0, "prepare");
        n = zs_poller_wait(&p, ev, cap, 1000);
    }
    CHECK(n == 3, "three readable, got %d", n);
    for (int h = 0; h < 3; h++) {
        int i = find_event(ev, n, socks[hot[h]]);
        CHECK(i >= 0 && ev[i].events == ZS_EV_READ, "socket %d readable", hot[h]);
    }

    /* everyone writable too: one event per socket, merged bits */
    for (int i = 0; i < nsocks; i++)
        CHECK(zs_poller_mod(&p, socks[i], ZS_EV_READ, ZS_EV_READ | ZS_EV_WRITE) == 0, "mod %d", i);
    cap = zs_poller_capacity(&p);
    CHECK(zs_poller_prepare(&p, cap) == 0, "prepare");
    n = zs_poller_wait(&p, ev, cap, 1000);
    CHECK(n == nsocks, "all %d writable, got %d", nsocks, n);
    int both = 0;
    for (int i = 0; i < n; i++)
        both += ev[i].events == (ZS_EV_READ | ZS_EV_WRITE);
    CHECK(both == 3, "three both readable and writable, got %d", both);

    /* drain, then only writers wake; unregister half and they go quiet */
    char c;
    for (int h = 0; h < 3; h++)
        CHECK(zs_recv(socks[hot[h]], &c, 1, 0) == 1, "drain %d", hot[h]);
    for (int i = 0; i < nsocks; i += 2)
        (void)zs_poller_del(&p, socks[i], ZS_EV_READ | ZS_EV_WRITE);
    CHECK(p.count == nsocks / 2, "half left");
    cap = zs_poller_capacity(&p);
    CHECK(zs_poller_prepare(&p, cap) == 0, "prepare");
    n = zs_poller_wait(&p, ev, cap, 1000);
    CHECK(n == nsocks / 2, "half writable, got %d", n);
    for (int i = 0; i < n; i++)
        CHECK(ev[i].events == ZS_EV_WRITE, "write only");
    CHECK(find_event(ev, n, socks[0]) < 0, "unregistered stays quiet");
    for (int i = 1; i < nsocks; i += 2)
        (void)zs_poller_del(&p, socks[i], ZS_EV_READ | ZS_EV_WRITE);
    CHECK(p.count == 0, "empty again");

    zs_poller_free(&p);
    free(ev);
}

static void test_pollers(void)
{
    zs_sock_t l = tcp_listener();
    zs_sock_t *socks = (zs_sock_t *)calloc(2 * NPAIRS, sizeof(zs_sock_t));
    int n = 0;
    for (int i = 0; i < NPAIRS; i++) {
        if (tcp_pair(l, &socks[n], &socks[n + 1]) != 0)
            break;
        n += 2;
    }
    CHECK(n == 2 * NPAIRS, "%d sockets connected", n);
    int kinds[] = {ZS_POLLER_EPOLL, ZS_POLLER_KQUEUE, ZS_POLLER_POLL, ZS_POLLER_SELECT};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        if (!zs_poller_available(kinds[k])) {
            zs_poller p;
            CHECK(zs_poller_init(&p, kinds[k], 0) == -1 && zs_last_error() == ZS_ENOTSUP,
                  "%s unavailable", poller_name(kinds[k]));
            zs_poller_free(&p);
            continue;
        }
        test_poller(kinds[k], socks, n);
    }
    CHECK(zs_poller_available(ZS_POLLER_DEFAULT), "the default poller exists");
    for (int i = 0; i < n; i++)
        zs_close(socks[i]);
    free(socks);
    zs_close(l);
}

/* ------------------------------------------------------------------ */

static void raise_fd_limit(void)
{
#ifndef _WIN32
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < 4096) {
        r.rlim_cur = r.rlim_max < 4096 ? r.rlim_max : 4096;
        (void)setrlimit(RLIMIT_NOFILE, &r);
    }
#endif
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    raise_fd_limit();
    CHECK(zs_startup() == 0, "startup");
    CHECK(zs_strerror(ZS_ECONNRESET)[0] != '\0', "error text");
    double t0 = zs_monotonic();
    CHECK(t0 > 0 && zs_monotonic() >= t0, "monotonic clock");

    test_error_table();
    test_tcp();
    test_vectors();
    test_refused_and_reset();
    test_udp();
    test_pollers();

    printf("%s: %d checks, %d failed\n", failures ? "FAILED" : "ok", checks, failures);
    return failures ? 1 : 0;
}
