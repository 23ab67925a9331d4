/* zs_poller.h: the readiness pollers behind one interface.
 *
 * epoll (Linux), kqueue (BSD, macOS), poll (POSIX; WSAPoll on Windows) and
 * select (POSIX fd_set; on Windows a socket array with no FD_SETSIZE cap).
 * Every backend reports readiness as ZS_EV_READ | ZS_EV_WRITE into a caller's
 * zs_event array, mapping errors and hang-ups the way the standard library's
 * selectors module does (anything but "writable" counts as readable, anything
 * but "readable" as writable).
 *
 * Threading contract (the Cython layer holds the GIL for all but the wait):
 * zs_poller_add/mod/del and zs_poller_prepare run with the GIL held;
 * zs_poller_wait may run without it, and touches only memory that
 * zs_poller_prepare set aside for it, so another thread may add or remove
 * descriptors while one thread waits.  One wait at a time per poller.
 *
 * Errors: functions return -1 and leave the code in zs_last_error();
 * ZS_ENOMEM and ZS_EFDRANGE are this header's own codes for "out of memory"
 * and "descriptor too large for select()".
 */
#ifndef ZS_POLLER_H
#define ZS_POLLER_H

#include "zs_shim.h" /* first: it selects the platform's feature macros */
#include <stdlib.h>

#if defined(__linux__)
#  include <sys/epoll.h>
#  define ZS_HAVE_EPOLL 1
#else
#  define ZS_HAVE_EPOLL 0
#endif

#ifndef ZS_HAVE_KQUEUE
#  if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
      defined(__OpenBSD__) || defined(__DragonFly__)
#    define ZS_HAVE_KQUEUE 1
#  else
#    define ZS_HAVE_KQUEUE 0
#  endif
#endif
#if ZS_HAVE_KQUEUE
#  include <sys/event.h>
#  include <sys/time.h>
#endif

#ifdef _WIN32
/* The standard library has no PollSelector on Windows (WSAPoll misses failed
 * connects on older releases), so the public class is left out there too;
 * the poll backend still exists for the C-level API. */
#  define ZS_PUBLIC_POLL 0
#else
#  include <sys/select.h>
#  include <time.h>
#  define ZS_PUBLIC_POLL 1
#endif

#define ZS_HAVE_POLL 1
#define ZS_HAVE_SELECT 1

