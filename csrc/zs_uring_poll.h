/*
 * zs_uring_poll.h -- readiness through a ring (zs_uring_poll.c): the selector API's poller for
 * an event loop on io_uring.  Each registered descriptor has one single-shot
 * poll in flight for what it is watched for; one that completed is armed
 * again by the next wait, all in that wait's one system call, so readiness
 * is level-triggered as epoll's is.  Removing a descriptor cancels its poll
 * at once: the ring holds the file until then, and closing the descriptor
 * would not close the socket.  One thread at a time.  Everywhere but Linux
 * zs_upoll_new() says there is no io_uring.
 */
#ifndef ZS_URING_POLL_H
#define ZS_URING_POLL_H

#include "zs_poller.h" /* zs_event, ZS_EV_* */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zs_upoll zs_upoll;
/* NULL with errno set and a sentence in `reason` when no ring can be made. */
zs_upoll *zs_upoll_new(char *reason, size_t reason_len);
void zs_upoll_free(zs_upoll *p);
int zs_upoll_fileno(const zs_upoll *p);
/* Watch `fd` for ZS_EV_READ | ZS_EV_WRITE; 0, or -1 with errno. */
int zs_upoll_add(zs_upoll *p, int fd, int events);
int zs_upoll_mod(zs_upoll *p, int fd, int events);
int zs_upoll_del(zs_upoll *p, int fd);
/*
 * Have the ring accept the connections of listener `fd`, watched for
 * reading, with a multishot accept in place of its poll, until it is
 * unwatched or watched for more than reading (its poll again).  Each
 * connection accepted, or accept(2)'s error, waits for
 * zs_upoll_take_accepted(); the listener reads as readable while any does,
 * and its accept, should it end, is armed again once they are all taken.
 * Connections not taken when the listener is unwatched, or delivered after
 * that, are closed.  0, or -1 with errno (EOPNOTSUPP: no multishot accept
 * on this kernel; EBADF: not watched; EINVAL: watched for more than reading).
 */
int zs_upoll_accept(zs_upoll *p, int fd);
/* Whether the ring accepts for listener `fd`, or holds connections it accepted. */
int zs_upoll_accepting(const zs_upoll *p, int fd);
/* The oldest connection (its descriptor, or a negative errno) accepted for
 * listener `fd`: 1 and `*res`, or 0 when none waits. */
int zs_upoll_take_accepted(zs_upoll *p, int fd, int *res);
/* What accept(2) would have given as the peer's address of the connection
 * `fd` that an accept on the ring took (whose completion carries none),
 * even once the peer has reset it: 0 and `*len`, or -1 with errno. */
int zs_accepted_peer(int fd, int family, struct sockaddr *addr, zs_socklen_t *len);
/* Descriptors the accepts delivered so far, and those closed because
 * nobody could take them any more (for tests). */
void zs_upoll_accept_counts(const zs_upoll *p, uint64_t *accepted, uint64_t *dropped);
/* Queue the polls that the next wait arms; 0, or -1 with errno. */
int zs_upoll_prepare(zs_upoll *p);
/* Arm, wait up to `timeout_ms` (-1: no limit) and write at most `max`
 * ready events to `out`: their count (0 also after a signal), or -1 with errno. */
int zs_upoll_wait(zs_upoll *p, zs_event *out, int max, int timeout_ms);

/*
 * Stream sockets on completions, in the same ring: a multishot recv into a
 * provided-buffer ring the streams share (an idle stream holds no buffer)
 * and sends of memory the caller keeps alive until their completion.  Each
 * stream is a slot; every operation carries the slot and its generation in
 * its user_data, so a completion never reaches a later stream in the slot
 * (a slot is reused only once nothing of its stream is in flight).  The
 * submissions go with the next wait.
 */
typedef struct {
    int32_t res;  /* bytes (> 0), 0 at the end of the stream, or a negative errno */
    int32_t bid;  /* the buffer holding them, -1 when none */
} zs_urecv;

/* A stream's slot.  Its record and the few fields below are in the header
 * so that what the loop calls once per completion inlines. */
typedef struct {
    int fd;             /* -1 while the slot is free */
    uint32_t gen;       /* bumped when the slot is given to a stream */
    uint8_t recv_armed; /* a multishot recv in flight */
    uint8_t recv_want;  /* keep one in flight */
    uint8_t recv_cancelling;
    uint8_t recv_ended; /* the end of the stream or an error was received */
    uint8_t send_busy, send_done;
    uint8_t notified, flush_listed; /* in the completed / flushes lists (kept across reuse) */
    uint8_t dgram;      /* a datagram socket (zs_udgram_open) */
    uint16_t dsend_busy, dsend_done; /* its sends in flight / completed, results not taken */
    int32_t *dsend_res; /* their results, room for ZS_UDGRAM_BATCH (kept across reuse) */
    int32_t send_res;
    void *send_sqe;     /* the send's SQE while not submitted (send_epoch is the ring's epoch) */
    unsigned send_epoch;
    zs_urecv *rq;       /* receives not taken yet, a ring of rq_cap (a power of two) */
    unsigned rq_head, rq_len, rq_cap;
} zs_ustream;

