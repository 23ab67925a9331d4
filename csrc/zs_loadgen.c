/*
 * zs_loadgen.c -- the load generator of zs_loadgen.h.  Linux (epoll) only;
 * stubs elsewhere.  The reference echo server is in zs_echo_server.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#endif
#include "zs_loadgen.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* histogram and clocks: portable                                      */
/* ------------------------------------------------------------------ */

static int msb64(uint64_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(v);
#else
    int e = 0;
    while (v >>= 1)
        e++;
    return e;
#endif
}

int zs_lg_bucket(uint64_t ns)
{
    const int sub = 1 << ZS_LG_SUB_BITS;
    if (ns < (uint64_t)(2 * sub))
        return (int)ns;
    int e = msb64(ns);
    if (e > 48) /* about 78 hours: anything longer lands in the last bucket */
        return ZS_LG_HIST_BUCKETS - 1;
    int mant = (int)(ns >> (e - ZS_LG_SUB_BITS));
    return 2 * sub + (e - ZS_LG_SUB_BITS - 1) * sub + (mant - sub);
}

uint64_t zs_lg_bucket_value(int bucket)
{
    const int sub = 1 << ZS_LG_SUB_BITS;
    if (bucket < 2 * sub)
        return (uint64_t)bucket;
    int e = (bucket - 2 * sub) / sub + ZS_LG_SUB_BITS + 1;
    uint64_t mant = (uint64_t)((bucket - 2 * sub) % sub + sub);
    uint64_t width = (uint64_t)1 << (e - ZS_LG_SUB_BITS);
    return mant * width + width / 2;
}

uint64_t zs_lg_percentile(const zs_lg_stats *st, double q)
{
    if (st->lat_count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)st->lat_count + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int b = 0; b < ZS_LG_HIST_BUCKETS; b++) {
        seen += st->hist[b];
        if (seen >= rank) {
            uint64_t v = zs_lg_bucket_value(b);
            return v > st->lat_max_ns ? st->lat_max_ns : v;
        }
    }
    return st->lat_max_ns;
}

#ifdef _WIN32
int64_t zs_lg_now_ns(void) { return 0; }
int64_t zs_lg_thread_cpu_ns(void) { return -1; }
#else
int64_t zs_lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t zs_lg_thread_cpu_ns(void)
{
#ifdef CLOCK_THREAD_CPUTIME_ID
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#else
    return -1;
#endif
}
#endif

#if defined(__linux__)

#include <sys/epoll.h>

#define ZS_LG_RBUF (256 * 1024)
#define ZS_LG_MAX_EVENTS 256
#define ZS_LG_PATTERN_SLACK 256
#define ZS_LG_UDP_HEADER 8
#define ZS_LG_UDP_LOSS_NS (200LL * 1000 * 1000) /* default; see zs_lg_set_loss_timeout */

typedef struct {
    zs_sock_t fd;
    int index;
    int active;          /* a request is in flight */
    int connected;
    uint32_t events;     /* current epoll interest */
    size_t sent;         /* bytes of the current request written */
    size_t received;     /* bytes of its reply read */
    size_t offset;       /* where in the pattern the request's bytes start */
    uint64_t seq;
    int64_t start_ns;
    /* HTTP: where the current response is */
    int in_body;
    uint64_t body_left;
    size_t head_len;     /* bytes of a head split across reads, gathered in head */
    unsigned char *head; /* allocated the first time a head is split */
} zs_lg_conn;

struct zs_lg {
    int mode;
    int nconns;
    size_t size;
    struct sockaddr_storage addr;
    zs_socklen_t addrlen;
    int ep;
    zs_lg_conn *conns;
    unsigned char *pattern;  /* size + slack bytes; requests start at varying offsets */
    unsigned char *sendbuf;  /* UDP: header + pattern slice */
    unsigned char *rbuf;
    uint64_t issued;
    uint64_t inflight;
    uint64_t max_ops;
    int issue;
    uint64_t seq;
    int64_t last_loss_scan;
    int64_t loss_ns;
    int request_set;     /* HTTP: zs_lg_set_request was called */
    zs_lg_stats stats;
    char error[256];
};

int zs_lg_supported(void) { return 1; }