#ifdef __cplusplus
extern "C" {
#endif

enum {
    ZS_POLLER_EPOLL = 1,
    ZS_POLLER_KQUEUE = 2,
    ZS_POLLER_POLL = 3,
    ZS_POLLER_SELECT = 4
};

/* Poller flags. */
#define ZS_POLLER_EDGE 1 /* edge-triggered (EPOLLET / EV_CLEAR); epoll and kqueue only */

/* The same bits as selectors.EVENT_READ / EVENT_WRITE. */
#define ZS_EV_READ 1
#define ZS_EV_WRITE 2
/* Beside ZS_EV_READ, from epoll only: the peer shut down its writing, or the
 * socket has an error or hung up; what the next read finds may be that end
 * rather than data.  Never part of a registration's interest, so masking a
 * ready event with its interest drops it. */
#define ZS_EV_HUP 4

#define ZS_ENOMEM (-1001)
#define ZS_EFDRANGE (-1002)

/* What the best poller of this platform is (the DefaultSelector). */
#if ZS_HAVE_KQUEUE
#  define ZS_POLLER_DEFAULT ZS_POLLER_KQUEUE
#elif ZS_HAVE_EPOLL
#  define ZS_POLLER_DEFAULT ZS_POLLER_EPOLL
#elif defined(_WIN32)
#  define ZS_POLLER_DEFAULT ZS_POLLER_SELECT
#else
#  define ZS_POLLER_DEFAULT ZS_POLLER_POLL
#endif

typedef struct {
    zs_sock_t fd;
    int events; /* ZS_EV_READ | ZS_EV_WRITE */
} zs_event;

#ifdef _WIN32
/* A Winsock fd_set is a count and an array; allocating the array ourselves
 * lifts the FD_SETSIZE (64) cap, as Winsock documents. */
typedef struct {
    u_int fd_count;
    SOCKET fd_array[1];
} zs_winset;
#endif

typedef struct {
    int kind;
    int flags;
    int open;
    int count; /* descriptors registered */
    /* epoll / kqueue */
    int kfd;
    void *native;     /* struct epoll_event[] or struct kevent[] for the wait */
    int native_cap;
    int kq_filters;   /* kqueue: filters registered (a descriptor may have two) */
    /* poll: a master array the mutators edit and a copy the wait uses */
    zs_pollfd *pfds;
    int npfds, pfds_cap;
    zs_pollfd *work;
    int nwork, work_cap;
    int dirty;
    int *pos;         /* fd -> index into pfds, for fd < pos_cap; -1 if absent */
    size_t pos_cap;
    /* select */
#ifdef _WIN32
    zs_winset *set_r, *set_w;             /* interest */
    int set_cap;
    zs_winset *work_r, *work_w, *work_x;  /* what the wait hands select() */
    int work_set_cap;
#else
    fd_set set_r, set_w, work_r, work_w;
    int maxfd, work_maxfd;
    int nbig;         /* registered descriptors >= FD_SETSIZE */
#endif
} zs_poller;

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static inline int zs_poller_fail(int code)
{
    zs_set_last_error(code);
    return -1;
}

static inline int zs_grow(void **buf, int *cap, int need, size_t item)
{
    if (need <= *cap)
        return 0;
    int n = *cap ? *cap : 8;
    while (n < need) {
        if (n > INT_MAX / 2)
            return zs_poller_fail(ZS_ENOMEM);
        n *= 2;
    }
    void *p = realloc(*buf, (size_t)n * item);
    if (!p)
        return zs_poller_fail(ZS_ENOMEM);
    *buf = p;
    *cap = n;
    return 0;
}

/* The standard library's translation of poll-style bits: whatever is not
 * plain "readable" wakes writers, whatever is not plain "writable" wakes
 * readers (so errors and hang-ups wake both). */
static inline int zs_from_poll_bits(int revents, int in_bit, int out_bit)
{
    int ev = 0;
    if (revents & ~in_bit)
        ev |= ZS_EV_WRITE;
    if (revents & ~out_bit)
        ev |= ZS_EV_READ;
    return ev;
}

/* ------------------------------------------------------------------ */
/* poll: index of a descriptor in the master array                     */
/* ------------------------------------------------------------------ */

/* Direct indexing for descriptors below this; a linear scan above it (only
 * Windows socket handles get that large). */
#define ZS_POS_DIRECT_MAX (1 << 20)

static inline int zs_pos_get(const zs_poller *p, zs_sock_t fd)
{
    if ((size_t)fd < p->pos_cap)
        return p->pos[fd];
    if ((size_t)fd < ZS_POS_DIRECT_MAX)
        return -1;
    for (int i = 0; i < p->npfds; i++)
        if (p->pfds[i].fd == fd)
            return i;
    return -1;
}

static inline int zs_pos_set(zs_poller *p, zs_sock_t fd, int index)
{
    if ((size_t)fd >= ZS_POS_DIRECT_MAX)
        return 0;
    if ((size_t)fd >= p->pos_cap) {
        size_t n = p->pos_cap ? p->pos_cap : 64;
        while (n <= (size_t)fd)
            n *= 2;
        int *q = (int *)realloc(p->pos, n * sizeof(int));
        if (!q)
            return zs_poller_fail(ZS_ENOMEM);
        for (size_t i = p->pos_cap; i < n; i++)
            q[i] = -1;
        p->pos = q;
        p->pos_cap = n;
    }
    p->pos[fd] = index;
    return 0;
}

/* ------------------------------------------------------------------ */
/* select on Windows: socket arrays                                    */
/* ------------------------------------------------------------------ */

#ifdef _WIN32
static inline zs_winset *zs_winset_resize(zs_winset *s, int cap)
{
    zs_winset *n = (zs_winset *)realloc(s, sizeof(zs_winset) + (size_t)cap * sizeof(SOCKET));
    if (n && !s)
        n->fd_count = 0;
    return n;
}

static inline void zs_winset_remove(zs_winset *s, SOCKET fd)
{
    for (u_int i = 0; i < s->fd_count; i++) {
        if (s->fd_array[i] == fd) {
            s->fd_array[i] = s->fd_array[--s->fd_count];
            return;
        }
    }
}

static inline int zs_winset_has(const zs_winset *s, SOCKET fd)
{
    for (u_int i = 0; i < s->fd_count; i++)
        if (s->fd_array[i] == fd)
            return 1;
    return 0;
}
#endif

/* ------------------------------------------------------------------ */
/* life cycle                                                          */
/* ------------------------------------------------------------------ */

/* 1 when `kind` is compiled in on this platform. */
static inline int zs_poller_available(int kind)
{
    switch (kind) {
    case ZS_POLLER_EPOLL: return ZS_HAVE_EPOLL;
    case ZS_POLLER_KQUEUE: return ZS_HAVE_KQUEUE;
    case ZS_POLLER_POLL: return ZS_HAVE_POLL;
    case ZS_POLLER_SELECT: return ZS_HAVE_SELECT;
    default: return 0;
    }
}

static inline int zs_poller_init(zs_poller *p, int kind, int flags)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->flags = flags;
    p->kfd = -1;
    if (!zs_poller_available(kind))
        return zs_poller_fail(ZS_ENOTSUP);
    if ((flags & ZS_POLLER_EDGE) && kind != ZS_POLLER_EPOLL && kind != ZS_POLLER_KQUEUE)
        return zs_poller_fail(ZS_EINVAL);
#if ZS_HAVE_EPOLL
    if (kind == ZS_POLLER_EPOLL) {
        p->kfd = epoll_create1(EPOLL_CLOEXEC);
        if (p->kfd < 0)
            return -1;
    }
#endif
#if ZS_HAVE_KQUEUE
    if (kind == ZS_POLLER_KQUEUE) {
        p->kfd = kqueue();
        if (p->kfd < 0)
            return -1;
        (void)fcntl(p->kfd, F_SETFD, FD_CLOEXEC);
    }
#endif
#ifdef _WIN32
    if (kind == ZS_POLLER_SELECT) {
        p->set_r = zs_winset_resize(NULL, 8);
        p->set_w = zs_winset_resize(NULL, 8);
        if (!p->set_r || !p->set_w) {
            free(p->set_r);
            free(p->set_w);
            p->set_r = p->set_w = NULL;
            return zs_poller_fail(ZS_ENOMEM);
        }
        p->set_cap = 8;
    }
#else
    FD_ZERO(&p->set_r);
    FD_ZERO(&p->set_w);
    p->maxfd = -1;
#endif
    p->open = 1;
    return 0;
}