/* The head of a zs_upoll. */
typedef struct {
    zs_ustream *streams; /* by slot */
    size_t nstreams;
    int *completed;      /* slots with completions, room for every slot */
    size_t ncompleted, ndispatched;
    unsigned epoch;      /* submissions so far: an SQE queued in this epoch is not submitted yet */
    unsigned char *buf_base; /* the provided buffers */
    size_t buf_size;
    unsigned char *dgram_base; /* the datagram sockets' provided buffers */
    size_t dgram_size;
} zs_upoll_pub;
#define ZS_UPOLL_PUB(p) ((zs_upoll_pub *)(void *)(p))
#define ZS_UPOLL_CPUB(p) ((const zs_upoll_pub *)(const void *)(p))

/* A slot for the stream on `fd`: its number, or -1 with errno. */
int zs_ustream_open(zs_upoll *p, int fd);
/* Operations of the slot's stream still in flight (a recv, a send). */
int zs_ustream_busy(const zs_upoll *p, int slot);
/* Free the slot; only once zs_ustream_busy() is 0 and its receives are taken. */
void zs_ustream_release(zs_upoll *p, int slot);
/* Keep a multishot recv going (armed by the next wait) / cancel it.  0, or -1 with errno. */
int zs_ustream_recv_start(zs_upoll *p, int slot);
int zs_ustream_recv_stop(zs_upoll *p, int slot);
/* Whether a multishot recv is in flight or asked for. */
int zs_ustream_receiving(const zs_upoll *p, int slot);
/* Send `len` bytes of `buf` (`iovcnt` > 0: `buf` is that many struct iovec),
 * which stay alive until the send's completion; one send at a time, but a
 * send not submitted yet (zs_ustream_send_open) is replaced by this one.
 * 0; 1 when the send to replace had to be submitted first (it stays as it
 * was); or -1 with errno. */
int zs_ustream_send(zs_upoll *p, int slot, const void *buf, size_t len, int iovcnt);
/* Whether the slot's send is queued and not submitted yet. */
static inline int zs_ustream_send_open(const zs_upoll *p, int slot)
{
    const zs_upoll_pub *h = ZS_UPOLL_CPUB(p);
    const zs_ustream *u = &h->streams[slot];
    return u->send_busy && u->send_sqe != NULL && u->send_epoch == h->epoch;
}
/* Turn a send not submitted yet into a no-op (its completion, 0 bytes, still
 * comes): 1, or 0 when there is none. */
int zs_ustream_send_withdraw(zs_upoll *p, int slot);
/* Cancel the send in flight, if any.  0, or -1 with errno. */
int zs_ustream_send_cancel(zs_upoll *p, int slot);
/* The result of the send that completed since the last call: 1 and `*res`, or 0. */
static inline int zs_ustream_send_result(zs_upoll *p, int slot, int32_t *res)
{
    zs_ustream *u = &ZS_UPOLL_PUB(p)->streams[slot];
    if (!u->send_done)
        return 0;
    u->send_done = 0;
    *res = u->send_res;
    return 1;
}
/* The oldest receive not taken, left in place: 1 and `*out`, or 0. */
static inline int zs_ustream_peek(const zs_upoll *p, int slot, zs_urecv *out)
{
    const zs_ustream *u = &ZS_UPOLL_CPUB(p)->streams[slot];
    if (u->rq_len == 0)
        return 0;
    *out = u->rq[u->rq_head];
    return 1;
}
/* The oldest receive not taken: 1 and `*out`, or 0.  Its bytes are at
 * zs_ustream_data(); give its buffer back with zs_ustream_put(). */
static inline int zs_ustream_take(zs_upoll *p, int slot, zs_urecv *out)
{
    zs_ustream *u = &ZS_UPOLL_PUB(p)->streams[slot];
    if (u->rq_len == 0)
        return 0;
    *out = u->rq[u->rq_head];
    u->rq_head = (u->rq_head + 1) & (u->rq_cap - 1);
    u->rq_len--;
    return 1;
}
/* How many receives wait to be taken. */
static inline int zs_ustream_pending(const zs_upoll *p, int slot)
{
    return (int)ZS_UPOLL_CPUB(p)->streams[slot].rq_len;
}
static inline const char *zs_ustream_data(const zs_upoll *p, int32_t bid)
{
    const zs_upoll_pub *h = ZS_UPOLL_CPUB(p);
    return (const char *)h->buf_base + (size_t)bid * h->buf_size;
}
void zs_ustream_put(zs_upoll *p, int32_t bid);
/* Hand the kernel what is queued now, without waiting: 0, or a negative errno. */
int zs_upoll_submit(zs_upoll *p);
/* The slots with completions from the last wait not dispatched yet, valid
 * until the next one (which keeps those not dispatched by then). */
