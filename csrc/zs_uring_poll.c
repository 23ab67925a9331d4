/*
 * zs_uring_poll.c -- readiness through a ring (see zs_uring_poll.h).
 */
#include "zs_uring_poll.h"
#include "zs_uring.h"

#include <stdio.h>

#if defined(__linux__)

#include <poll.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define UPOLL_SQ_ENTRIES 256
#define UPOLL_CQ_ENTRIES 1024
/* The user_data of the cancels: no descriptor's poll has it. */
#define UPOLL_CANCEL UINT64_MAX

/* What a listener's multishot accept delivered and the loop has not taken:
 * new descriptors, or a negative errno where accept(2) failed. */
typedef struct {
    int *items;
    unsigned head, len, cap; /* a ring of cap (a power of two) */
} upoll_accepted;

typedef struct {
    uint32_t gen;  /* the registration's poll: bumped when one is cancelled */
    uint8_t want;  /* ZS_EV_READ | ZS_EV_WRITE watched for, 0 when unregistered */
    uint8_t armed; /* the events of the poll in flight, 0 when none */
    uint8_t queued; /* in the queue of polls to arm */
    uint8_t accepting; /* a listener: a multishot accept stands for its read poll */
    uint8_t armed_accept; /* what is armed is that accept */
    uint8_t accept_listed; /* in the list of listeners with connections to take */
    upoll_accepted *accepted; /* made at the first zs_upoll_accept() */
} upoll_fd;

/* Streams on completions: the provided buffers they share. */
#define USTREAM_BGID 1
#define USTREAM_BUFS 256
#define USTREAM_BUF_SIZE (16 * 1024)
/* iovecs and msghdrs of sendmsg submissions not yet handed to the kernel,
 * which copies them at submission (IORING_FEAT_SUBMIT_STABLE) */
#define USTREAM_IOV_ARENA 1024
#define USTREAM_MSG_ARENA 128
/* Datagram sockets' provided buffers: a header, the address, the payload. */
#define UDGRAM_BGID 2
#define UDGRAM_BUFS 64
#define UDGRAM_BUF_SIZE (ZS_UDGRAM_DATA_AT + ZS_UDGRAM_ROOM)
_Static_assert(sizeof(zs_udgram_header) == 16, "io_uring_recvmsg_out is 16 bytes");
_Static_assert(sizeof(struct sockaddr_storage) == ZS_UDGRAM_NAME_ROOM, "sockaddr_storage");

/* user_data: a stream's operation has the top bit set, then its slot's
 * generation (31 bits), the slot (30 bits) and the kind (2 bits); a poll
 * has its descriptor's generation (30 bits) and the descriptor, and a
 * listener's multishot accept the same with bit 62 set. */
#define USTREAM_OP (1ULL << 63)
#define ACCEPT_OP (1ULL << 62)
#define GEN_MASK 0x7fffffffu
#define POLL_GEN_MASK 0x3fffffffu
enum { US_RECV = 1, US_SEND = 2, US_DSEND = 3 /* a datagram's */ };

struct zs_upoll {
    zs_upoll_pub pub; /* first: what the header's inline functions read */
    zs_uring ring;
    upoll_fd *fds; /* by descriptor */
    size_t nfds;
    int *queue; /* descriptors whose poll the next wait arms */
    size_t nqueue, queue_cap;
    int *free_slots, *flushes; /* each with room for every slot (as pub.completed) */
    size_t nfree, nflushes;
    unsigned inflight; /* stream operations in flight */
    zs_ubr bufs;
    int have_bufs;
    zs_ubr dgram_bufs;
    int have_dgram_bufs;
    struct msghdr dgram_recv; /* the multishot recvmsg's template: room for an address */
    int *accept_ready; /* listeners with connections to take (accept_listed) */
    size_t naccept_ready, accept_ready_cap;
    size_t nlisteners; /* records with an accepted queue */
    unsigned accepts; /* multishot accepts in flight, cancelled ones included */
    uint64_t accepted_total, accepts_dropped; /* descriptors delivered to the loop / closed */
    struct iovec iov_arena[USTREAM_IOV_ARENA];
    struct msghdr msg_arena[USTREAM_MSG_ARENA];
    struct sockaddr_storage name_arena[USTREAM_MSG_ARENA]; /* by msg_arena's index */
    size_t niov, nmsg;
};