/* The kernel object's descriptor (epoll, kqueue), or -1. */
static inline int zs_poller_fileno(const zs_poller *p)
{
    return p->open ? p->kfd : -1;
}

/* Close the kernel object; the memory stays until zs_poller_free() (a wait
 * in another thread may still be using it). */
static inline int zs_poller_close(zs_poller *p)
{
    int rc = 0;
#ifndef _WIN32
    if (p->open && p->kfd >= 0)
        rc = close(p->kfd);
#endif
    p->kfd = -1;
    p->open = 0;
    return rc;
}

static inline void zs_poller_free(zs_poller *p)
{
    (void)zs_poller_close(p);
    free(p->native);
    free(p->pfds);
    free(p->work);
    free(p->pos);
#ifdef _WIN32
    free(p->set_r);
    free(p->set_w);
    free(p->work_r);
    free(p->work_w);
    free(p->work_x);
    p->set_r = p->set_w = p->work_r = p->work_w = p->work_x = NULL;
#endif
    p->native = NULL;
    p->pfds = p->work = NULL;
    p->pos = NULL;
    p->native_cap = p->pfds_cap = p->work_cap = 0;
    p->pos_cap = 0;
}

/* ------------------------------------------------------------------ */
/* registration                                                        */
/* ------------------------------------------------------------------ */

#if ZS_HAVE_EPOLL
static inline int zs_epoll_ctl(zs_poller *p, int op, zs_sock_t fd, int events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    if (events & ZS_EV_READ)
        ev.events |= EPOLLIN | EPOLLRDHUP; /* RDHUP comes with IN: no extra wake-up */
    if (events & ZS_EV_WRITE)
        ev.events |= EPOLLOUT;
    if (p->flags & ZS_POLLER_EDGE)
        ev.events |= EPOLLET;
    ev.data.fd = fd;
    return epoll_ctl(p->kfd, op, fd, &ev);
}
#endif

#if ZS_HAVE_KQUEUE
/* Apply filter changes one at a time so a failure names its filter. */
static inline int zs_kq_change(zs_poller *p, zs_sock_t fd, int filter, int flags)
{
    struct kevent kev;
    struct timespec zero = {0, 0};
    if (flags & EV_ADD && p->flags & ZS_POLLER_EDGE)
        flags |= EV_CLEAR;
    EV_SET(&kev, (uintptr_t)fd, filter, flags, 0, 0, NULL);
    return kevent(p->kfd, &kev, 1, NULL, 0, &zero);
}

