/*
 * zs_uring.h -- a small io_uring layer over the raw system calls.
 *
 * Ring setup and teardown, feature probing with a plain reason when io_uring
 * cannot be used here, submission and completion queue access, the
 * preparation of the few operations a socket server needs (multishot accept,
 * multishot recv into a provided-buffer ring, send, zero-copy send,
 * multishot poll, cancel), and provided-buffer rings.
 *
 * The kernel's interface is declared here rather than taken from
 * <linux/io_uring.h>: wheels are built against old kernel headers that lack
 * it, and the ABI is stable.  Only the fields and constants used are named
 * (tests/test_uring.py checks them against the system header where one
 * exists).  Everywhere but Linux the header declares the same functions and
 * zs_uring_available() says why there is no io_uring.
 *
 * One thread owns a ring: nothing here locks.
 */
#ifndef ZS_URING_H
#define ZS_URING_H

#include "zs_shim.h" /* first: it selects the platform's feature macros */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a ring on this kernel can do (zs_uring.caps). */
enum {
    ZS_URING_CAP_ACCEPT_MULTI = 1u << 0, /* multishot accept (5.19) */
    ZS_URING_CAP_RECV_MULTI   = 1u << 1, /* multishot recv, buffer select (6.0) */
    ZS_URING_CAP_BUF_RING     = 1u << 2, /* provided-buffer rings (5.19) */
    ZS_URING_CAP_SEND         = 1u << 3,
    ZS_URING_CAP_SEND_ZC      = 1u << 4, /* zero-copy send (6.0) */
    ZS_URING_CAP_POLL_MULTI   = 1u << 5, /* multishot poll (5.13) */
    ZS_URING_CAP_CANCEL_FD    = 1u << 6, /* cancel every op on an fd (5.19) */
    ZS_URING_CAP_EXT_ARG      = 1u << 7, /* a timeout on the wait (5.11) */
    ZS_URING_CAP_DEFER_TASKRUN = 1u << 8, /* completions run in our wait only (6.1) */
    ZS_URING_CAP_RECVMSG      = 1u << 9,
    ZS_URING_CAP_SENDMSG      = 1u << 10,
};

/* What a socket backend cannot do without. */
#define ZS_URING_CAPS_REQUIRED                                                   \
    (ZS_URING_CAP_ACCEPT_MULTI | ZS_URING_CAP_RECV_MULTI | ZS_URING_CAP_BUF_RING | \
     ZS_URING_CAP_SEND | ZS_URING_CAP_POLL_MULTI | ZS_URING_CAP_CANCEL_FD |        \
     ZS_URING_CAP_EXT_ARG | ZS_URING_CAP_RECVMSG | ZS_URING_CAP_SENDMSG)

/* Names of the ZS_URING_CAP_* bits, for reports; NULL past the last. */
const char *zs_uring_cap_name(unsigned bit_index);

#if defined(__linux__)

/* ------------------------------------------------------------------ */
/* the kernel's ABI (include/uapi/linux/io_uring.h), what we use of it  */
/* ------------------------------------------------------------------ */

typedef struct {
    uint8_t opcode;
    uint8_t flags;       /* IOSQE_* */
    uint16_t ioprio;     /* accept/recv/send modifiers */
    int32_t fd;
    uint64_t off;        /* also addr2 */
    uint64_t addr;
    uint32_t len;        /* poll: IORING_POLL_ADD_MULTI */
    uint32_t op_flags;   /* msg_flags, accept_flags, poll32_events, cancel_flags */
    uint64_t user_data;
    uint16_t buf_group;  /* also buf_index */
    uint16_t personality;
    uint32_t file_index;
    uint64_t addr3;
    uint64_t pad2;
} zs_uring_sqe;

typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags; /* ZS_CQE_F_*; the buffer id above ZS_CQE_BUFFER_SHIFT */
} zs_uring_cqe;

typedef struct {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
} zs_uring_sq_offsets;

typedef struct {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
} zs_uring_cq_offsets;

typedef struct {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    zs_uring_sq_offsets sq_off;
    zs_uring_cq_offsets cq_off;
} zs_uring_params;

typedef struct { /* one entry of a provided-buffer ring */
    uint64_t addr;
    uint32_t len;
    uint16_t bid;
    uint16_t resv; /* entry 0's is the ring's tail */
} zs_uring_buf;