static int lg_fail(zs_lg *lg, const char *what, int err)
{
    if (err)
        snprintf(lg->error, sizeof lg->error, "%s: %s (errno %d)", what, strerror(err), err);
    else
        snprintf(lg->error, sizeof lg->error, "%s", what);
    return -1;
}

static int lg_set_interest(zs_lg *lg, zs_lg_conn *c, uint32_t events)
{
    if (c->events == events)
        return 0;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(lg->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return lg_fail(lg, "epoll_ctl", errno);
    c->events = events;
    return 0;
}

zs_lg *zs_lg_new(int mode, const struct sockaddr *addr, zs_socklen_t addrlen,
                 int connections, size_t size)
{
    if (mode < ZS_LG_ECHO || mode > ZS_LG_HTTP || connections < 1 || connections > 65536
        || size < 1 || size > ((size_t)1 << 30) || addrlen <= 0
        || (size_t)addrlen > sizeof(struct sockaddr_storage)
        || (mode == ZS_LG_UDP && (size < ZS_LG_UDP_HEADER || size > 65507))) {
        errno = EINVAL;
        return NULL;
    }
    zs_lg *lg = calloc(1, sizeof *lg);
    if (!lg)
        return NULL;
    lg->mode = mode;
    lg->nconns = connections;
    lg->size = size;
    memcpy(&lg->addr, addr, (size_t)addrlen);
    lg->addrlen = addrlen;
    lg->ep = -1;
    lg->max_ops = UINT64_MAX;
    lg->loss_ns = ZS_LG_UDP_LOSS_NS;
    lg->conns = calloc((size_t)connections, sizeof *lg->conns);
    lg->pattern = malloc(size + ZS_LG_PATTERN_SLACK);
    lg->sendbuf = malloc(size);
    lg->rbuf = malloc(ZS_LG_RBUF);
    if (!lg->conns || !lg->pattern || !lg->sendbuf || !lg->rbuf) {
        zs_lg_free(lg);
        errno = ENOMEM;
        return NULL;
    }
    /* Bytes that differ at every offset, so a reply shifted or taken from
     * another request does not compare equal by accident. */
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size + ZS_LG_PATTERN_SLACK; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        lg->pattern[i] = (unsigned char)(x >> 24);
    }
    for (int i = 0; i < connections; i++) {
        lg->conns[i].fd = -1;
        lg->conns[i].index = i;
    }
    return lg;
}

zs_lg *zs_lg_new_host(int mode, const char *host, int port, int connections, size_t size)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    zs_socklen_t len;
    if (port < 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        size_t n = strlen(host);
        if (n == 0 || n >= sizeof un->sun_path) {
            errno = EINVAL;
            return NULL;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, host, n + 1);
        len = (zs_socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    } else if (port > 65535) {
        errno = EINVAL;
        return NULL;
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons((uint16_t)port);
            len = sizeof *in4;
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)port);
            len = sizeof *in6;
        } else {
            errno = EINVAL;
            return NULL;
        }
    }
    return zs_lg_new(mode, (struct sockaddr *)&ss, len, connections, size);
}

int zs_lg_set_request(zs_lg *lg, const void *request, size_t len)
{
    if (lg->mode != ZS_LG_HTTP || len != lg->size) {
        errno = EINVAL;
        return -1;
    }
    memcpy(lg->pattern, request, len);
    lg->request_set = 1;
    return 0;
}

void zs_lg_free(zs_lg *lg)
{
    if (!lg)
        return;
    if (lg->conns) {
        for (int i = 0; i < lg->nconns; i++) {
            if (lg->conns[i].fd >= 0)
                close(lg->conns[i].fd);
            free(lg->conns[i].head);
        }
    }
    if (lg->ep >= 0)
        close(lg->ep);
    free(lg->conns);
    free(lg->pattern);
    free(lg->sendbuf);
    free(lg->rbuf);
    free(lg);
}