/* Move `fd` from the `old` filter set to `new`; on failure nothing changed. */
static inline int zs_kq_update(zs_poller *p, zs_sock_t fd, int old, int new_)
{
    int added = 0;
    if ((new_ & ZS_EV_READ) && !(old & ZS_EV_READ)) {
        if (zs_kq_change(p, fd, EVFILT_READ, EV_ADD) < 0)
            return -1;
        added |= ZS_EV_READ;
    }
    if ((new_ & ZS_EV_WRITE) && !(old & ZS_EV_WRITE)) {
        if (zs_kq_change(p, fd, EVFILT_WRITE, EV_ADD) < 0) {
            int err = zs_last_error();
            if (added & ZS_EV_READ)
                (void)zs_kq_change(p, fd, EVFILT_READ, EV_DELETE);
            return zs_poller_fail(err);
        }
        added |= ZS_EV_WRITE;
    }
    /* Deletions of a closed descriptor's filters fail harmlessly. */
    if ((old & ZS_EV_READ) && !(new_ & ZS_EV_READ))
        (void)zs_kq_change(p, fd, EVFILT_READ, EV_DELETE);
    if ((old & ZS_EV_WRITE) && !(new_ & ZS_EV_WRITE))
        (void)zs_kq_change(p, fd, EVFILT_WRITE, EV_DELETE);
    p->kq_filters += ((new_ & ZS_EV_READ) != 0) + ((new_ & ZS_EV_WRITE) != 0)
                   - ((old & ZS_EV_READ) != 0) - ((old & ZS_EV_WRITE) != 0);
    return 0;
}
#endif

static inline short zs_poll_bits(int events)
{
    short bits = 0;
    if (events & ZS_EV_READ)
        bits |= POLLIN;
    if (events & ZS_EV_WRITE)
        bits |= POLLOUT;
    return bits;
}

/* Start watching `fd` for `events` (ZS_EV_READ | ZS_EV_WRITE).  The caller
 * guarantees `fd` is not registered already. */
static inline int zs_poller_add(zs_poller *p, zs_sock_t fd, int events)
{
    if (!p->open)
        return zs_poller_fail(ZS_EBADF);
    switch (p->kind) {
#if ZS_HAVE_EPOLL
    case ZS_POLLER_EPOLL:
        if (zs_epoll_ctl(p, EPOLL_CTL_ADD, fd, events) < 0)
            return -1;
        break;
#endif
#if ZS_HAVE_KQUEUE
    case ZS_POLLER_KQUEUE:
        if (zs_kq_update(p, fd, 0, events) < 0)
            return -1;
        break;
#endif
    case ZS_POLLER_POLL: {
        if (zs_grow((void **)&p->pfds, &p->pfds_cap, p->npfds + 1, sizeof(zs_pollfd)) < 0)
            return -1;
        if (zs_pos_set(p, fd, p->npfds) < 0)
            return -1;
        zs_pollfd *slot = &p->pfds[p->npfds++];
        slot->fd = fd;
        slot->events = zs_poll_bits(events);
        slot->revents = 0;
        p->dirty = 1;
        break;
    }
    case ZS_POLLER_SELECT:
#ifdef _WIN32
        if (p->count + 1 > p->set_cap) {
            int cap = p->set_cap * 2;
            zs_winset *r = zs_winset_resize(p->set_r, cap);
            if (!r)
                return zs_poller_fail(ZS_ENOMEM);
            p->set_r = r;
            zs_winset *w = zs_winset_resize(p->set_w, cap);
            if (!w)
                return zs_poller_fail(ZS_ENOMEM);
            p->set_w = w;
            p->set_cap = cap;
        }
        if (events & ZS_EV_READ)
            p->set_r->fd_array[p->set_r->fd_count++] = fd;
        if (events & ZS_EV_WRITE)
            p->set_w->fd_array[p->set_w->fd_count++] = fd;
#else
        if (fd >= FD_SETSIZE) {
            /* As the standard library does, refuse it at select() time. */
            p->nbig++;
            break;
        }
        if (events & ZS_EV_READ)
            FD_SET(fd, &p->set_r);
        if (events & ZS_EV_WRITE)
            FD_SET(fd, &p->set_w);
        if (fd > p->maxfd)
            p->maxfd = fd;
#endif
        break;
    default:
        return zs_poller_fail(ZS_ENOTSUP);
    }
    p->count++;
    return 0;
}

