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
int zs_ustream_send_open(const zs_upoll *p, int slot);
/* Turn a send not submitted yet into a no-op (its completion, 0 bytes, still
 * comes): 1, or 0 when there is none. */
int zs_ustream_send_withdraw(zs_upoll *p, int slot);
/* Cancel the send in flight, if any.  0, or -1 with errno. */
int zs_ustream_send_cancel(zs_upoll *p, int slot);
/* The result of the send that completed since the last call: 1 and `*res`, or 0. */
int zs_ustream_send_result(zs_upoll *p, int slot, int32_t *res);
/* The oldest receive not taken: 1 and `*out`, or 0.  Its bytes are at
 * zs_ustream_data(); give its buffer back with zs_ustream_put(). */
int zs_ustream_take(zs_upoll *p, int slot, zs_urecv *out);
/* The oldest receive not taken, left in place: 1 and `*out`, or 0. */
int zs_ustream_peek(const zs_upoll *p, int slot, zs_urecv *out);
/* How many receives wait to be taken. */
int zs_ustream_pending(const zs_upoll *p, int slot);
const char *zs_ustream_data(const zs_upoll *p, int32_t bid);
void zs_ustream_put(zs_upoll *p, int32_t bid);
/* Hand the kernel what is queued now, without waiting: 0, or a negative errno. */
int zs_upoll_submit(zs_upoll *p);
/* The slots with completions from the last wait not dispatched yet, valid
 * until the next one (which keeps those not dispatched by then). */
int zs_upoll_completed(const zs_upoll *p, const int **slots);
/* The next slot to dispatch (taken off the list), or -1 when none is left. */
int zs_upoll_next_completed(zs_upoll *p);
/* Mark every listed slot dispatched. */
void zs_upoll_dispatched(zs_upoll *p);
/* List the stream for a flush of its writes before the next wait (once
 * until zs_upoll_take_flushes() hands it back). */
void zs_ustream_flush_later(zs_upoll *p, int slot);
/* Move up to `max` listed streams to `out`: their count. */
int zs_upoll_take_flushes(zs_upoll *p, int *out, int max);

#ifdef __cplusplus
}
#endif

#endif /* ZS_URING_POLL_H */
