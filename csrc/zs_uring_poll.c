/*
 * zs_uring_poll.c -- readiness through a ring (see zs_uring_poll.h).
 */
#include "zs_uring_poll.h"
#include "zs_uring.h"

#include <stdio.h>

#if defined(__linux__)

#include <poll.h>

#define UPOLL_SQ_ENTRIES 256
#define UPOLL_CQ_ENTRIES 1024
/* The user_data of the cancels: no descriptor's poll has it. */
#define UPOLL_CANCEL UINT64_MAX

typedef struct {
    uint32_t gen;  /* the registration's poll: bumped when one is cancelled */
    uint8_t want;  /* ZS_EV_READ | ZS_EV_WRITE watched for, 0 when unregistered */
    uint8_t armed; /* the events of the poll in flight, 0 when none */
    uint8_t queued; /* in the queue of polls to arm */
} upoll_fd;

struct zs_upoll {
    zs_uring ring;
    upoll_fd *fds; /* by descriptor */
    size_t nfds;
    int *queue; /* descriptors whose poll the next wait arms */
    size_t nqueue, queue_cap;
};

static uint64_t poll_id(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

static unsigned poll_events(int events)
{
    /* RDHUP comes with IN, as the epoll poller asks for it */
    return (events & ZS_EV_READ ? POLLIN | POLLRDHUP : 0) | (events & ZS_EV_WRITE ? POLLOUT : 0);
}

static zs_uring_sqe *next_sqe(zs_upoll *p)
{
    zs_uring_sqe *s = zs_uring_get_sqe(&p->ring);
    if (s == NULL) { /* full: hand the kernel what is queued, without waiting */
        (void)zs_uring_submit(&p->ring, 0, 0);
        s = zs_uring_get_sqe(&p->ring);
        if (s == NULL)
            errno = EBUSY;
    }
    return s;
}

/* The record of `fd`, the table grown to hold it; NULL with errno. */
static upoll_fd *fd_record(zs_upoll *p, int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    if ((size_t)fd >= p->nfds) {
        size_t n = p->nfds ? p->nfds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        upoll_fd *grown = realloc(p->fds, n * sizeof *grown);
        if (grown == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        memset(grown + p->nfds, 0, (n - p->nfds) * sizeof *grown);
        p->fds = grown;
        p->nfds = n;
    }
    return &p->fds[fd];
}

/* The queue has room for every registered descriptor (add makes it), so
 * queuing never fails. */
static void enqueue(zs_upoll *p, int fd, upoll_fd *f)
{
    if (!f->queued) {
        f->queued = 1;
        p->queue[p->nqueue++] = fd;
    }
}

/* Cancel the poll in flight for `fd`; its completion, if any, is then stale. */
static int cancel_poll(zs_upoll *p, int fd, upoll_fd *f)
{
    zs_uring_sqe *s = next_sqe(p);
    if (s == NULL)
        return -1;
    zs_prep_cancel(s, poll_id(fd, f->gen), UPOLL_CANCEL);
    s->flags |= ZS_IOSQE_CQE_SKIP_SUCCESS;
    f->gen++;
    f->armed = 0;
    return 0;
}

zs_upoll *zs_upoll_new(char *reason, size_t reason_len)
{
    zs_upoll *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(reason, reason_len, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    if (zs_uring_init(&p->ring, UPOLL_SQ_ENTRIES, UPOLL_CQ_ENTRIES, 1, reason, reason_len) != 0) {
        int err = errno;
        free(p);
        errno = err;
        return NULL;
    }
    return p;
}

void zs_upoll_free(zs_upoll *p)
{
    if (p == NULL)
        return;
    zs_uring_exit(&p->ring); /* the kernel cancels what is in flight */
    free(p->fds);
    free(p->queue);
    free(p);
}

int zs_upoll_fileno(const zs_upoll *p)
{
    return p->ring.fd;
}

int zs_upoll_add(zs_upoll *p, int fd, int events)
{
    upoll_fd *f = fd_record(p, fd);
    if (f == NULL)
        return -1;
    if (p->queue_cap < p->nfds) {
        size_t cap = p->nfds; /* one slot per descriptor the table holds */
        int *grown = realloc(p->queue, cap * sizeof *grown);
        if (grown == NULL) {
            errno = ENOMEM;
            return -1;
        }
        p->queue = grown;
        p->queue_cap = cap;
    }
    f->want = (uint8_t)events;
    enqueue(p, fd, f);
    return 0;
}

int zs_upoll_mod(zs_upoll *p, int fd, int events)
{
    upoll_fd *f = fd_record(p, fd);
    if (f == NULL)
        return -1;
    f->want = (uint8_t)events;
    /* A poll in flight that misses an event now watched for is replaced;
     * one watching for more than that stays, its extra event masked off by
     * the selector. */
    if (f->armed && (events & ~f->armed) && cancel_poll(p, fd, f) < 0)
        return -1;
    if (!f->armed)
        enqueue(p, fd, f);
    return 0;
}

int zs_upoll_del(zs_upoll *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->nfds)
        return 0;
    upoll_fd *f = &p->fds[fd];
    f->want = 0;
    if (!f->armed)
        return 0;
    if (cancel_poll(p, fd, f) < 0)
        return -1;
    /* Now: until the poll is gone the ring holds the file, and a close
     * of the descriptor would leave the socket open. */
    int rc = zs_uring_submit(&p->ring, 0, 0);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

int zs_upoll_prepare(zs_upoll *p)
{
    size_t i;
    for (i = 0; i < p->nqueue; i++) {
        int fd = p->queue[i];
        upoll_fd *f = &p->fds[fd];
        if (f->want && !f->armed) {
            zs_uring_sqe *s = next_sqe(p);
            if (s == NULL)
                break;
            zs_prep_poll_add(s, fd, poll_events(f->want), poll_id(fd, f->gen));
            f->armed = f->want;
        }
        f->queued = 0;
    }
    if (i < p->nqueue) { /* keep the rest for the next try */
        memmove(p->queue, p->queue + i, (p->nqueue - i) * sizeof *p->queue);
        p->nqueue -= i;
        return -1;
    }
    p->nqueue = 0;
    return 0;
}

static int ready_events(int revents)
{
    /* What the epoll poller reports for the same bits. */
    return zs_from_poll_bits(revents & ~POLLRDHUP, POLLIN, POLLOUT)
         | ((revents & (POLLRDHUP | POLLHUP | POLLERR)) ? ZS_EV_HUP : 0);
}

int zs_upoll_wait(zs_upoll *p, zs_event *out, int max, int timeout_ms)
{
    zs_uring *r = &p->ring;
    unsigned head = *r->cq_head;
    int waiting = timeout_ms != 0 && head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int rc = zs_uring_submit(r, waiting ? 1 : 0,
                             timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    for (; head != tail && n < max; head++) {
        const zs_uring_cqe *c = &r->cqes[head & r->cq_mask];
        if (c->user_data == UPOLL_CANCEL)
            continue;
        int fd = (int)(uint32_t)c->user_data;
        upoll_fd *f = &p->fds[fd]; /* in the table: it was armed */
        if (f->gen != (uint32_t)(c->user_data >> 32) || !f->armed)
            continue; /* cancelled since */
        f->armed = 0;
        if (f->want)
            enqueue(p, fd, f);
        out[n].fd = fd;
        /* -EBADF and the like: wake both sides, whose calls meet the error */
        out[n].events = c->res < 0 ? ZS_EV_READ | ZS_EV_WRITE | ZS_EV_HUP : ready_events(c->res);
        n++;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return n;
}

#else /* not Linux */

zs_upoll *zs_upoll_new(char *reason, size_t reason_len)
{
    snprintf(reason, reason_len, "io_uring is Linux-only");
    errno = ENOSYS;
    return NULL;
}

void zs_upoll_free(zs_upoll *p) { (void)p; }
int zs_upoll_fileno(const zs_upoll *p) { (void)p; return -1; }
int zs_upoll_add(zs_upoll *p, int fd, int events) { (void)p; (void)fd; (void)events; return -1; }
int zs_upoll_mod(zs_upoll *p, int fd, int events) { (void)p; (void)fd; (void)events; return -1; }
int zs_upoll_del(zs_upoll *p, int fd) { (void)p; (void)fd; return 0; }
int zs_upoll_prepare(zs_upoll *p) { (void)p; return 0; }
int zs_upoll_wait(zs_upoll *p, zs_event *out, int max, int timeout_ms)
{
    (void)p; (void)out; (void)max; (void)timeout_ms;
    return -1;
}

#endif
