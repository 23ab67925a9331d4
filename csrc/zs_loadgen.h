/*
 * zs_loadgen.h -- the benchmark's load generator and reference echo server.
 *
 * The generator is one thread on one epoll set driving many non-blocking
 * connections: echo (send a request, read the same bytes back and compare
 * them), one-way streaming (write and never read), UDP echo, and HTTP/1.1
 * keep-alive (send one canned request, read a whole response framed by its
 * Content-Length, then the next).  It keeps a
 * log-linear latency histogram and stops at a request count or a deadline,
 * whichever comes first.  zs_lg_step() returns at a slice deadline so the
 * caller can check for signals between slices; a run is a series of steps.
 *
 * The echo server is the benchmark's reference ceiling: the least a server
 * can do per request on this kernel (epoll, recv, send).
 *
 * Both need epoll; elsewhere they compile to stubs that fail with ENOTSUP and
 * the Python side uses its pure-Python generator instead.
 */
#ifndef ZS_LOADGEN_H
#define ZS_LOADGEN_H

#include "zs_shim.h" /* first: it selects the platform's feature macros */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { ZS_LG_ECHO = 0, ZS_LG_STREAM = 1, ZS_LG_UDP = 2, ZS_LG_HTTP = 3 };

/* The longest HTTP response head (status line and headers) accepted. */
#define ZS_LG_HTTP_HEAD_MAX 16384

/* 64 buckets per power of two: latencies are kept to within 1/64 (1.6%). */
#define ZS_LG_SUB_BITS 6
#define ZS_LG_HIST_BUCKETS 2816

typedef struct {
    uint64_t ops;        /* requests completed (stream: chunks fully written) */
    uint64_t bytes;      /* payload bytes of those ops (HTTP: response bytes) */
    uint64_t lost;       /* UDP datagrams given up after the loss timeout */
    uint64_t stale;      /* UDP replies to datagrams already given up */
    uint64_t lat_count;
    uint64_t lat_sum_ns;
    uint64_t lat_max_ns;
    uint64_t hist[ZS_LG_HIST_BUCKETS];
} zs_lg_stats;

typedef struct zs_lg zs_lg;

/* Non-zero when this platform has the real implementation. */
int zs_lg_supported(void);

/* A generator for `connections` sockets to `addr`; NULL with errno set.
 * `size` is the request size; for ZS_LG_HTTP it is the length of the
 * request given to zs_lg_set_request before connecting. */
zs_lg *zs_lg_new(int mode, const struct sockaddr *addr, zs_socklen_t addrlen,
                 int connections, size_t size);
/* The same for a numeric host ("127.0.0.1", "::1") and port, or a Unix
 * socket path when port is negative. */
zs_lg *zs_lg_new_host(int mode, const char *host, int port, int connections, size_t size);
void zs_lg_free(zs_lg *lg);

/* ZS_LG_HTTP: the bytes sent as every request (copied); `len` must be the
 * `size` the generator was made with.  0, or -1 with errno EINVAL. */
int zs_lg_set_request(zs_lg *lg, const void *request, size_t len);

/* Open every connection, waiting at most timeout_ms; 0 or -1 (see zs_lg_error). */
int zs_lg_connect(zs_lg *lg, int timeout_ms);

/*
 * Run until `until_ns` (CLOCK_MONOTONIC).  New requests are started only
 * while `issue` is set and fewer than `max_ops` were started since the last
 * reset.  Returns 1 when no new request may start and none is in flight, 0
 * at the deadline (or on EINTR), -1 on an error (see zs_lg_error).
 */
int zs_lg_step(zs_lg *lg, int64_t until_ns, uint64_t max_ops, int issue);

void zs_lg_reset_stats(zs_lg *lg);
/* How long a UDP request waits for its reply before it counts as lost
 * (default 200 ms; a server under valgrind needs far longer). */
void zs_lg_set_loss_timeout(zs_lg *lg, int64_t ns);
const zs_lg_stats *zs_lg_get_stats(const zs_lg *lg);
uint64_t zs_lg_inflight(const zs_lg *lg);
const char *zs_lg_error(const zs_lg *lg);

/* Latency in ns at quantile q (0..1) of a histogram; 0 when it is empty. */
uint64_t zs_lg_percentile(const zs_lg_stats *st, double q);
/* The histogram bucket a latency falls in, and a bucket's middle value. */
int zs_lg_bucket(uint64_t ns);
uint64_t zs_lg_bucket_value(int bucket);

int64_t zs_lg_now_ns(void);
int64_t zs_lg_thread_cpu_ns(void);

/*
 * Serve `listen_fd` (a listening TCP socket for ZS_LG_ECHO / ZS_LG_STREAM, a
 * bound UDP socket for ZS_LG_UDP) until `stop_fd` turns readable.  Echo sends
 * back every byte, stream reads and discards.  0 on a clean stop, -1 with a
 * message in `err`.
 */
int zs_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* ZS_LOADGEN_H */