int zs_lg_connect(zs_lg *lg, int timeout_ms)
{
    lg->error[0] = 0;
    if (lg->ep >= 0)
        return lg_fail(lg, "already connected", 0);
    if (lg->mode == ZS_LG_HTTP && !lg->request_set)
        return lg_fail(lg, "no HTTP request set", 0);
    lg->ep = epoll_create1(EPOLL_CLOEXEC);
    if (lg->ep < 0)
        return lg_fail(lg, "epoll_create1", errno);
    int type = lg->mode == ZS_LG_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int family = lg->addr.ss_family;
    int pending = 0;
    for (int i = 0; i < lg->nconns; i++) {
        zs_lg_conn *c = &lg->conns[i];
        c->fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            return lg_fail(lg, "socket", errno);
        if (type == SOCK_STREAM && family != AF_UNIX) {
            int one = 1;
            (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.data.ptr = c;
        if (connect(c->fd, (struct sockaddr *)&lg->addr, lg->addrlen) == 0) {
            c->connected = 1;
            ev.events = EPOLLIN;
        } else if (errno == EINPROGRESS) {
            ev.events = EPOLLOUT;
            pending++;
        } else if (errno == EAGAIN && family == AF_UNIX) {
            return lg_fail(lg, "connect (the server's listen backlog is full)", errno);
        } else {
            return lg_fail(lg, "connect", errno);
        }
        c->events = ev.events;
        if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            return lg_fail(lg, "epoll_ctl", errno);
    }
    int64_t deadline = zs_lg_now_ns() + (int64_t)timeout_ms * 1000000LL;
    struct epoll_event events[ZS_LG_MAX_EVENTS];
    while (pending > 0) {
        int64_t left = deadline - zs_lg_now_ns();
        if (left <= 0) {
            snprintf(lg->error, sizeof lg->error,
                     "timed out: %d of %d connections not accepted", pending, lg->nconns);
            return -1;
        }
        int n = epoll_wait(lg->ep, events, ZS_LG_MAX_EVENTS, (int)(left / 1000000) + 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return lg_fail(lg, "epoll_wait", errno);
        }
        for (int k = 0; k < n; k++) {
            zs_lg_conn *c = events[k].data.ptr;
            if (c->connected)
                continue;
            int result = 0;
            if (zs_connect_result(c->fd, &result) != 0)
                return lg_fail(lg, "getsockopt(SO_ERROR)", errno);
            if (result != 0)
                return lg_fail(lg, "connect", result);
            c->connected = 1;
            pending--;
            if (lg_set_interest(lg, c, EPOLLIN) != 0)
                return -1;
        }
    }
    return 0;
}

static int lg_may_issue(const zs_lg *lg)
{
    return lg->issue && lg->issued < lg->max_ops;
}

static int lg_send_more(zs_lg *lg, zs_lg_conn *c);

static int lg_start(zs_lg *lg, zs_lg_conn *c)
{
    c->active = 1;
    c->sent = 0;
    c->received = 0;
    c->seq = ++lg->seq;
    /* HTTP sends the one canned request; the others vary where they start */
    c->offset = lg->mode == ZS_LG_HTTP ? 0 : (size_t)(c->seq * 37u % ZS_LG_PATTERN_SLACK);
    c->in_body = 0;
    c->body_left = 0;
    c->head_len = 0;
    lg->issued++;
    lg->inflight++;
    c->start_ns = zs_lg_now_ns();
    return lg_send_more(lg, c);
}

/* A request answered in full: count it and its latency, and free its
 * connection for the next request. */
static void lg_complete(zs_lg *lg, zs_lg_conn *c, uint64_t bytes)
{
    int64_t now = zs_lg_now_ns();
    uint64_t lat = now > c->start_ns ? (uint64_t)(now - c->start_ns) : 0;
    zs_lg_stats *st = &lg->stats;
    st->ops++;
    st->bytes += bytes;
    st->lat_count++;
    st->lat_sum_ns += lat;
    if (lat > st->lat_max_ns)
        st->lat_max_ns = lat;
    st->hist[zs_lg_bucket(lat)]++;
    c->active = 0;
    lg->inflight--;
}

/* Write what remains of the current request; EPOLLOUT while some is left. */
static int lg_send_more(zs_lg *lg, zs_lg_conn *c)
{
    /* A fast reader keeps a stream socket writable for ever: hand back to
     * the event loop (and its clock) after a bounded amount of writing. */
    size_t budget = 256 * 1024;
    for (;;) {
        if (lg->mode == ZS_LG_UDP) {
            if (c->sent == lg->size)
                break;
            /* built at each try: the buffer is shared by all connections */
            memcpy(lg->sendbuf, &c->seq, ZS_LG_UDP_HEADER);
            memcpy(lg->sendbuf + ZS_LG_UDP_HEADER, lg->pattern + c->offset + ZS_LG_UDP_HEADER,
                   lg->size - ZS_LG_UDP_HEADER);
            ssize_t n = send(c->fd, lg->sendbuf, lg->size, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                    break;
                if (errno == ECONNREFUSED)
                    return lg_fail(lg, "server not listening (ECONNREFUSED)", 0);
                return lg_fail(lg, "send", errno);
            }
            c->sent = lg->size;
            break;
        }
        if (c->sent == lg->size) {
            if (lg->mode != ZS_LG_STREAM)
                break;
            /* streaming: a chunk is done when it is all written; start the next */
            c->active = 0;
            lg->inflight--;
            lg->stats.ops++;
            lg->stats.bytes += lg->size;
            if (!lg_may_issue(lg))
                break;
            int yield_now = lg->size >= budget;
            budget = yield_now ? 0 : budget - lg->size;
            c->active = 1;
            c->sent = 0;
            c->seq = ++lg->seq;
            c->offset = (size_t)(c->seq * 37u % ZS_LG_PATTERN_SLACK);
            lg->issued++;
            lg->inflight++;
            if (yield_now)
                break;
        }
        ssize_t n = send(c->fd, lg->pattern + c->offset + c->sent, lg->size - c->sent,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EPIPE || errno == ECONNRESET)
                return lg_fail(lg, "the server closed the connection (send)", errno);
            return lg_fail(lg, "send", errno);
        }
        c->sent += (size_t)n;
    }
    uint32_t want = EPOLLIN | ((c->active && c->sent < lg->size) ? EPOLLOUT : 0);
    return lg_set_interest(lg, c, want);
}

/* ---------------------------------------------------------------- HTTP */

static int lg_name_is(const char *p, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n != k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)p[i]) != name[i])
            return 0;
    return 1;
}

