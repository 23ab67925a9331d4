/*
 * zs_uring_echo_server.c -- the benchmark's io_uring echo server: what a
 * server pays per request when the kernel hands it completions instead of
 * readiness.  One multishot accept; per connection one multishot recv into a
 * shared provided-buffer ring, so an idle connection holds no buffer; the
 * echo is sent from the very buffer the kernel filled, which goes back to
 * the ring when the send completes.  Everything a loop iteration queued is
 * submitted with the next wait, in one io_uring_enter.
 */
#include "zs_uring.h"
#include "zs_loadgen.h" /* ZS_LG_ECHO, ZS_LG_STREAM */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__linux__)

#define UES_BUFS 1024           /* buffers in the ring (a power of two) */
#define UES_BUF_SIZE (16 * 1024)
#define UES_BGID 0
#define UES_SQ_ENTRIES 256
#define UES_CQ_ENTRIES 4096
#define UES_DRAIN_NS 5000000000LL /* the longest a stop waits for cancellations */

/* user_data: a connection's address with the operation in its low bits, or
 * one of two tags */
enum { OP_RECV = 0, OP_SEND = 1, OP_CANCEL = 2, OP_MASK = 3 };
enum { UD_ACCEPT = 1, UD_STOP = 2, UD_CANCEL_ALL = 3 };

typedef struct ues_conn {
    int fd;
    int inflight;         /* operations whose last completion has not come */
    int recv_armed, sending, closing, cancel_sent;
    int starved;          /* recv ended with -ENOBUFS: re-arm once buffers return */
    uint32_t sent;        /* of the head buffer */
    int queue_head, queue_tail; /* buffer ids to echo, linked through next_bid */
    struct ues_conn *prev, *next; /* every open connection, for the stop */
} ues_conn;

typedef struct {
    zs_uring ring;
    zs_ubr br;
    int mode, listen_fd, stop_fd;
    int stopping;         /* no new accepts or recvs */
    int inflight;         /* all operations in flight, for the stop */
    int starved;          /* connections waiting for buffers */
    ues_conn *conns;
    int32_t next_bid[UES_BUFS];
    uint32_t len[UES_BUFS];
    char *err;
    size_t errlen;
} ues;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int ues_fail(ues *s, const char *what, int code)
{
    snprintf(s->err, s->errlen, "%s: %s", what, strerror(code));
    return -1;
}

/* A submission slot; a full queue is submitted first (no wait). */
static zs_uring_sqe *ues_sqe(ues *s)
{
    zs_uring_sqe *sqe;
    while (!(sqe = zs_uring_get_sqe(&s->ring)))
        (void)zs_uring_submit(&s->ring, 0, -1);
    s->inflight++;
    return sqe;
}

static void ues_arm_accept(ues *s)
{
    zs_prep_accept_multishot(ues_sqe(s), s->listen_fd, SOCK_CLOEXEC, UD_ACCEPT);
}

static void ues_arm_recv(ues *s, ues_conn *c)
{
    zs_prep_recv_multishot(ues_sqe(s), c->fd, UES_BGID, (uint64_t)(uintptr_t)c | OP_RECV);
    c->recv_armed = 1;
    c->inflight++;
}

static void ues_send_head(ues *s, ues_conn *c)
{
    int bid = c->queue_head;
    zs_prep_send(ues_sqe(s), c->fd, zs_ubr_buf(&s->br, (unsigned)bid) + c->sent,
                 s->len[bid] - c->sent, MSG_NOSIGNAL, (uint64_t)(uintptr_t)c | OP_SEND);
    c->sending = 1;
    c->inflight++;
}

static void ues_enqueue(ues *s, ues_conn *c, int bid, uint32_t len)
{
    s->len[bid] = len;
    s->next_bid[bid] = -1;
    if (c->queue_tail >= 0)
        s->next_bid[c->queue_tail] = bid;
    else
        c->queue_head = bid;
    c->queue_tail = bid;
}

