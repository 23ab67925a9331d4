/*
 * zs_wire.h -- a socket transport's socket, lent to the layer above it.
 *
 * A TLS engine moves its ciphertext fastest straight between the kernel and
 * OpenSSL's own buffers: received into OpenSSL's record buffer, sent from the
 * buffer a record was made in.  The socket stays the transport's: it lends it
 * for one call into the layer -- a readiness event, one write -- as a zs_wire,
 * through which the layer receives at most once and sends only while the
 * transport has nothing queued.  The wire keeps what that receive or send
 * met (the end of the stream, an error) for the transport, which acts on it
 * when the call returns exactly as its own read or write would.  OpenSSL's
 * callbacks may run with the GIL released: nothing here touches Python.
 *
 * A wire may lend memory instead: ciphertext another kind of transport handed
 * over (a BufferedProtocol's buffer_updated), given out until it is all taken.
 */
#ifndef ZS_WIRE_H
#define ZS_WIRE_H

#include "zs_shim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    zs_sock_t fd;        /* the socket lent, or ZS_INVALID_SOCKET */
    const char *mem;     /* a memory wire's bytes not yet taken */
    size_t mem_len;
    int recv_left;       /* 1 while the socket's one receive of this lending is unused */
    int send_ok;         /* sends go straight out: nothing is queued before them */
    int eof;             /* the receive found the end of the stream */
    int recv_err;        /* the error the receive met (zs_last_error()), 0 if none */
    int send_err;        /* the error a send met, 0 if none */
} zs_wire;

/* The socket lent for one receive (a readiness event) and/or for sending. */
static inline void zs_wire_lend_socket(zs_wire *w, zs_sock_t fd, int recv, int send)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->recv_left = recv != 0;
    w->send_ok = send != 0;
}

static inline void zs_wire_lend_memory(zs_wire *w, const char *data, size_t len)
{
    memset(w, 0, sizeof(*w));
    w->fd = ZS_INVALID_SOCKET;
    w->mem = data;
    w->mem_len = len;
}

/* Whether a receive could still give bytes in this lending. */
static inline int zs_wire_can_recv(const zs_wire *w)
{
    return w->mem_len != 0 || w->recv_left;
}

/* Whether the lending met what the transport must act on: the end of the
 * stream or an error. */
static inline int zs_wire_to_report(const zs_wire *w)
{
    return w->eof || w->recv_err || w->send_err;
}

/* Up to `n` bytes into `buf`: the count, or 0 when there is nothing to give
 * now (the receive was used, it would block, or it met the end of the stream
 * or an error, which the wire keeps). */
static inline size_t zs_wire_recv(zs_wire *w, char *buf, size_t n)
{
    long got;
    if (w->recv_left && n != 0) {
        w->recv_left = 0;  /* one receive a readiness event, as the transport's own read */
        got = zs_recv(w->fd, buf, n, 0);
        if (got > 0)
            return (size_t)got;
        if (got == 0) {
            w->eof = 1;
        } else {
            int e = zs_last_error();
            if (!zs_is_would_block(e) && e != ZS_EINTR)
                w->recv_err = e;
        }
        return 0;
    }
    if (w->mem_len != 0) {
        size_t k = w->mem_len < n ? w->mem_len : n;
        memcpy(buf, w->mem, k);
        w->mem += k;
        w->mem_len -= k;
        return k;
    }
    return 0;
}

/* Send what the kernel takes of `n` bytes: the count (0 when sending is not
 * lent), or -1 when the send failed (the wire keeps the error).  After a
 * short send nothing more goes out in this lending: the rest, and whatever
 * follows it, queues in order behind. */
static inline long zs_wire_send(zs_wire *w, const char *buf, size_t n)
{
    long sent;
    if (!w->send_ok)
        return 0;
    sent = zs_send(w->fd, buf, n, 0);
    if (sent == (long)n)
        return sent;
    w->send_ok = 0;
    if (sent >= 0)
        return sent;
    {
        int e = zs_last_error();
        if (zs_is_would_block(e) || e == ZS_EINTR)
            return 0;
        w->send_err = e;
    }
    return -1;
}

#ifdef __cplusplus
}
#endif

#endif /* ZS_WIRE_H */