static int lg_http_fail(zs_lg *lg, zs_lg_conn *c, const char *what)
{
    snprintf(lg->error, sizeof lg->error, "HTTP response on connection %d: %s", c->index, what);
    return -1;
}

/* Parse a response head (status line, headers, the blank line) and set the
 * body's length from Content-Length.  Only what keep-alive needs is read. */
static int lg_http_head(zs_lg *lg, zs_lg_conn *c, const char *p, size_t len)
{
    const char *end = p + len;
    const char *eol = memchr(p, '\n', len);
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || !eol)
        return lg_http_fail(lg, c, "not an HTTP/1.x status line");
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (!isdigit((unsigned char)p[i]))
            return lg_http_fail(lg, c, "not an HTTP/1.x status line");
        status = status * 10 + (p[i] - '0');
    }
    if (status < 200 || status > 299) {
        char what[96];
        int n = (int)(eol - p);
        while (n > 0 && (p[n - 1] == '\r'))
            n--;
        snprintf(what, sizeof what, "status %.*s, not a 2xx success", n > 60 ? 60 : n, p);
        return lg_http_fail(lg, c, what);
    }
    int have_length = 0;
    uint64_t length = 0;
    for (const char *line = eol + 1; line < end;) {
        const char *next = memchr(line, '\n', (size_t)(end - line));
        const char *stop = next ? next : end;
        const char *line_end = stop > line && stop[-1] == '\r' ? stop - 1 : stop;
        if (line_end == line)
            break; /* the blank line */
        const char *colon = memchr(line, ':', (size_t)(line_end - line));
        if (!colon)
            return lg_http_fail(lg, c, "a header line without a colon");
        const char *v = colon + 1;
        while (v < line_end && (*v == ' ' || *v == '\t'))
            v++;
        const char *v_end = line_end;
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
            v_end--;
        size_t name_len = (size_t)(colon - line);
        if (lg_name_is(line, name_len, "content-length")) {
            uint64_t value = 0;
            if (v == v_end)
                return lg_http_fail(lg, c, "an empty Content-Length");
            for (const char *q = v; q < v_end; q++) {
                if (!isdigit((unsigned char)*q) || value > (UINT64_MAX - 9) / 10)
                    return lg_http_fail(lg, c, "a Content-Length that is not a number");
                value = value * 10 + (uint64_t)(*q - '0');
            }
            if (have_length && value != length)
                return lg_http_fail(lg, c, "two different Content-Length headers");
            have_length = 1;
            length = value;
        } else if (lg_name_is(line, name_len, "transfer-encoding")) {
            return lg_http_fail(lg, c, "Transfer-Encoding (chunked) is not supported: the "
                                       "generator needs responses framed by Content-Length");
        } else if (lg_name_is(line, name_len, "connection")
                   && lg_name_is(v, (size_t)(v_end - v), "close")) {
            return lg_http_fail(lg, c, "Connection: close (the generator needs keep-alive)");
        }
        line = next ? next + 1 : end;
    }
    if (!have_length && status != 204)
        return lg_http_fail(lg, c, "no Content-Length (the generator needs responses "
                                   "framed by Content-Length)");
    c->in_body = 1;
    c->body_left = length;
    return 0;
}