/* Drop the head of the echo queue and give its buffer back to the ring. */
static void ues_dequeue(ues *s, ues_conn *c)
{
    int bid = c->queue_head;
    c->queue_head = s->next_bid[bid];
    if (c->queue_head < 0)
        c->queue_tail = -1;
    c->sent = 0;
    zs_ubr_put(&s->br, (unsigned)bid);
}

/* A closing connection goes once nothing of it is in flight: its recv is
 * cancelled, its queued echoes dropped; only then is the fd closed, so the
 * kernel never sees the number again while an operation may still use it. */
static void ues_maybe_close(ues *s, ues_conn *c)
{
    if (!c->closing)
        return;
    if (c->recv_armed && !c->cancel_sent) {
        zs_prep_cancel_fd(ues_sqe(s), c->fd, (uint64_t)(uintptr_t)c | OP_CANCEL);
        c->cancel_sent = 1;
        c->inflight++;
    }
    if (c->inflight)
        return;
    while (c->queue_head >= 0)
        ues_dequeue(s, c);
    if (c->starved)
        s->starved--;
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void ues_on_accept(ues *s, int res, unsigned flags)
{
    if (!(flags & ZS_CQE_F_MORE)) {
        s->inflight--;
        if (!s->stopping)
            ues_arm_accept(s);
    }
    if (res < 0)
        return;
    if (s->stopping) {
        close(res);
        return;
    }
    int one = 1;
    (void)setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ues_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(res);
        return;
    }
    c->fd = res;
    c->queue_head = c->queue_tail = -1;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    ues_arm_recv(s, c);
}

static void ues_on_recv(ues *s, ues_conn *c, int res, unsigned flags)
{
    if (!(flags & ZS_CQE_F_MORE)) {
        c->recv_armed = 0;
        c->inflight--;
        s->inflight--;
    }
    if (res > 0 && (flags & ZS_CQE_F_BUFFER)) {
        int bid = (int)(flags >> ZS_CQE_BUFFER_SHIFT);
        if (s->mode == ZS_LG_STREAM || c->closing) {
            zs_ubr_put(&s->br, (unsigned)bid);
        } else {
            ues_enqueue(s, c, bid, (uint32_t)res);
            if (!c->sending)
                ues_send_head(s, c);
        }
        if (!c->recv_armed && !c->closing) /* the kernel ended it (e.g. a full CQ) */
            ues_arm_recv(s, c);
    } else if (res == -ENOBUFS) {
        if (!c->closing && !c->starved) {
            c->starved = 1;
            s->starved++;
        }
    } else {
        c->closing = 1; /* EOF or an error */
    }
    ues_maybe_close(s, c);
}

static void ues_on_send(ues *s, ues_conn *c, int res)
{
    c->sending = 0;
    c->inflight--;
    s->inflight--;
    if (res < 0) {
        c->closing = 1;
    } else if (!c->closing) {
        c->sent += (uint32_t)res;
        if (c->sent >= s->len[c->queue_head])
            ues_dequeue(s, c);
        if (c->queue_head >= 0)
            ues_send_head(s, c); /* the rest, or the next */
    }
    ues_maybe_close(s, c);
}

static void ues_on_cqe(ues *s, uint64_t ud, int res, unsigned flags)
{
    if (ud == UD_ACCEPT) {
        ues_on_accept(s, res, flags);
        return;
    }
    if (ud == UD_STOP || ud == UD_CANCEL_ALL) {
        s->inflight--;
        return;
    }
    ues_conn *c = (ues_conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
    switch (ud & OP_MASK) {
    case OP_RECV:
        ues_on_recv(s, c, res, flags);
        break;
    case OP_SEND:
        ues_on_send(s, c, res);
        break;
    default: /* OP_CANCEL */
        c->inflight--;
        s->inflight--;
        ues_maybe_close(s, c);
    }
}

/* Once buffers came back, connections whose recv ran dry are re-armed. */
static void ues_rearm_starved(ues *s)
{
    for (ues_conn *c = s->conns; c && s->starved; c = c->next) {
        if (c->starved) {
            c->starved = 0;
            s->starved--;
            if (!c->closing && !c->recv_armed)
                ues_arm_recv(s, c);
        }
    }
}

/* Reap every completion ready; 1 when the stop fd fired. */
static int ues_reap(ues *s)
{
    int stop = 0;
    uint16_t tail_before = s->br.tail;
    zs_uring_cqe *cqe;
    while ((cqe = zs_uring_peek_cqe(&s->ring))) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        unsigned flags = cqe->flags;
        zs_uring_cq_advance(&s->ring, 1);
        if (ud == UD_STOP)
            stop = 1;
        ues_on_cqe(s, ud, res, flags);
    }
    if (s->br.tail != tail_before) {
        zs_ubr_publish(&s->br);
        if (s->starved)
            ues_rearm_starved(s);
    }
    return stop;
}