/* Change the events of a registered `fd` from `old` to `events`. */
static inline int zs_poller_mod(zs_poller *p, zs_sock_t fd, int old, int events)
{
    (void)old; /* kqueue and Windows select need it */
    if (!p->open)
        return zs_poller_fail(ZS_EBADF);
    switch (p->kind) {
#if ZS_HAVE_EPOLL
    case ZS_POLLER_EPOLL:
        return zs_epoll_ctl(p, EPOLL_CTL_MOD, fd, events);
#endif
#if ZS_HAVE_KQUEUE
    case ZS_POLLER_KQUEUE:
        return zs_kq_update(p, fd, old, events);
#endif
    case ZS_POLLER_POLL: {
        int i = zs_pos_get(p, fd);
        if (i < 0)
            return zs_poller_fail(ENOENT);
        p->pfds[i].events = zs_poll_bits(events);
        p->dirty = 1;
        return 0;
    }
    case ZS_POLLER_SELECT:
#ifdef _WIN32
        if ((old & ZS_EV_READ) && !(events & ZS_EV_READ))
            zs_winset_remove(p->set_r, fd);
        if ((old & ZS_EV_WRITE) && !(events & ZS_EV_WRITE))
            zs_winset_remove(p->set_w, fd);
        if (!(old & ZS_EV_READ) && (events & ZS_EV_READ))
            p->set_r->fd_array[p->set_r->fd_count++] = fd;
        if (!(old & ZS_EV_WRITE) && (events & ZS_EV_WRITE))
            p->set_w->fd_array[p->set_w->fd_count++] = fd;
#else
        if (fd >= FD_SETSIZE)
            return 0;
        if (events & ZS_EV_READ)
            FD_SET(fd, &p->set_r);
        else
            FD_CLR(fd, &p->set_r);
        if (events & ZS_EV_WRITE)
            FD_SET(fd, &p->set_w);
        else
            FD_CLR(fd, &p->set_w);
#endif
        return 0;
    default:
        return zs_poller_fail(ZS_ENOTSUP);
    }
}

/* Stop watching `fd` (registered with `old` events).  Always forgets it; a
 * kernel error (the descriptor was closed meanwhile) is returned as -1 for
 * the caller to ignore, as the standard library does. */
static inline int zs_poller_del(zs_poller *p, zs_sock_t fd, int old)
{
    int rc = 0;
    (void)old;
    switch (p->kind) {
#if ZS_HAVE_EPOLL
    case ZS_POLLER_EPOLL: {
        struct epoll_event ev; /* kernels before 2.6.9 insist on one */
        memset(&ev, 0, sizeof(ev));
        rc = p->open ? epoll_ctl(p->kfd, EPOLL_CTL_DEL, fd, &ev) : 0;
        break;
    }
#endif
#if ZS_HAVE_KQUEUE
    case ZS_POLLER_KQUEUE:
        if (p->open)
            rc = zs_kq_update(p, fd, old, 0);
        break;
#endif
    case ZS_POLLER_POLL: {
        int i = zs_pos_get(p, fd);
        if (i < 0)
            return zs_poller_fail(ENOENT);
        int last = --p->npfds;
        if (i != last) {
            p->pfds[i] = p->pfds[last];
            (void)zs_pos_set(p, p->pfds[i].fd, i); /* in range: it was set before */
        }
        (void)zs_pos_set(p, fd, -1);
        p->dirty = 1;
        break;
    }
    case ZS_POLLER_SELECT:
#ifdef _WIN32
        zs_winset_remove(p->set_r, fd);
        zs_winset_remove(p->set_w, fd);
#else
        if (fd >= FD_SETSIZE) {
            p->nbig--;
            break;
        }
        FD_CLR(fd, &p->set_r);
        FD_CLR(fd, &p->set_w);
        while (p->maxfd >= 0 && !FD_ISSET(p->maxfd, &p->set_r) && !FD_ISSET(p->maxfd, &p->set_w))
            p->maxfd--;
#endif
        break;
    default:
        return zs_poller_fail(ZS_ENOTSUP);
    }
    p->count--;
    return rc;
}

/* ------------------------------------------------------------------ */
/* waiting                                                             */
/* ------------------------------------------------------------------ */