/* Where the head ends in p[from..len) (just past the blank line), or 0. */
static size_t lg_http_head_end(const unsigned char *p, size_t from, size_t len)
{
    for (size_t i = from; i + 1 < len; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Take `n` bytes just read on an HTTP connection: the response head, then
 * Content-Length bytes of body; a complete response starts the next request. */
static int lg_http_input(zs_lg *lg, zs_lg_conn *c, const unsigned char *data, size_t n)
{
    size_t pos = 0;
    while (pos < n) {
        if (!c->active) {
            snprintf(lg->error, sizeof lg->error,
                     "the server sent %zu bytes nobody asked for (connection %d)", n - pos,
                     c->index);
            return -1;
        }
        if (!c->in_body) {
            size_t avail = n - pos;
            size_t end = c->head_len == 0 ? lg_http_head_end(data + pos, 0, avail) : 0;
            if (end) { /* the usual case: the whole head in one read, parsed in place */
                if (end > ZS_LG_HTTP_HEAD_MAX)
                    return lg_http_fail(lg, c, "a head longer than 16 KiB");
                if (lg_http_head(lg, c, (const char *)data + pos, end) != 0)
                    return -1;
                c->received += end;
                pos += end;
            } else {
                if (!c->head) {
                    c->head = malloc(ZS_LG_HTTP_HEAD_MAX);
                    if (!c->head)
                        return lg_fail(lg, "malloc", ENOMEM);
                }
                size_t room = ZS_LG_HTTP_HEAD_MAX - c->head_len;
                size_t take = avail < room ? avail : room;
                memcpy(c->head + c->head_len, data + pos, take);
                /* the blank line may straddle the previous read: look back 3 bytes */
                size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
                end = lg_http_head_end(c->head, from, c->head_len + take);
                if (!end) {
                    if (take == room)
                        return lg_http_fail(lg, c, "a head longer than 16 KiB");
                    c->head_len += take;
                    return 0;
                }
                pos += end - c->head_len; /* the bytes of this read that end the head */
                c->head_len = 0;
                if (lg_http_head(lg, c, (const char *)c->head, end) != 0)
                    return -1;
                c->received += end;
            }
        }
        if (c->body_left) {
            size_t avail = n - pos;
            size_t take = (uint64_t)avail < c->body_left ? avail : (size_t)c->body_left;
            c->body_left -= take;
            c->received += take;
            pos += take;
        }
        if (c->body_left == 0) {
            if (pos < n) {
                snprintf(lg->error, sizeof lg->error,
                         "the server sent %zu bytes past the end of a response "
                         "(connection %d)", n - pos, c->index);
                return -1;
            }
            lg_complete(lg, c, c->received);
            return lg_may_issue(lg) ? lg_start(lg, c) : lg_set_interest(lg, c, EPOLLIN);
        }
    }
    return 0;
}

static int lg_on_readable(zs_lg *lg, zs_lg_conn *c)
{
    if (lg->mode == ZS_LG_UDP) {
        for (;;) {
            ssize_t n = recv(c->fd, lg->rbuf, ZS_LG_RBUF, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return 0;
                if (errno == ECONNREFUSED)
                    return lg_fail(lg, "server not listening (ECONNREFUSED)", 0);
                return lg_fail(lg, "recv", errno);
            }
            uint64_t seq;
            if ((size_t)n < ZS_LG_UDP_HEADER)
                return lg_fail(lg, "reply datagram shorter than the request", 0);
            memcpy(&seq, lg->rbuf, ZS_LG_UDP_HEADER);
            if (!c->active || seq != c->seq) {
                lg->stats.stale++;
                continue;
            }
            if ((size_t)n != lg->size || memcmp(lg->rbuf + ZS_LG_UDP_HEADER,
                                                lg->pattern + c->offset + ZS_LG_UDP_HEADER,
                                                lg->size - ZS_LG_UDP_HEADER) != 0) {
                snprintf(lg->error, sizeof lg->error,
                         "reply datagram differs from the request (connection %d, %zd of %zu bytes)",
                         c->index, n, lg->size);
                return -1;
            }
            lg_complete(lg, c, lg->size);
            if (lg_may_issue(lg))
                return lg_start(lg, c);
            return 0;
        }
    }
    for (;;) {
        size_t want = ZS_LG_RBUF;
        if (lg->mode == ZS_LG_ECHO && c->active) {
            want = lg->size - c->received;
            if (want > ZS_LG_RBUF)
                want = ZS_LG_RBUF;
        }
        ssize_t n = recv(c->fd, lg->rbuf, want, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == ECONNRESET)
                return lg_fail(lg, "the server reset the connection", 0);
            return lg_fail(lg, "recv", errno);
        }
        if (n == 0)
            return lg_fail(lg, "the server closed the connection", 0);
        if (lg->mode == ZS_LG_HTTP) {
            if (lg_http_input(lg, c, lg->rbuf, (size_t)n) != 0)
                return -1;
            if ((size_t)n < want)
                return 0;
            continue;
        }
        if (lg->mode == ZS_LG_STREAM || !c->active) {
            snprintf(lg->error, sizeof lg->error,
                     "the server sent %zd bytes nobody asked for (connection %d)", n, c->index);
            return -1;
        }
        if (c->received + (size_t)n > c->sent) {
            snprintf(lg->error, sizeof lg->error,
                     "the server replied with bytes not yet sent (connection %d)", c->index);
            return -1;
        }
        if (memcmp(lg->rbuf, lg->pattern + c->offset + c->received, (size_t)n) != 0) {
            size_t at = 0;
            while (lg->rbuf[at] == lg->pattern[c->offset + c->received + at])
                at++;
            snprintf(lg->error, sizeof lg->error,
                     "reply differs from the request at byte %zu of %zu (connection %d)",
                     c->received + at, lg->size, c->index);
            return -1;
        }
        c->received += (size_t)n;
        if (c->received == lg->size) {
            lg_complete(lg, c, lg->size);
            return lg_may_issue(lg) ? lg_start(lg, c) : lg_set_interest(lg, c, EPOLLIN);
        }
        if ((size_t)n < want)
            return 0; /* the socket is drained: saves a recv that would say EAGAIN */
    }
}

static int lg_scan_losses(zs_lg *lg, int64_t now)
{
    for (int i = 0; i < lg->nconns; i++) {
        zs_lg_conn *c = &lg->conns[i];
        if (c->active && c->sent == lg->size && now - c->start_ns > lg->loss_ns) {
            lg->stats.lost++;
            c->active = 0;
            lg->inflight--;
            if (lg_may_issue(lg) && lg_start(lg, c) != 0)
                return -1;
        }
    }
    return 0;
}

int zs_lg_step(zs_lg *lg, int64_t until_ns, uint64_t max_ops, int issue)
{
    lg->error[0] = 0;
    if (lg->ep < 0)
        return lg_fail(lg, "not connected", 0);
    lg->issue = issue;
    lg->max_ops = max_ops;
    for (int i = 0; i < lg->nconns; i++) {
        zs_lg_conn *c = &lg->conns[i];
        if (!c->active && lg_may_issue(lg) && lg_start(lg, c) != 0)
            return -1;
    }
    struct epoll_event events[ZS_LG_MAX_EVENTS];
    for (;;) {
        if (!lg_may_issue(lg) && lg->inflight == 0)
            return 1;
        int64_t now = zs_lg_now_ns();
        if (lg->mode == ZS_LG_UDP && now - lg->last_loss_scan > 10000000LL) {
            lg->last_loss_scan = now;
            if (lg_scan_losses(lg, now) != 0)
                return -1;
            continue;
        }
        if (now >= until_ns)
            return 0;
        int64_t left_ms = (until_ns - now + 999999) / 1000000;
        if (lg->mode == ZS_LG_UDP && left_ms > 10)
            left_ms = 10;
        int n = epoll_wait(lg->ep, events, ZS_LG_MAX_EVENTS, (int)left_ms);
        if (n < 0) {
            if (errno == EINTR)
                return 0;
            return lg_fail(lg, "epoll_wait", errno);
        }
        for (int k = 0; k < n; k++) {
            zs_lg_conn *c = events[k].data.ptr;
            uint32_t ev = events[k].events;
            if (ev & EPOLLERR) {
                int result = 0;
                (void)zs_connect_result(c->fd, &result);
                if (result == ECONNREFUSED && lg->mode == ZS_LG_UDP)
                    return lg_fail(lg, "server not listening (ECONNREFUSED)", 0);
                if (result == ECONNRESET || result == EPIPE)
                    return lg_fail(lg, "the server reset the connection", 0);
                if (result != 0)
                    return lg_fail(lg, "socket error", result);
            }
            if ((ev & EPOLLOUT) && c->active && c->sent < lg->size) {
                if (lg_send_more(lg, c) != 0)
                    return -1;
            }
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
                if (lg_on_readable(lg, c) != 0)
                    return -1;
            }
        }
    }
}

