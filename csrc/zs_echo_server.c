/*
 * zs_echo_server.c -- the benchmark's reference server (see zs_loadgen.h):
 * the least a server can do per request on this kernel, one epoll set, one
 * recv and one send per wakeup.  Linux (epoll) only; a stub elsewhere.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#endif
#include "zs_loadgen.h"

#include <stdlib.h>
#include <stdio.h>

#if defined(__linux__)

#include <sys/epoll.h>

#define ZS_ES_MAX_EVENTS 256

/* ------------------------------------------------------------------ */
/* the reference echo server                                           */
/* ------------------------------------------------------------------ */

#define ZS_ES_BUF (256 * 1024)

typedef struct {
    int fd;
    size_t pending_off, pending_len; /* unsent echo bytes in buf */
    unsigned char buf[ZS_ES_BUF];
} zs_es_conn;

static char zs_es_listen_tag, zs_es_stop_tag;

static void es_close(int ep, zs_es_conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* After a failed send or recv: a call that would block or was interrupted
 * leaves the connection as it is; any other error closes it. */
static void es_failed(int ep, zs_es_conn *c)
{
    if (errno != EAGAIN && errno != EINTR)
        es_close(ep, c);
}

static int es_err(char *err, size_t errlen, const char *what, int code)
{
    snprintf(err, errlen, "%s: %s", what, strerror(code));
    return -1;
}

/* Echo: read once per wakeup, write it straight back; while a write is
 * unfinished, wait for EPOLLOUT and read nothing more. */
static void es_on_conn(int ep, zs_es_conn *c, uint32_t ev, int mode)
{
    struct epoll_event mod;
    memset(&mod, 0, sizeof mod);
    mod.data.ptr = c;
    if (c->pending_len) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        ssize_t n = send(c->fd, c->buf + c->pending_off, c->pending_len, MSG_NOSIGNAL);
        if (n < 0) {
            es_failed(ep, c);
            return;
        }
        c->pending_off += (size_t)n;
        c->pending_len -= (size_t)n;
        if (c->pending_len == 0) {
            mod.events = EPOLLIN;
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mod);
        }
        return;
    }
    ssize_t n = recv(c->fd, c->buf, ZS_ES_BUF, 0);
    if (n < 0) {
        es_failed(ep, c);
        return;
    }
    if (n == 0) {
        es_close(ep, c);
        return;
    }
    if (mode == ZS_LG_STREAM)
        return;
    ssize_t s = send(c->fd, c->buf, (size_t)n, MSG_NOSIGNAL);
    if (s < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            es_close(ep, c);
            return;
        }
        s = 0;
    }
    if (s < n) {
        c->pending_off = (size_t)s;
        c->pending_len = (size_t)(n - s);
        mod.events = EPOLLOUT;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mod);
    }
}

int zs_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen)
{
    int rc = -1;
    unsigned char *dgram = NULL;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return es_err(err, errlen, "epoll_create1", errno);
    if (zs_set_nonblocking(listen_fd, 1) != 0) {
        es_err(err, errlen, "fcntl", errno);
        goto done;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = &zs_es_listen_tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) != 0) {
        es_err(err, errlen, "epoll_ctl", errno);
        goto done;
    }
    ev.data.ptr = &zs_es_stop_tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev) != 0) {
        es_err(err, errlen, "epoll_ctl(stop)", errno);
        goto done;
    }
    if (mode == ZS_LG_UDP && !(dgram = malloc(65536))) {
        es_err(err, errlen, "malloc", ENOMEM);
        goto done;
    }
    struct epoll_event events[ZS_ES_MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, ZS_ES_MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            es_err(err, errlen, "epoll_wait", errno);
            goto done;
        }
        for (int k = 0; k < n; k++) {
            void *tag = events[k].data.ptr;
            if (tag == &zs_es_stop_tag) {
                rc = 0;
                goto done;
            }
            if (tag == &zs_es_listen_tag && mode == ZS_LG_UDP) {
                struct sockaddr_storage peer;
                socklen_t plen = sizeof peer;
                ssize_t got = recvfrom(listen_fd, dgram, 65536, 0, (struct sockaddr *)&peer, &plen);
                if (got >= 0)
                    (void)sendto(listen_fd, dgram, (size_t)got, MSG_NOSIGNAL,
                                 (struct sockaddr *)&peer, plen);
                continue;
            }
            if (tag == &zs_es_listen_tag) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                zs_es_conn *c = malloc(sizeof *c);
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                c->pending_off = c->pending_len = 0;
                struct epoll_event cev;
                memset(&cev, 0, sizeof cev);
                cev.events = EPOLLIN;
                cev.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) {
                    close(fd);
                    free(c);
                }
                continue;
            }
            es_on_conn(ep, (zs_es_conn *)tag, events[k].events, mode);
        }
    }
done:
    free(dgram);
    close(ep);
    /* Connections still open are reclaimed by the process's exit. */
    return rc;
}

#else /* no epoll */

int zs_echo_server_run(int listen_fd, int mode, int stop_fd, char *err, size_t errlen)
{
    (void)listen_fd; (void)mode; (void)stop_fd;
    snprintf(err, errlen, "the C echo server needs epoll (Linux)");
    return -1;
}

#endif