/* Stop: cancel everything still in flight and wait for the last
 * completions, so no buffer is unmapped while the kernel may write to it. */
static void ues_drain(ues *s)
{
    s->stopping = 1;
    zs_prep_cancel_any(ues_sqe(s), UD_CANCEL_ALL);
    for (ues_conn *c = s->conns; c; c = c->next)
        c->closing = 1;
    int64_t deadline = now_ns() + UES_DRAIN_NS;
    while (s->inflight > 0 && now_ns() < deadline) {
        if (zs_uring_submit(&s->ring, 1, 100000000) < 0)
            break;
        (void)ues_reap(s);
    }
}

int zs_uring_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen)
{
    ues *s = calloc(1, sizeof *s); /* big (the echo queues): not on the stack */
    if (!s) {
        snprintf(err, errlen, "calloc: %s", strerror(ENOMEM));
        return -1;
    }
    s->err = err;
    s->errlen = errlen;
    s->mode = mode;
    s->listen_fd = listen_fd;
    s->stop_fd = stop_fd;
    int rc = -1;
    if (mode != ZS_LG_ECHO && mode != ZS_LG_STREAM) {
        snprintf(err, errlen, "the io_uring echo server serves TCP echo and stream only");
        free(s);
        return -1;
    }
    if (zs_uring_init(&s->ring, UES_SQ_ENTRIES, UES_CQ_ENTRIES, 0, err, errlen) != 0) {
        free(s);
        return -1;
    }
    unsigned missing = (ZS_URING_CAP_ACCEPT_MULTI | ZS_URING_CAP_RECV_MULTI |
                        ZS_URING_CAP_BUF_RING | ZS_URING_CAP_SEND) & ~s->ring.caps;
    if (missing) {
        snprintf(err, errlen, "this kernel lacks multishot accept/recv or buffer rings");
        goto done;
    }
    if (zs_ubr_init(&s->ring, &s->br, UES_BGID, UES_BUFS, UES_BUF_SIZE) != 0) {
        ues_fail(s, "registering the buffer ring", errno);
        goto done;
    }
    ues_arm_accept(s);
    zs_uring_sqe *sqe = ues_sqe(s);
    sqe->opcode = ZS_OP_POLL_ADD; /* one shot: the stop needs one completion */
    sqe->fd = stop_fd;
    sqe->op_flags = POLLIN;
    sqe->user_data = UD_STOP;
    for (;;) {
        int got = zs_uring_submit(&s->ring, 1, -1);
        if (got < 0) {
            ues_fail(s, "io_uring_enter", -got);
            break;
        }
        if (ues_reap(s)) {
            rc = 0;
            break;
        }
    }
    ues_drain(s);
    if (s->inflight == 0) {
        while (s->conns)
            ues_maybe_close(s, s->conns);
        zs_ubr_free(&s->ring, &s->br);
    } /* else the kernel may still hold the buffers: leak them, never free */
done:
    zs_uring_exit(&s->ring);
    free(s);
    return rc;
}

#else /* not Linux */

int zs_uring_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen)
{
    (void)listen_fd; (void)mode; (void)stop_fd;
    snprintf(err, errlen, "the io_uring echo server needs Linux");
    return -1;
}

#endif