void zs_lg_set_loss_timeout(zs_lg *lg, int64_t ns)
{
    lg->loss_ns = ns > 0 ? ns : ZS_LG_UDP_LOSS_NS;
}

void zs_lg_reset_stats(zs_lg *lg)
{
    memset(&lg->stats, 0, sizeof lg->stats);
    lg->issued = 0;
}

const zs_lg_stats *zs_lg_get_stats(const zs_lg *lg) { return &lg->stats; }
uint64_t zs_lg_inflight(const zs_lg *lg) { return lg->inflight; }
const char *zs_lg_error(const zs_lg *lg) { return lg->error; }

#else /* no epoll: stubs, so the package still builds */

struct zs_lg { int unused; };

int zs_lg_supported(void) { return 0; }
zs_lg *zs_lg_new(int mode, const struct sockaddr *addr, zs_socklen_t addrlen,
                 int connections, size_t size)
{
    (void)mode; (void)addr; (void)addrlen; (void)connections; (void)size;
    errno = ZS_ENOTSUP;
    return NULL;
}
zs_lg *zs_lg_new_host(int mode, const char *host, int port, int connections, size_t size)
{
    (void)mode; (void)host; (void)port; (void)connections; (void)size;
    errno = ZS_ENOTSUP;
    return NULL;
}
void zs_lg_free(zs_lg *lg) { (void)lg; }
int zs_lg_set_request(zs_lg *lg, const void *request, size_t len)
{
    (void)lg; (void)request; (void)len;
    errno = ZS_ENOTSUP;
    return -1;
}
int zs_lg_connect(zs_lg *lg, int timeout_ms) { (void)lg; (void)timeout_ms; return -1; }
int zs_lg_step(zs_lg *lg, int64_t until_ns, uint64_t max_ops, int issue)
{
    (void)lg; (void)until_ns; (void)max_ops; (void)issue;
    return -1;
}
void zs_lg_reset_stats(zs_lg *lg) { (void)lg; }
void zs_lg_set_loss_timeout(zs_lg *lg, int64_t ns) { (void)lg; (void)ns; }
static zs_lg_stats zs_lg_empty;
const zs_lg_stats *zs_lg_get_stats(const zs_lg *lg) { (void)lg; return &zs_lg_empty; }
uint64_t zs_lg_inflight(const zs_lg *lg) { (void)lg; return 0; }
const char *zs_lg_error(const zs_lg *lg) { (void)lg; return "not supported on this platform"; }

#endif