typedef struct {
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;
    uint64_t resv[3];
} zs_uring_buf_reg;

typedef struct {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t pad;
    uint64_t ts; /* a struct __kernel_timespec * */
} zs_uring_getevents_arg;

enum { /* opcodes: the kernel's enum, in order */
    ZS_OP_NOP = 0, ZS_OP_POLL_ADD = 6, ZS_OP_POLL_REMOVE = 7, ZS_OP_SENDMSG = 9,
    ZS_OP_RECVMSG = 10, ZS_OP_ACCEPT = 13, ZS_OP_ASYNC_CANCEL = 14, ZS_OP_CONNECT = 16,
    ZS_OP_CLOSE = 19, ZS_OP_SEND = 26, ZS_OP_RECV = 27, ZS_OP_SHUTDOWN = 34,
    ZS_OP_SOCKET = 45, ZS_OP_SEND_ZC = 47, ZS_OP_SENDMSG_ZC = 48,
};

#define ZS_IOSQE_IO_LINK (1u << 2)
#define ZS_IOSQE_BUFFER_SELECT (1u << 5)
#define ZS_IOSQE_CQE_SKIP_SUCCESS (1u << 6)

#define ZS_SETUP_CQSIZE (1u << 3)
#define ZS_SETUP_SUBMIT_ALL (1u << 7)
#define ZS_SETUP_COOP_TASKRUN (1u << 8)
#define ZS_SETUP_SINGLE_ISSUER (1u << 12)
#define ZS_SETUP_DEFER_TASKRUN (1u << 13)

#define ZS_ENTER_GETEVENTS (1u << 0)
#define ZS_ENTER_EXT_ARG (1u << 3)

#define ZS_FEAT_SINGLE_MMAP (1u << 0)
#define ZS_FEAT_NODROP (1u << 1)
#define ZS_FEAT_EXT_ARG (1u << 8)
#define ZS_FEAT_RSRC_TAGS (1u << 10) /* 5.13, with multishot poll */

#define ZS_CQE_F_BUFFER (1u << 0)
#define ZS_CQE_F_MORE (1u << 1)
#define ZS_CQE_F_NOTIF (1u << 3)
#define ZS_CQE_BUFFER_SHIFT 16

#define ZS_POLL_ADD_MULTI (1u << 0)
#define ZS_RECVSEND_POLL_FIRST (1u << 0)
#define ZS_RECV_MULTISHOT (1u << 1)
#define ZS_ACCEPT_MULTISHOT (1u << 0)
#define ZS_ASYNC_CANCEL_ALL (1u << 0)
#define ZS_ASYNC_CANCEL_FD (1u << 1)
#define ZS_ASYNC_CANCEL_ANY (1u << 2)

enum {
    ZS_REGISTER_PROBE = 8,
    ZS_REGISTER_PBUF_RING = 22,
    ZS_UNREGISTER_PBUF_RING = 23,
};
#define ZS_OFF_SQ_RING 0ULL
#define ZS_OFF_CQ_RING 0x8000000ULL
#define ZS_OFF_SQES 0x10000000ULL

/* ------------------------------------------------------------------ */
/* a ring                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    unsigned caps;          /* ZS_URING_CAP_* */
    int probe_error;        /* errno of IORING_REGISTER_PROBE, 0 when it answered */
    unsigned setup_flags;
    /* submission queue: sqe_tail is ours until zs_uring_submit publishes it */
    unsigned *sq_head, *sq_tail, sq_mask, sq_entries, sqe_tail;
    zs_uring_sqe *sqes;
    /* completion queue */
    unsigned *cq_head, *cq_tail, cq_mask, cq_entries;
    zs_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_map_len;
} zs_uring;

/*
 * Make a ring with sq_entries submission slots and cq_entries completion
 * slots (powers of two; 0 for twice sq_entries).  0, or -1 with errno set and
 * a sentence in `reason`.  It asks for the cheapest completion mode the
 * kernel has (deferred task work, single issuer) and falls back; with
 * `any_thread` it leaves out the single issuer, whose ring only the thread
 * that made it may submit to (an event loop may be made in one thread and
 * run in another).
 */
int zs_uring_init(zs_uring *r, unsigned sq_entries, unsigned cq_entries, int any_thread,
                  char *reason, size_t reason_len);