static uint64_t poll_id(int fd, uint32_t gen)
{
    return ((uint64_t)(gen & POLL_GEN_MASK) << 32) | (uint32_t)fd;
}

/* The user_data of what is armed for `fd`: its poll, or its accept. */
static uint64_t armed_id(int fd, const upoll_fd *f)
{
    return poll_id(fd, f->gen) | (f->armed_accept ? ACCEPT_OP : 0);
}

static uint64_t stream_op_id(int slot, uint32_t gen, int kind)
{
    return USTREAM_OP | ((uint64_t)(gen & GEN_MASK) << 32) | ((uint64_t)slot << 2) | (uint64_t)kind;
}

/* Hand the kernel what is queued, without waiting; the arenas are free again. */
static int submit_now(zs_upoll *p)
{
    int rc = zs_uring_submit(&p->ring, 0, 0);
    p->niov = p->nmsg = 0;
    p->pub.epoch++;
    return rc;
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
        (void)submit_now(p);
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
    zs_prep_cancel(s, armed_id(fd, f), UPOLL_CANCEL);
    s->flags |= ZS_IOSQE_CQE_SKIP_SUCCESS;
    f->gen++;
    f->armed = 0;
    f->armed_accept = 0;
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

static inline void stream_cqe(zs_upoll *p, const zs_uring_cqe *c);
static void trim_accept_ready(zs_upoll *p);
static void accept_cqe(zs_upoll *p, const zs_uring_cqe *c);

/* Close the connections a listener's accepts delivered and nobody took. */
static void close_accepted(upoll_accepted *q)
{
    for (; q->len; q->len--, q->head = (q->head + 1) & (q->cap - 1))
        if (q->items[q->head] >= 0)
            close(q->items[q->head]);
}

/* Cancel every stream operation and accept and wait (boundedly) for their
 * ends: the kernel may write into the provided buffers, and read what sends
 * were given, until then, and an accept may still deliver a descriptor,
 * which is closed. */
static void drain_operations(zs_upoll *p)
{
    zs_uring *r = &p->ring;
    for (size_t i = 0; i < p->pub.nstreams; i++)
        p->pub.streams[i].recv_want = 0;
    for (size_t fd = 0; fd < p->nfds; fd++)
        p->fds[fd].accepting = 0;
    zs_uring_sqe *s = next_sqe(p);
    if (s == NULL)
        return;
    zs_prep_cancel_any(s, UPOLL_CANCEL);
    for (int tries = 0; (p->inflight || p->accepts) && tries < 200; tries++) {
        if (zs_uring_submit(r, 1, 10 * 1000000) < 0)
            break;
        p->niov = p->nmsg = 0;
        p->pub.epoch++;
        zs_uring_cqe *c;
        while ((c = zs_uring_peek_cqe(r)) != NULL) {
            if (c->user_data != UPOLL_CANCEL && (c->user_data & USTREAM_OP))
                stream_cqe(p, c);
            else if (c->user_data != UPOLL_CANCEL && (c->user_data & ACCEPT_OP))
                accept_cqe(p, c);
            zs_uring_cq_advance(r, 1);
        }
    }
}

void zs_upoll_free(zs_upoll *p)
{
    if (p == NULL)
        return;
    if (p->inflight || p->accepts)
        drain_operations(p);
    for (size_t fd = 0; fd < p->nfds; fd++) {
        if (p->fds[fd].accepted) {
            close_accepted(p->fds[fd].accepted);
            free(p->fds[fd].accepted->items);
            free(p->fds[fd].accepted);
        }
    }
    free(p->accept_ready);
    if (p->have_bufs)
        zs_ubr_free(&p->ring, &p->bufs);
    if (p->have_dgram_bufs)
        zs_ubr_free(&p->ring, &p->dgram_bufs);
    zs_uring_exit(&p->ring); /* the kernel cancels what is in flight */
    for (size_t i = 0; i < p->pub.nstreams; i++) {
        free(p->pub.streams[i].rq);
        free(p->pub.streams[i].dsend_res);
    }
    free(p->pub.streams);
    free(p->free_slots);
    free(p->pub.completed);
    free(p->flushes);
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
    if (f->accepting && events != ZS_EV_READ) {
        /* watched for more than its connections: back to a poll */
        if (f->armed && cancel_poll(p, fd, f) < 0)
            return -1;
        f->accepting = 0;
    }
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
    f->accepting = 0;
    if (f->accepted) /* as the listener's close resets those still in its backlog */
        close_accepted(f->accepted);
    if (!f->armed)
        return 0;
    if (cancel_poll(p, fd, f) < 0)
        return -1;
    /* Now: until the poll is gone the ring holds the file, and a close
     * of the descriptor would leave the socket open. */
    int rc = submit_now(p);
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
        /* (a listener's accept is armed again once its connections are taken) */
        if (f->want && !f->armed && !(f->accepting && f->accepted->len)) {
            zs_uring_sqe *s = next_sqe(p);
            if (s == NULL)
                break;
            if (f->accepting) {
                zs_prep_accept_multishot(s, fd, SOCK_NONBLOCK | SOCK_CLOEXEC,
                                         poll_id(fd, f->gen) | ACCEPT_OP);
                f->armed_accept = 1;
                p->accepts++;
            } else {
                zs_prep_poll_add(s, fd, poll_events(f->want), poll_id(fd, f->gen));
            }
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
    /* Completions not dispatched yet (an exception stopped the loop midway) stay
     * listed, and the wait does not block. */
    if (p->pub.ndispatched) {
        for (size_t i = 0; i < p->pub.ndispatched; i++)
            p->pub.streams[p->pub.completed[i]].notified = 0;
        p->pub.ncompleted -= p->pub.ndispatched;
        memmove(p->pub.completed, p->pub.completed + p->pub.ndispatched,
                p->pub.ncompleted * sizeof *p->pub.completed);
        p->pub.ndispatched = 0;
    }
    trim_accept_ready(p);
    unsigned head = *r->cq_head;
    int waiting = timeout_ms != 0 && p->pub.ncompleted == 0 && p->naccept_ready == 0
                  && head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int rc = zs_uring_submit(r, waiting ? 1 : 0,
                             timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
    p->niov = p->nmsg = 0;
    p->pub.epoch++;
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    for (; head != tail; head++) {
        const zs_uring_cqe *c = &r->cqes[head & r->cq_mask];
        if (c->user_data == UPOLL_CANCEL)
            continue;
        if (c->user_data & USTREAM_OP) {
            stream_cqe(p, c);
            continue;
        }
        if (c->user_data & ACCEPT_OP) {
            accept_cqe(p, c);
            continue;
        }
        if (n == max)
            break; /* the rest for the next wait */
        int fd = (int)(uint32_t)c->user_data;
        upoll_fd *f = &p->fds[fd]; /* in the table: it was armed */
        if ((f->gen & POLL_GEN_MASK) != (uint32_t)(c->user_data >> 32) || !f->armed)
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
    /* listeners with connections to take read as readable */
    for (size_t i = 0; i < p->naccept_ready && n < max; i++) {
        out[n].fd = p->accept_ready[i];
        out[n].events = ZS_EV_READ;
        n++;
    }
    return n;
}

/* -- listeners on multishot accept ----------------------------------------- */

/* Keep listed the listeners that still have connections to take. */
static void trim_accept_ready(zs_upoll *p)
{
    size_t kept = 0;
    for (size_t i = 0; i < p->naccept_ready; i++) {
        int fd = p->accept_ready[i];
        upoll_fd *f = &p->fds[fd];
        if (f->want && f->accepted->len)
            p->accept_ready[kept++] = fd;
        else
            f->accept_listed = 0;
    }
    p->naccept_ready = kept;
}

static int push_accepted(upoll_accepted *q, int res)
{
    if (q->len == q->cap) {
        unsigned cap = 2 * q->cap;
        int *grown = malloc(cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        for (unsigned i = 0; i < q->len; i++)
            grown[i] = q->items[(q->head + i) & (q->cap - 1)];
        free(q->items);
        q->items = grown;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->len) & (q->cap - 1)] = res;
    q->len++;
    return 0;
}

static void accept_cqe(zs_upoll *p, const zs_uring_cqe *c)
{
    int fd = (int)(uint32_t)c->user_data;
    uint32_t gen = (uint32_t)(c->user_data >> 32) & POLL_GEN_MASK;
    upoll_fd *f = (size_t)fd < p->nfds ? &p->fds[fd] : NULL;
    int current = f != NULL && f->armed_accept && (f->gen & POLL_GEN_MASK) == gen;
    if (!(c->flags & ZS_CQE_F_MORE)) {
        p->accepts--;
        if (current) /* ended: armed again once what it delivered is taken */
            f->armed = f->armed_accept = 0;
    }
    if (c->res != -ECANCELED) {
        if (current && f->accepting && f->want && push_accepted(f->accepted, c->res) == 0) {
            if (c->res >= 0)
                p->accepted_total++;
            if (!f->accept_listed) {
                f->accept_listed = 1;
                p->accept_ready[p->naccept_ready++] = fd;
            }
        } else if (c->res >= 0) {
            /* cancelled since, or the listener unwatched: nobody takes it */
            close(c->res);
            p->accepts_dropped++;
        }
    }
    if (current && !f->armed && f->accepting && f->want && f->accepted->len == 0)
        enqueue(p, fd, f); /* ended with nothing to take: again now */
}

int zs_upoll_accept(zs_upoll *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->nfds || p->fds[fd].want == 0) {
        errno = EBADF;
        return -1;
    }
    upoll_fd *f = &p->fds[fd];
    if (!(p->ring.caps & ZS_URING_CAP_ACCEPT_MULTI)) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (f->want != ZS_EV_READ) {
        errno = EINVAL;
        return -1;
    }
    if (!f->accepted) {
        /* room in the list of listeners for every one that has a queue */
        int *list = realloc(p->accept_ready, (p->nlisteners + 1) * sizeof *list);
        if (list == NULL)
            goto nomem;
        p->accept_ready = list;
        upoll_accepted *q = calloc(1, sizeof *q);
        if (q == NULL)
            goto nomem;
        q->cap = 16;
        q->items = malloc(q->cap * sizeof *q->items);
        if (q->items == NULL) {
            free(q);
            goto nomem;
        }
        f->accepted = q;
        p->nlisteners++;
    }
    if (f->accepting)
        return 0;
    if (f->armed && cancel_poll(p, fd, f) < 0) /* its poll */
        return -1;
    f->accepting = 1;
    enqueue(p, fd, f);
    return 0;
nomem:
    errno = ENOMEM;
    return -1;
}

int zs_upoll_accepting(const zs_upoll *p, int fd)
{
    const upoll_fd *f = fd >= 0 && (size_t)fd < p->nfds ? &p->fds[fd] : NULL;
    return f != NULL && (f->accepting || (f->accepted && f->accepted->len));
}

int zs_upoll_take_accepted(zs_upoll *p, int fd, int *res)
{
    upoll_fd *f = fd >= 0 && (size_t)fd < p->nfds ? &p->fds[fd] : NULL;
    upoll_accepted *q = f != NULL ? f->accepted : NULL;
    if (q == NULL || q->len == 0)
        return 0;
    *res = q->items[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
    if (q->len == 0 && f->accepting && f->want && !f->armed)
        enqueue(p, fd, f); /* its accept ended meanwhile: again */
    return 1;
}

int zs_accepted_peer(int fd, int family, struct sockaddr *addr, zs_socklen_t *len)
{
    /* SO_PEERNAME asks the socket as accept(2) does, where getpeername(2)
     * fails with ENOTCONN once the connection is reset; it takes the exact
     * length of the family's address. */
    if (family == AF_INET || family == AF_INET6) {
        *len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        return getsockopt(fd, SOL_SOCKET, SO_PEERNAME, addr, len);
    }
    return getpeername(fd, addr, len);
}

void zs_upoll_accept_counts(const zs_upoll *p, uint64_t *accepted, uint64_t *dropped)
{
    *accepted = p->accepted_total;
    *dropped = p->accepts_dropped;
}

/* -- streams on completions ------------------------------------------------ */

static int arm_recv(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    zs_uring_sqe *s = next_sqe(p);
    if (s == NULL)
        return -1;
    if (u->dgram) {
        zs_prep_recvmsg(s, u->fd, &p->dgram_recv, 0, stream_op_id(slot, u->gen, US_RECV));
        s->ioprio = ZS_RECV_MULTISHOT;
        s->flags = ZS_IOSQE_BUFFER_SELECT;
        s->buf_group = UDGRAM_BGID;
    } else {
        zs_prep_recv_multishot(s, u->fd, USTREAM_BGID, stream_op_id(slot, u->gen, US_RECV));
    }
    u->recv_armed = 1;
    p->inflight++;
    return 0;
}

static void notify(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    if (!u->notified) {
        u->notified = 1;
        p->pub.completed[p->pub.ncompleted++] = slot;
    }
}

/* Queue a receive for the stream to take; 0, or -1 when out of memory. */
static int push_recv(zs_ustream *u, int32_t res, int32_t bid)
{
    if (u->rq_len == u->rq_cap) {
        unsigned cap = u->rq_cap ? 2 * u->rq_cap : 4;
        zs_urecv *grown = malloc(cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        for (unsigned i = 0; i < u->rq_len; i++)
            grown[i] = u->rq[(u->rq_head + i) & (u->rq_cap - 1)];
        free(u->rq);
        u->rq = grown;
        u->rq_cap = cap;
        u->rq_head = 0;
    }
    u->rq[(u->rq_head + u->rq_len) & (u->rq_cap - 1)] = (zs_urecv){res, bid};
    u->rq_len++;
    return 0;
}

/* Give back a buffer of the group the slot's receives select from. */
static void slot_put(zs_upoll *p, const zs_ustream *u, int32_t bid)
{
    if (u->dgram)
        zs_udgram_put(p, bid);
    else
        zs_ustream_put(p, bid);
}

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void stream_cqe(zs_upoll *p, const zs_uring_cqe *c)
{
    int slot = (int)((c->user_data >> 2) & 0x3fffffffu);
    int kind = (int)(c->user_data & 3);
    uint32_t gen = (uint32_t)(c->user_data >> 32) & GEN_MASK;
    int32_t bid = c->flags & ZS_CQE_F_BUFFER ? (int32_t)(c->flags >> ZS_CQE_BUFFER_SHIFT) : -1;
    zs_ustream *u = (size_t)slot < p->pub.nstreams ? &p->pub.streams[slot] : NULL;
    if (u == NULL || u->fd < 0 || (u->gen & GEN_MASK) != gen) {
        if (bid >= 0 && u != NULL) /* never: a slot is reused only once idle */
            slot_put(p, u, bid);
        return;
    }
    if (kind == US_DSEND) {
        u->dsend_busy--;
        if (u->dsend_done < ZS_UDGRAM_BATCH) /* (one batch in flight: always) */
            u->dsend_res[u->dsend_done++] = c->res;
        p->inflight--;
        notify(p, slot);
        return;
    }
    if (kind == US_SEND) {
        u->send_busy = 0;
        u->send_done = 1;
        u->send_res = c->res;
        p->inflight--;
        notify(p, slot);
        return;
    }
    if (!(c->flags & ZS_CQE_F_MORE)) {
        u->recv_armed = 0;
        u->recv_cancelling = 0;
        p->inflight--;
    }
    if (c->res == -ENOBUFS || c->res == -ECANCELED) {
        if (bid >= 0)
            slot_put(p, u, bid);
    } else {
        if (c->res <= 0)
            u->recv_ended = 1;
        if (push_recv(u, c->res, bid) != 0) {
            /* out of memory: the stream ends with the error */
            if (bid >= 0)
                slot_put(p, u, bid);
            u->recv_ended = 1;
            if (u->rq_len)
                u->rq[(u->rq_head + u->rq_len - 1) & (u->rq_cap - 1)] = (zs_urecv){-ENOMEM, -1};
        }
    }
    if (!u->recv_armed && u->recv_want && !u->recv_ended)
        (void)arm_recv(p, slot); /* ended (the buffers ran out, a resume): again */
    notify(p, slot);
}

static int open_slot(zs_upoll *p, int fd);

int zs_ustream_open(zs_upoll *p, int fd)
{
    if (!p->have_bufs) {
        if (zs_ubr_init(&p->ring, &p->bufs, USTREAM_BGID, USTREAM_BUFS, USTREAM_BUF_SIZE) != 0)
            return -1;
        p->have_bufs = 1;
        p->pub.buf_base = p->bufs.bufs;
        p->pub.buf_size = p->bufs.buf_size;
    }
    return open_slot(p, fd);
}

int zs_udgram_open(zs_upoll *p, int fd)
{
    if (!p->have_dgram_bufs) {
        if (zs_ubr_init(&p->ring, &p->dgram_bufs, UDGRAM_BGID, UDGRAM_BUFS, UDGRAM_BUF_SIZE) != 0)
            return -1;
        p->have_dgram_bufs = 1;
        p->pub.dgram_base = p->dgram_bufs.bufs;
        p->pub.dgram_size = p->dgram_bufs.buf_size;
        p->dgram_recv.msg_namelen = ZS_UDGRAM_NAME_ROOM;
    }
    int slot = open_slot(p, fd);
    if (slot < 0)
        return -1;
    zs_ustream *u = &p->pub.streams[slot];
    if (u->dsend_res == NULL) {
        u->dsend_res = malloc(ZS_UDGRAM_BATCH * sizeof *u->dsend_res);
        if (u->dsend_res == NULL) {
            zs_ustream_release(p, slot);
            errno = ENOMEM;
            return -1;
        }
    }
    u->dgram = 1;
    return slot;
}

static int open_slot(zs_upoll *p, int fd)
{
    if (p->nfree == 0) {
        size_t n = p->pub.nstreams ? 2 * p->pub.nstreams : 64;
        zs_ustream *grown = realloc(p->pub.streams, n * sizeof *grown);
        if (grown == NULL)
            goto nomem;
        p->pub.streams = grown;
        int *free_slots = realloc(p->free_slots, n * sizeof *free_slots);
        if (free_slots == NULL)
            goto nomem;
        p->free_slots = free_slots;
        int *completed = realloc(p->pub.completed, n * sizeof *completed);
        if (completed == NULL)
            goto nomem;
        p->pub.completed = completed;
        int *flushes = realloc(p->flushes, n * sizeof *flushes);
        if (flushes == NULL)
            goto nomem;
        p->flushes = flushes;
        memset(grown + p->pub.nstreams, 0, (n - p->pub.nstreams) * sizeof *grown);
        for (size_t i = n; i > p->pub.nstreams; i--) {
            grown[i - 1].fd = -1;
            p->free_slots[p->nfree++] = (int)(i - 1);
        }
        p->pub.nstreams = n;
    }
    int slot = p->free_slots[--p->nfree];
    zs_ustream *u = &p->pub.streams[slot];
    zs_urecv *rq = u->rq;
    unsigned rq_cap = u->rq_cap;
    int32_t *dsend_res = u->dsend_res;
    uint32_t gen = u->gen + 1;
    uint8_t notified = u->notified, flush_listed = u->flush_listed;
    memset(u, 0, sizeof *u);
    u->fd = fd;
    u->gen = gen;
    u->rq = rq;
    u->rq_cap = rq_cap;
    u->dsend_res = dsend_res;
    u->notified = notified; /* a slot is listed once, whoever its stream */
    u->flush_listed = flush_listed;
    return slot;
nomem:
    errno = ENOMEM;
    return -1;
}

int zs_ustream_busy(const zs_upoll *p, int slot)
{
    const zs_ustream *u = &p->pub.streams[slot];
    return u->recv_armed + u->send_busy + u->dsend_busy;
}

void zs_ustream_release(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    zs_urecv got;
    while (zs_ustream_take(p, slot, &got))
        if (got.bid >= 0)
            slot_put(p, u, got.bid);
    u->fd = -1;
    p->free_slots[p->nfree++] = slot;
}

int zs_ustream_recv_start(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    u->recv_want = 1;
    if (u->recv_armed || u->recv_ended)
        return 0; /* (a cancel under way: its end arms the next) */
    return arm_recv(p, slot);
}

int zs_ustream_recv_stop(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    u->recv_want = 0;
    if (!u->recv_armed || u->recv_cancelling)
        return 0;
    zs_uring_sqe *s = next_sqe(p);
    if (s == NULL)
        return -1;
    zs_prep_cancel(s, stream_op_id(slot, u->gen, US_RECV), UPOLL_CANCEL);
    s->flags |= ZS_IOSQE_CQE_SKIP_SUCCESS;
    u->recv_cancelling = 1;
    return 0;
}

int zs_ustream_receiving(const zs_upoll *p, int slot)
{
    const zs_ustream *u = &p->pub.streams[slot];
    return u->recv_want && !u->recv_ended;
}

int zs_ustream_send_withdraw(zs_upoll *p, int slot)
{
    if (!zs_ustream_send_open(p, slot))
        return 0;
    zs_uring_sqe *s = p->pub.streams[slot].send_sqe;
    uint64_t id = s->user_data;
    memset(s, 0, sizeof *s); /* a no-op, completing as the send would have */
    s->opcode = ZS_OP_NOP;
    s->user_data = id;
    return 1;
}

int zs_ustream_send(zs_upoll *p, int slot, const void *buf, size_t len, int iovcnt)
{
    zs_ustream *u = &p->pub.streams[slot];
    int grow = zs_ustream_send_open(p, slot);
    if (iovcnt > 0 && (p->niov + (size_t)iovcnt > USTREAM_IOV_ARENA || p->nmsg == USTREAM_MSG_ARENA)) {
        int rc = submit_now(p);
        if (rc < 0) {
            errno = -rc;
            return -1;
        }
        if (grow)
            return 1; /* the send went as it was */
    }
    zs_uring_sqe *s = grow ? u->send_sqe : next_sqe(p);
    if (s == NULL)
        return -1;
    if (grow)
        memset(s, 0, sizeof *s);
    uint64_t id = stream_op_id(slot, u->gen, US_SEND);
    if (iovcnt > 0) {
        struct iovec *iov = &p->iov_arena[p->niov];
        struct msghdr *msg = &p->msg_arena[p->nmsg++];
        memcpy(iov, buf, (size_t)iovcnt * sizeof *iov);
        p->niov += (size_t)iovcnt;
        memset(msg, 0, sizeof *msg);
        msg->msg_iov = iov;
        msg->msg_iovlen = (size_t)iovcnt;
        zs_prep_sendmsg(s, u->fd, msg, MSG_NOSIGNAL, id);
    } else {
        zs_prep_send(s, u->fd, buf, len, MSG_NOSIGNAL, id);
    }
    u->send_sqe = s;
    u->send_epoch = p->pub.epoch;
    if (!grow) {
        u->send_busy = 1;
        u->send_done = 0;
        p->inflight++;
    }
    return 0;
}

int zs_ustream_send_cancel(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    if (!u->send_busy && !u->dsend_busy)
        return 0;
    zs_uring_sqe *s = next_sqe(p);
    if (s == NULL)
        return -1;
    zs_prep_cancel(s, stream_op_id(slot, u->gen, u->dgram ? US_DSEND : US_SEND), UPOLL_CANCEL);
    s->flags |= ZS_IOSQE_CQE_SKIP_SUCCESS;
    if (u->dgram)
        s->op_flags |= ZS_ASYNC_CANCEL_ALL; /* a batch's sends share their user_data */
    return 0;
}

int zs_udgram_send(zs_upoll *p, int slot, const zs_udgram_out *out, int n)
{
    zs_ustream *u = &p->pub.streams[slot];
    zs_uring *r = &p->ring;
    if (n > ZS_UDGRAM_BATCH)
        n = ZS_UDGRAM_BATCH;
    /* A link goes to the next submission in the queue: the batch's must
     * follow one another, with no submit between them. */
    unsigned used = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (p->nmsg + (size_t)n > USTREAM_MSG_ARENA || p->niov + (size_t)n > USTREAM_IOV_ARENA
        || used + (unsigned)n > r->sq_entries) {
        int rc = submit_now(p);
        if (rc < 0) {
            errno = -rc;
            return -1;
        }
        used = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
        if (used + (unsigned)n > r->sq_entries)
            n = (int)(r->sq_entries - used);
        if (n <= 0) {
            errno = EBUSY;
            return -1;
        }
    }
    uint64_t id = stream_op_id(slot, u->gen, US_DSEND);
    for (int i = 0; i < n; i++) {
        zs_uring_sqe *s = zs_uring_get_sqe(r); /* (room was made above) */
        struct iovec *iov = &p->iov_arena[p->niov++];
        struct msghdr *msg = &p->msg_arena[p->nmsg];
        struct sockaddr_storage *name = &p->name_arena[p->nmsg++];
        iov->iov_base = (void *)out[i].buf;
        iov->iov_len = out[i].len;
        memset(msg, 0, sizeof *msg);
        if (out[i].name != NULL) {
            memcpy(name, out[i].name, out[i].namelen);
            msg->msg_name = name;
            msg->msg_namelen = out[i].namelen;
        }
        msg->msg_iov = iov;
        msg->msg_iovlen = 1;
        zs_prep_sendmsg(s, u->fd, msg, 0, id);
        if (i + 1 < n)
            s->flags |= ZS_IOSQE_IO_LINK;
    }
    u->dsend_busy = (uint16_t)(u->dsend_busy + n);
    p->inflight += (unsigned)n;
    return n;
}

int zs_udgram_recv_restart(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    u->recv_ended = 0;
    return u->recv_want ? zs_ustream_recv_start(p, slot) : 0;
}

void zs_udgram_put(zs_upoll *p, int32_t bid)
{
    zs_ubr_put(&p->dgram_bufs, (unsigned)bid);
    zs_ubr_publish(&p->dgram_bufs);
}

void zs_ustream_put(zs_upoll *p, int32_t bid)
{
    zs_ubr_put(&p->bufs, (unsigned)bid);
    zs_ubr_publish(&p->bufs);
}

int zs_upoll_submit(zs_upoll *p)
{
    return submit_now(p);
}

int zs_upoll_completed(const zs_upoll *p, const int **slots)
{
    *slots = p->pub.completed;
    return (int)p->pub.ncompleted;
}

void zs_upoll_dispatched(zs_upoll *p)
{
    p->pub.ndispatched = p->pub.ncompleted;
}

void zs_ustream_flush_later(zs_upoll *p, int slot)
{
    zs_ustream *u = &p->pub.streams[slot];
    if (!u->flush_listed) {
        u->flush_listed = 1;
        p->flushes[p->nflushes++] = slot;
    }
}

int zs_upoll_take_flushes(zs_upoll *p, int *out, int max)
{
    int n = (int)p->nflushes < max ? (int)p->nflushes : max;
    if (n == 0)
        return 0; /* (no list at all before the first stream) */
    for (int i = 0; i < n; i++) {
        out[i] = p->flushes[i];
        p->pub.streams[out[i]].flush_listed = 0;
    }
    p->nflushes -= (size_t)n;
    memmove(p->flushes, p->flushes + n, p->nflushes * sizeof *p->flushes);
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
int zs_ustream_open(zs_upoll *p, int fd) { (void)p; (void)fd; errno = ENOSYS; return -1; }
int zs_ustream_busy(const zs_upoll *p, int slot) { (void)p; (void)slot; return 0; }
void zs_ustream_release(zs_upoll *p, int slot) { (void)p; (void)slot; }
int zs_ustream_recv_start(zs_upoll *p, int slot) { (void)p; (void)slot; return -1; }
int zs_ustream_recv_stop(zs_upoll *p, int slot) { (void)p; (void)slot; return 0; }
int zs_ustream_receiving(const zs_upoll *p, int slot) { (void)p; (void)slot; return 0; }
int zs_ustream_send(zs_upoll *p, int slot, const void *buf, size_t len, int iovcnt)
{
    (void)p; (void)slot; (void)buf; (void)len; (void)iovcnt;
    return -1;
}
int zs_ustream_send_cancel(zs_upoll *p, int slot) { (void)p; (void)slot; return 0; }
int zs_ustream_send_withdraw(zs_upoll *p, int slot) { (void)p; (void)slot; return 0; }
void zs_ustream_put(zs_upoll *p, int32_t bid) { (void)p; (void)bid; }
int zs_udgram_open(zs_upoll *p, int fd) { (void)p; (void)fd; errno = ENOSYS; return -1; }
int zs_udgram_send(zs_upoll *p, int slot, const zs_udgram_out *out, int n)
{
    (void)p; (void)slot; (void)out; (void)n;
    errno = ENOSYS;
    return -1;
}
int zs_udgram_recv_restart(zs_upoll *p, int slot) { (void)p; (void)slot; return -1; }
void zs_udgram_put(zs_upoll *p, int32_t bid) { (void)p; (void)bid; }
int zs_upoll_submit(zs_upoll *p) { (void)p; return -ENOSYS; }
int zs_upoll_completed(const zs_upoll *p, const int **slots) { (void)p; *slots = NULL; return 0; }
void zs_upoll_dispatched(zs_upoll *p) { (void)p; }
void zs_ustream_flush_later(zs_upoll *p, int slot) { (void)p; (void)slot; }
int zs_upoll_take_flushes(zs_upoll *p, int *out, int max) { (void)p; (void)out; (void)max; return 0; }
int zs_upoll_accept(zs_upoll *p, int fd) { (void)p; (void)fd; errno = ENOSYS; return -1; }
int zs_upoll_accepting(const zs_upoll *p, int fd) { (void)p; (void)fd; return 0; }
int zs_upoll_take_accepted(zs_upoll *p, int fd, int *res) { (void)p; (void)fd; (void)res; return 0; }
int zs_accepted_peer(int fd, int family, struct sockaddr *addr, zs_socklen_t *len)
{
    (void)family;
    return getpeername(fd, addr, len);
}
void zs_upoll_accept_counts(const zs_upoll *p, uint64_t *accepted, uint64_t *dropped)
{
    (void)p;
    *accepted = *dropped = 0;
}

#endif
