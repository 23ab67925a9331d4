# Declarations of csrc/zs_loadgen.h: the benchmark's C load generator and echo server.

from libc.stdint cimport uint64_t, int64_t

cdef extern from "zs_loadgen.h" nogil:
    enum:
        ZS_LG_ECHO
        ZS_LG_STREAM
        ZS_LG_UDP
        ZS_LG_HTTP
        ZS_LG_HIST_BUCKETS

    ctypedef struct zs_lg_stats:
        uint64_t ops
        uint64_t bytes
        uint64_t lost
        uint64_t stale
        uint64_t lat_count
        uint64_t lat_sum_ns
        uint64_t lat_max_ns
        uint64_t hist[ZS_LG_HIST_BUCKETS]

    ctypedef struct zs_lg:
        pass

    int zs_lg_supported()
    zs_lg *zs_lg_new_host(int mode, const char *host, int port, int connections, size_t size)
    void zs_lg_free(zs_lg *lg)
    int zs_lg_set_request(zs_lg *lg, const void *request, size_t len)
    int zs_lg_connect(zs_lg *lg, int timeout_ms)
    int zs_lg_step(zs_lg *lg, int64_t until_ns, uint64_t max_ops, int issue)
    void zs_lg_reset_stats(zs_lg *lg)
    void zs_lg_set_loss_timeout(zs_lg *lg, int64_t ns)
    const zs_lg_stats *zs_lg_get_stats(const zs_lg *lg)
    uint64_t zs_lg_inflight(const zs_lg *lg)
    const char *zs_lg_error(const zs_lg *lg)
    uint64_t zs_lg_percentile(const zs_lg_stats *st, double q)
    int64_t zs_lg_now_ns()
    int64_t zs_lg_thread_cpu_ns()
    int zs_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen)