void zs_uring_exit(zs_uring *r);

/*
 * Publish the queued submissions and wait until `wait_nr` completions are
 * ready or `timeout_ns` passes (-1: no limit; 0 with wait_nr 0: only
 * submit), in one system call.  0 (also on a timeout or a signal), or a
 * negative errno.
 */
int zs_uring_submit(zs_uring *r, unsigned wait_nr, int64_t timeout_ns);

/* The next free submission slot, zeroed, or NULL when the queue is full
 * (submit, then ask again). */
static inline zs_uring_sqe *zs_uring_get_sqe(zs_uring *r)
{
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (r->sqe_tail - head >= r->sq_entries)
        return NULL;
    zs_uring_sqe *sqe = &r->sqes[r->sqe_tail & r->sq_mask];
    r->sqe_tail++;
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

/* Queued, not yet submitted. */
static inline unsigned zs_uring_sq_pending(const zs_uring *r)
{
    return r->sqe_tail - *r->sq_tail;
}

/* The oldest unconsumed completion, or NULL. */
static inline zs_uring_cqe *zs_uring_peek_cqe(zs_uring *r)
{
    unsigned head = *r->cq_head;
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        return NULL;
    return &r->cqes[head & r->cq_mask];
}

/* Hand `n` consumed completions back to the kernel. */
static inline void zs_uring_cq_advance(zs_uring *r, unsigned n)
{
    __atomic_store_n(r->cq_head, *r->cq_head + n, __ATOMIC_RELEASE);
}

/* Operations.  user_data comes back in every completion of the operation. */

static inline void zs_prep_accept_multishot(zs_uring_sqe *s, int fd, int flags, uint64_t ud)
{
    s->opcode = ZS_OP_ACCEPT;
    s->fd = fd;
    s->ioprio = ZS_ACCEPT_MULTISHOT;
    s->op_flags = (uint32_t)flags; /* accept4's SOCK_CLOEXEC / SOCK_NONBLOCK */
    s->user_data = ud;
}

/* Every completion carries a buffer of group `bgid`; ends without
 * ZS_CQE_F_MORE (on EOF, an error, or -ENOBUFS when the group runs dry). */
static inline void zs_prep_recv_multishot(zs_uring_sqe *s, int fd, uint16_t bgid, uint64_t ud)
{
    s->opcode = ZS_OP_RECV;
    s->fd = fd;
    s->ioprio = ZS_RECV_MULTISHOT;
    s->flags = ZS_IOSQE_BUFFER_SELECT;
    s->buf_group = bgid;
    s->user_data = ud;
}

static inline void zs_prep_send(zs_uring_sqe *s, int fd, const void *buf, size_t len,
                                int msg_flags, uint64_t ud)
{
    s->opcode = ZS_OP_SEND;
    s->fd = fd;
    s->addr = (uint64_t)(uintptr_t)buf;
    s->len = (uint32_t)len;
    s->op_flags = (uint32_t)msg_flags;
    s->user_data = ud;
}

/* Two completions: the result (with ZS_CQE_F_MORE), then one flagged
 * ZS_CQE_F_NOTIF once the kernel no longer reads `buf`. */
static inline void zs_prep_send_zc(zs_uring_sqe *s, int fd, const void *buf, size_t len,
                                   int msg_flags, uint64_t ud)
{
    zs_prep_send(s, fd, buf, len, msg_flags, ud);
    s->opcode = ZS_OP_SEND_ZC;
}

static inline void zs_prep_recvmsg(zs_uring_sqe *s, int fd, struct msghdr *msg, int flags,
                                   uint64_t ud)
{
    s->opcode = ZS_OP_RECVMSG;
    s->fd = fd;
    s->addr = (uint64_t)(uintptr_t)msg;
    s->len = 1;
    s->op_flags = (uint32_t)flags;
    s->user_data = ud;
}

static inline void zs_prep_sendmsg(zs_uring_sqe *s, int fd, const struct msghdr *msg,
                                   int flags, uint64_t ud)
{
    zs_prep_recvmsg(s, fd, (struct msghdr *)msg, flags, ud);
    s->opcode = ZS_OP_SENDMSG;
}

/* One completion (res: the poll(2) revents) once `events` are ready. */
static inline void zs_prep_poll_add(zs_uring_sqe *s, int fd, unsigned events, uint64_t ud)
{
    s->opcode = ZS_OP_POLL_ADD;
    s->fd = fd;
    s->op_flags = events;
    s->user_data = ud;
}

/* A completion (res: the poll(2) revents) each time `events` turn ready. */
static inline void zs_prep_poll_multishot(zs_uring_sqe *s, int fd, unsigned events, uint64_t ud)
{
    s->opcode = ZS_OP_POLL_ADD;
    s->fd = fd;
    s->len = ZS_POLL_ADD_MULTI;
    s->op_flags = events;
    s->user_data = ud;
}

/* Cancel the operation submitted with `target` (res: 0, -ENOENT, -EALREADY). */
static inline void zs_prep_cancel(zs_uring_sqe *s, uint64_t target, uint64_t ud)
{
    s->opcode = ZS_OP_ASYNC_CANCEL;
    s->fd = -1;
    s->addr = target;
    s->user_data = ud;
}

/* Cancel every operation on `fd` (res: how many, or -ENOENT). */
static inline void zs_prep_cancel_fd(zs_uring_sqe *s, int fd, uint64_t ud)
{
    s->opcode = ZS_OP_ASYNC_CANCEL;
    s->fd = fd;
    s->op_flags = ZS_ASYNC_CANCEL_FD | ZS_ASYNC_CANCEL_ALL;
    s->user_data = ud;
}

/* Cancel every operation in flight on the ring (res: how many, or -ENOENT). */
static inline void zs_prep_cancel_any(zs_uring_sqe *s, uint64_t ud)
{
    zs_prep_cancel(s, 0, ud);
    s->op_flags = ZS_ASYNC_CANCEL_ANY;
}

/* ------------------------------------------------------------------ */
/* a provided-buffer ring: `entries` buffers of `buf_size` bytes        */
/* ------------------------------------------------------------------ */

typedef struct {
    zs_uring_buf *ring;
    unsigned char *bufs;
    size_t buf_size, ring_len, bufs_len;
    unsigned mask;
    uint16_t bgid;
    uint16_t tail; /* ours until zs_ubr_publish */
} zs_ubr;

/* Register buffer group `bgid` with every buffer in it.  0, or -1 with errno. */
int zs_ubr_init(zs_uring *r, zs_ubr *br, uint16_t bgid, unsigned entries, size_t buf_size);
/* Unregister and free: only once no operation can still select from it. */
void zs_ubr_free(zs_uring *r, zs_ubr *br);

static inline unsigned char *zs_ubr_buf(const zs_ubr *br, unsigned bid)
{
    return br->bufs + (size_t)bid * br->buf_size;
}

/* Give buffer `bid` back to the kernel (seen at the next zs_ubr_publish). */
static inline void zs_ubr_put(zs_ubr *br, unsigned bid)
{
    zs_uring_buf *b = &br->ring[br->tail & br->mask];
    b->addr = (uint64_t)(uintptr_t)zs_ubr_buf(br, bid);
    b->len = (uint32_t)br->buf_size;
    b->bid = (uint16_t)bid;
    br->tail++;
}

static inline void zs_ubr_publish(zs_ubr *br)
{
    /* the tail shares the first entry's reserved field */
    __atomic_store_n(&br->ring[0].resv, br->tail, __ATOMIC_RELEASE);
}

#else /* not Linux: no io_uring */

typedef struct zs_uring zs_uring;

#endif

/*
 * 1 when a ring with ZS_URING_CAPS_REQUIRED can be made here; else 0 and a
 * sentence saying why (not Linux, an old kernel, kernel.io_uring_disabled, a
 * seccomp filter answering EPERM or ENOSYS).  `caps` gets what a ring has
 * (0 when none can be made).
 */
int zs_uring_available(unsigned *caps, char *reason, size_t reason_len);

/*
 * The benchmark's io_uring echo server (csrc/zs_uring_echo_server.c), the
 * same contract as zs_echo_server_run (zs_loadgen.h) for ZS_LG_ECHO and
 * ZS_LG_STREAM: multishot accept, multishot recv into a provided-buffer
 * ring, send, one io_uring_enter per loop iteration.
 */
int zs_uring_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* ZS_URING_H */