/* How many events one wait can report: the size the caller's zs_event
 * array needs. */
static inline int zs_poller_capacity(const zs_poller *p)
{
    int n = p->kind == ZS_POLLER_KQUEUE ? p->kq_filters : p->count;
    return n > 0 ? n : 1;
}

/* Set aside what the next wait uses (with the GIL held): room for
 * `capacity` kernel events and a private copy of the interest set. */
static inline int zs_poller_prepare(zs_poller *p, int capacity)
{
    (void)capacity; /* only epoll and kqueue need room for kernel events */
    if (!p->open)
        return zs_poller_fail(ZS_EBADF);
    switch (p->kind) {
#if ZS_HAVE_EPOLL
    case ZS_POLLER_EPOLL:
        return zs_grow(&p->native, &p->native_cap, capacity, sizeof(struct epoll_event));
#endif
#if ZS_HAVE_KQUEUE
    case ZS_POLLER_KQUEUE:
        return zs_grow(&p->native, &p->native_cap, capacity, sizeof(struct kevent));
#endif
    case ZS_POLLER_POLL:
        if (p->dirty) {
            if (zs_grow((void **)&p->work, &p->work_cap, p->npfds, sizeof(zs_pollfd)) < 0)
                return -1;
            if (p->npfds)
                memcpy(p->work, p->pfds, (size_t)p->npfds * sizeof(zs_pollfd));
            p->nwork = p->npfds;
            p->dirty = 0;
        }
        return 0;
    case ZS_POLLER_SELECT:
#ifdef _WIN32
        if (p->work_set_cap < p->set_cap) {
            zs_winset *r = zs_winset_resize(p->work_r, p->set_cap);
            if (r) p->work_r = r;
            zs_winset *w = zs_winset_resize(p->work_w, p->set_cap);
            if (w) p->work_w = w;
            zs_winset *x = zs_winset_resize(p->work_x, p->set_cap);
            if (x) p->work_x = x;
            if (!r || !w || !x)
                return zs_poller_fail(ZS_ENOMEM);
            p->work_set_cap = p->set_cap;
        }
        p->work_r->fd_count = p->set_r->fd_count;
        memcpy(p->work_r->fd_array, p->set_r->fd_array, p->set_r->fd_count * sizeof(SOCKET));
        p->work_w->fd_count = p->set_w->fd_count;
        memcpy(p->work_w->fd_array, p->set_w->fd_array, p->set_w->fd_count * sizeof(SOCKET));
        p->work_x->fd_count = p->set_w->fd_count;
        memcpy(p->work_x->fd_array, p->set_w->fd_array, p->set_w->fd_count * sizeof(SOCKET));
#else
        if (p->nbig)
            return zs_poller_fail(ZS_EFDRANGE);
        p->work_r = p->set_r;
        p->work_w = p->set_w;
        p->work_maxfd = p->maxfd;
#endif
        return 0;
    default:
        return zs_poller_fail(ZS_ENOTSUP);
    }
}

#if ZS_HAVE_KQUEUE
static inline struct timespec *zs_ms_to_timespec(int timeout_ms, struct timespec *ts)
{
    if (timeout_ms < 0)
        return NULL;
    ts->tv_sec = timeout_ms / 1000;
    ts->tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    return ts;
}
#endif

/* select()'s timeout, NULL to wait forever. */
static inline struct timeval *zs_ms_to_timeval(int timeout_ms, struct timeval *tv)
{
    if (timeout_ms < 0)
        return NULL;
    tv->tv_sec = timeout_ms / 1000;
    tv->tv_usec = (timeout_ms % 1000) * 1000;
    return tv;
}

/* Wait up to `timeout_ms` (-1: forever) after zs_poller_prepare(); write at
 * most `max` events to `out` and return their count, or -1 (EINTR included:
 * the caller retries).  Safe without the GIL. */