int zs_upoll_completed(const zs_upoll *p, const int **slots);
/* The next slot to dispatch (taken off the list), or -1 when none is left. */
static inline int zs_upoll_next_completed(zs_upoll *p)
{
    zs_upoll_pub *h = ZS_UPOLL_PUB(p);
    if (h->ndispatched == h->ncompleted)
        return -1;
    return h->completed[h->ndispatched++];
}
/* Mark every listed slot dispatched. */
void zs_upoll_dispatched(zs_upoll *p);
/* Mark the first `n` listed slots dispatched (none of them taken yet). */
static inline void zs_upoll_skip_completed(zs_upoll *p, int n)
{
    ZS_UPOLL_PUB(p)->ndispatched = (size_t)n;
}
/* List the stream for a flush of its writes before the next wait (once
 * until zs_upoll_take_flushes() hands it back). */
void zs_ustream_flush_later(zs_upoll *p, int slot);
/* Move up to `max` listed streams to `out`: their count. */
int zs_upoll_take_flushes(zs_upoll *p, int *out, int max);

/*
 * Datagram sockets on completions, in stream slots of their own kind: a
 * multishot recvmsg into provided buffers of their own, each of room for the
 * largest IP datagram (its source address before it), so that no datagram
 * is ever truncated by the buffer; and batches of sendmsg, each linked to
 * the next so that they leave in order (one waiting for room holds back
 * those behind it).  A send's completion comes as a result (zs_udgram_results),
 * a receive as a stream's does (zs_ustream_take: `res` is the buffer's bytes
 * used, header and address included, or a negative errno that ended the
 * recvmsg: zs_udgram_recv_restart goes on).  Pause, close and release as a
 * stream's slot (zs_ustream_recv_stop, _send_cancel, _busy, _release).
 */
#define ZS_UDGRAM_ROOM (64 * 1024) /* payload room: IPv4's 65507, IPv6's 65527 */
#define ZS_UDGRAM_NAME_ROOM 128    /* sizeof(struct sockaddr_storage) */
#define ZS_UDGRAM_BATCH 32         /* sends per batch */
/* Where a received datagram's address and payload start in its buffer. */
#define ZS_UDGRAM_NAME_AT ((int)sizeof(zs_udgram_header))
#define ZS_UDGRAM_DATA_AT (ZS_UDGRAM_NAME_AT + ZS_UDGRAM_NAME_ROOM)

typedef struct { /* the kernel's struct io_uring_recvmsg_out */
    uint32_t namelen, controllen, payloadlen, flags;
} zs_udgram_header;

typedef struct { /* one datagram to send: `name` NULL on a connected socket */
    const void *buf;
    size_t len;
    const void *name;
    uint32_t namelen;
} zs_udgram_out;

/* A slot for the datagram socket on `fd`: its number, or -1 with errno. */
int zs_udgram_open(zs_upoll *p, int fd);
/* Queue the sends of `out[0..n)` (kept alive until their completions), in
 * order, for the next wait: how many were queued (at most ZS_UDGRAM_BATCH),
 * or -1 with errno. */
int zs_udgram_send(zs_upoll *p, int slot, const zs_udgram_out *out, int n);
/* The results of the sends completed and not taken yet, in order (bytes,
 * or a negative errno; -ECANCELED for one behind a failed or cancelled
 * one, which never left): their count, `*res` valid until the next wait. */
static inline int zs_udgram_results(const zs_upoll *p, int slot, const int32_t **res)
{
    const zs_ustream *u = &ZS_UPOLL_CPUB(p)->streams[slot];
    *res = u->dsend_res;
    return u->dsend_done;
}
static inline void zs_udgram_results_taken(zs_upoll *p, int slot)
{
    ZS_UPOLL_PUB(p)->streams[slot].dsend_done = 0;
}
/* Keep receiving after an error ended the recvmsg.  0, or -1 with errno. */
int zs_udgram_recv_restart(zs_upoll *p, int slot);
static inline const char *zs_udgram_data(const zs_upoll *p, int32_t bid)
{
    const zs_upoll_pub *h = ZS_UPOLL_CPUB(p);
    return (const char *)h->dgram_base + (size_t)bid * h->dgram_size;
}
void zs_udgram_put(zs_upoll *p, int32_t bid);

#ifdef __cplusplus
}
#endif

#endif /* ZS_URING_POLL_H */
