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

#ifdef __cplusplus
}
#endif

#endif /* ZS_URING_POLL_H */