static inline int zs_poller_wait(zs_poller *p, zs_event *out, int max, int timeout_ms)
{
    int n, k = 0;
    switch (p->kind) {
#if ZS_HAVE_EPOLL
    case ZS_POLLER_EPOLL: {
        struct epoll_event *evs = (struct epoll_event *)p->native;
        if (max > p->native_cap)
            max = p->native_cap;
        n = epoll_wait(p->kfd, evs, max, timeout_ms);
        for (int i = 0; i < n; i++) {
            out[i].fd = evs[i].data.fd;
            int re = (int)evs[i].events;
            /* RDHUP aside, the bits the standard library's epoll selector sees. */
            out[i].events = zs_from_poll_bits(re & ~EPOLLRDHUP, EPOLLIN, EPOLLOUT)
                          | ((re & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ? ZS_EV_HUP : 0);
        }
        return n;
    }
#endif
#if ZS_HAVE_KQUEUE
    case ZS_POLLER_KQUEUE: {
        struct kevent *evs = (struct kevent *)p->native;
        struct timespec ts;
        if (max > p->native_cap)
            max = p->native_cap;
        n = kevent(p->kfd, NULL, 0, evs, max, zs_ms_to_timespec(timeout_ms, &ts));
        for (int i = 0; i < n; i++) {
            out[i].fd = (zs_sock_t)evs[i].ident;
            out[i].events = evs[i].filter == EVFILT_READ ? ZS_EV_READ
                          : evs[i].filter == EVFILT_WRITE ? ZS_EV_WRITE : 0;
        }
        return n;
    }
#endif
    case ZS_POLLER_POLL:
#ifdef _WIN32
        if (p->nwork == 0) {
            /* WSAPoll refuses an empty set; wait as an empty poll() would. */
            if (timeout_ms < 0)
                return zs_poller_fail(ZS_EINVAL);
            Sleep((DWORD)timeout_ms);
            return 0;
        }
#endif
        n = zs_poll(p->work, (unsigned long)p->nwork, timeout_ms);
        if (n <= 0)
            return n;
        for (int i = 0; i < p->nwork && k < max; i++) {
            int re = p->work[i].revents;
            if (re) {
                out[k].fd = p->work[i].fd;
                out[k].events = zs_from_poll_bits(re, POLLIN, POLLOUT);
                k++;
            }
        }
        return k;
    case ZS_POLLER_SELECT: {
#ifdef _WIN32
        if (p->work_r->fd_count == 0 && p->work_w->fd_count == 0) {
            /* Winsock select() refuses empty sets. */
            if (timeout_ms < 0)
                return zs_poller_fail(ZS_EINVAL);
            Sleep((DWORD)timeout_ms);
            return 0;
        }
        struct timeval tv, *tvp = zs_ms_to_timeval(timeout_ms, &tv);
        n = select(0, (fd_set *)p->work_r, (fd_set *)p->work_w, (fd_set *)p->work_x, tvp);
        if (n <= 0)
            return n;
        /* One event per socket, as the standard library's SelectSelector
         * reports; a failed connect shows up in the exception set, which
         * wakes writers. */
        for (u_int i = 0; i < p->work_r->fd_count && k < max; i++) {
            SOCKET fd = p->work_r->fd_array[i];
            out[k].fd = fd;
            out[k++].events = ZS_EV_READ
                | (zs_winset_has(p->work_w, fd) || zs_winset_has(p->work_x, fd) ? ZS_EV_WRITE : 0);
        }
        for (u_int i = 0; i < p->work_w->fd_count && k < max; i++) {
            SOCKET fd = p->work_w->fd_array[i];
            if (!zs_winset_has(p->work_r, fd)) {
                out[k].fd = fd;
                out[k++].events = ZS_EV_WRITE;
            }
        }
        for (u_int i = 0; i < p->work_x->fd_count && k < max; i++) {
            SOCKET fd = p->work_x->fd_array[i];
            if (!zs_winset_has(p->work_r, fd) && !zs_winset_has(p->work_w, fd)) {
                out[k].fd = fd;
                out[k++].events = ZS_EV_WRITE;
            }
        }
        return k;
#else
        struct timeval tv, *tvp = zs_ms_to_timeval(timeout_ms, &tv);
        int top = p->work_maxfd;
        n = select(top + 1, &p->work_r, &p->work_w, NULL, tvp);
        if (n <= 0)
            return n;
        for (int fd = 0; fd <= top && k < max; fd++) {
            int ev = (FD_ISSET(fd, &p->work_r) ? ZS_EV_READ : 0)
                   | (FD_ISSET(fd, &p->work_w) ? ZS_EV_WRITE : 0);
            if (ev) {
                out[k].fd = fd;
                out[k++].events = ev;
            }
        }
        return k;
#endif
    }
    default:
        return zs_poller_fail(ZS_ENOTSUP);
    }
}

#ifdef __cplusplus
}
#endif

#endif /* ZS_POLLER_H */
