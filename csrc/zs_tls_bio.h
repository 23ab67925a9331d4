/*
 * zs_tls_bio.h -- the OpenSSL engine's BIO: a TLS session's ciphertext in
 * and out, over the socket its transport lends (zs_wire.h).
 *
 * Input: while a wire is plugged in, a read the session makes with nothing
 * held receives from the wire straight into the session's record buffer.
 * The session reads ahead, so that is one receive for as many records as
 * fit, and the wire allows one a readiness event, as the transport's own
 * read would make.  What the session did not ask for before the wire is
 * unplugged is taken into memory of the BIO's own (`held`), read first.
 *
 * Output: while a wire lent for sending is set, a record goes out from the
 * buffer OpenSSL made it in; what the kernel leaves, and every record after
 * it, is appended to one growing buffer (not a memory BIO, which clears every
 * byte it grows by and is read out through one more copy) that the transport
 * sends later.
 *
 * One BIO serves both directions (the session's rbio and wbio), with both
 * states in one allocation: an idle connection holds one BIO, not two.
 *
 * It runs inside OpenSSL's calls, perhaps with the GIL released (_ssl's
 * handshake and shutdown release it): no Python here, only the raw allocator.
 * The BIO owns its buffers, so an SSLObject kept by the application past its
 * connection stays safe; the wire pointers live only for one call.
 */
#ifndef ZS_TLS_BIO_H
#define ZS_TLS_BIO_H

#include "zs_openssl.h"
#include "zs_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A receive into held memory asks for this much room. */
#define ZS_HOLD_CHUNK (256 * 1024)

typedef struct {
    char *buf;
    size_t start, len, cap;   /* held ciphertext: buf[start, start + len) */
    zs_wire *wire;            /* plugged in for one call, else NULL */
} zs_inbuf;

typedef struct {
    char *buf;
    size_t len, cap;          /* records waiting for the transport */
    zs_wire *wire;            /* lent for sending during one write, else NULL */
} zs_outbuf;

/* The BIO's state: both directions. */
typedef struct {
    zs_inbuf in;
    zs_outbuf out;
} zs_tls_io;

static void zs_bio_clear_retry(ZS_BIO *bio)
{
    zs_ossl.BIO_clear_flags(bio, ZS_BIO_FLAGS_READ | ZS_BIO_FLAGS_WRITE |
                                 ZS_BIO_FLAGS_IO_SPECIAL | ZS_BIO_FLAGS_SHOULD_RETRY);
}

/* `want` bytes of room after the held ciphertext, moved to the front of the
 * buffer or the buffer grown as needed; NULL when out of memory. */
static char *zs_inbuf_room(zs_inbuf *in, size_t want)
{
    if (in->cap - in->start - in->len >= want)
        return in->buf + in->start + in->len;
    if (in->start != 0) {
        memmove(in->buf, in->buf + in->start, in->len);
        in->start = 0;
    }
    if (in->cap - in->len < want) {
        char *grown = (char *)PyMem_RawRealloc(in->buf, in->len + want);
        if (grown == NULL)
            return NULL;
        in->buf = grown;
        in->cap = in->len + want;
    }
    return in->buf + in->len;
}

/* What the plugged wire can still give (a socket's unused receive, a memory
 * wire's bytes), taken into held memory: the count, or -1 out of memory. */
static long zs_inbuf_take(zs_inbuf *in, zs_wire *w)
{
    size_t want = w->mem_len != 0 ? w->mem_len : ZS_HOLD_CHUNK;
    size_t got;
    char *room;
    if (!zs_wire_can_recv(w))
        return 0;
    room = zs_inbuf_room(in, want);
    if (room == NULL)
        return -1;
    got = zs_wire_recv(w, room, want);
    in->len += got;
    return (long)got;
}

static int zs_bio_read(ZS_BIO *bio, char *out, int n)
{
    zs_tls_io *io = (zs_tls_io *)zs_ossl.BIO_get_data(bio);
    zs_inbuf *in;
    size_t k;
    zs_bio_clear_retry(bio);
    if (io == NULL || n <= 0)
        return 0;
    in = &io->in;
    if (in->len == 0) {
        k = in->wire != NULL ? zs_wire_recv(in->wire, out, (size_t)n) : 0;
        if (k > 0)
            return (int)k;
        /* As an empty memory BIO: "try again", never the end of the stream
         * (that, or an error, the wire keeps for the transport). */
        zs_ossl.BIO_set_flags(bio, ZS_BIO_FLAGS_READ | ZS_BIO_FLAGS_SHOULD_RETRY);
        return -1;
    }
    k = in->len < (size_t)n ? in->len : (size_t)n;
    memcpy(out, in->buf + in->start, k);
    in->start += k;
    in->len -= k;
    if (in->len == 0)
        in->start = 0;
    return (int)k;
}

static int zs_bio_write(ZS_BIO *bio, const char *data, int n)
{
    zs_tls_io *io = (zs_tls_io *)zs_ossl.BIO_get_data(bio);
    zs_outbuf *out;
    size_t rest = (size_t)n;
    /* Never a "retry": it takes every record.  A read's "retry" is cleared,
     * so that a failed write is not reported as the read's want. */
    zs_bio_clear_retry(bio);
    if (io == NULL || n < 0)
        return -1;
    out = &io->out;
    if (out->wire != NULL && out->len == 0) {
        long sent = zs_wire_send(out->wire, data, rest);
        if (sent < 0)
            return n;  /* the connection is lost (the wire keeps why): the record goes nowhere */
        data += sent;
        rest -= (size_t)sent;
        if (rest == 0)
            return n;
    }
    if (out->len + rest > out->cap) {
        size_t cap = out->cap ? out->cap : 16384;
        char *grown;
        while (cap < out->len + rest)
            cap *= 2;
        grown = (char *)PyMem_RawRealloc(out->buf, cap);
        if (grown == NULL)
            return -1;
        out->buf = grown;
        out->cap = cap;
    }
    memcpy(out->buf + out->len, data, rest);
    out->len += rest;
    return n;
}

static long zs_bio_ctrl(ZS_BIO *bio, int cmd, long num, void *ptr)
{
    zs_tls_io *io = (zs_tls_io *)zs_ossl.BIO_get_data(bio);
    (void)num; (void)ptr;
    switch (cmd) {
    case ZS_BIO_CTRL_FLUSH:
        return 1;
    case ZS_BIO_CTRL_PENDING:
        return io != NULL ? (long)io->in.len : 0;
    case ZS_BIO_CTRL_WPENDING:
        return io != NULL ? (long)io->out.len : 0;
    default:
        return 0;
    }
}

/* The output's memory given back once the transport has taken every record:
 * an idle connection holds none (the handshake's flight alone grows it to
 * 16 KiB).  Records usually leave through the lent wire and never come here. */
static void zs_outbuf_release(zs_outbuf *out)
{
    if (out->len == 0 && out->buf != NULL) {
        PyMem_RawFree(out->buf);
        out->buf = NULL;
        out->cap = 0;
    }
}

static int zs_bio_destroy(ZS_BIO *bio)
{
    zs_tls_io *io = (zs_tls_io *)zs_ossl.BIO_get_data(bio);
    if (io != NULL) {
        PyMem_RawFree(io->in.buf);
        PyMem_RawFree(io->out.buf);
        PyMem_RawFree(io);
        zs_ossl.BIO_set_data(bio, NULL);
    }
    return 1;
}

static ZS_BIO_METHOD *zs_bio_method;

/* The BIO method, made once per process (and never freed); -1 on failure. */
static int zs_bio_method_init(void)
{
    ZS_BIO_METHOD *m;
    if (zs_bio_method != NULL)
        return 0;
    m = zs_ossl.BIO_meth_new(ZS_BIO_TYPE_SOURCE_SINK | 0x7a, "zerosock wire");
    if (m == NULL || !zs_ossl.BIO_meth_set_read(m, zs_bio_read)
            || !zs_ossl.BIO_meth_set_write(m, zs_bio_write)
            || !zs_ossl.BIO_meth_set_ctrl(m, zs_bio_ctrl)
            || !zs_ossl.BIO_meth_set_destroy(m, zs_bio_destroy))
        return -1;
    zs_bio_method = m;
    return 0;
}

/* The BIO, given to `ssl` as both its rbio and wbio in place of its own
 * (which the MemoryBIO objects keep); its two buffers in *in and *out.
 * -1 when OpenSSL or memory fails, and then `ssl` is unchanged. */
static int zs_tls_bios_attach(ZS_SSL *ssl, zs_inbuf **in, zs_outbuf **out)
{
    ZS_BIO *bio;
    zs_tls_io *io;
    if (zs_bio_method_init() != 0)
        return -1;
    io = (zs_tls_io *)PyMem_RawCalloc(1, sizeof(zs_tls_io));
    if (io == NULL)
        return -1;
    bio = zs_ossl.BIO_new(zs_bio_method);
    if (bio == NULL) {
        PyMem_RawFree(io);
        return -1;
    }
    zs_ossl.BIO_set_data(bio, io);
    zs_ossl.BIO_set_init(bio, 1);
    if (!zs_ossl.BIO_up_ref(bio)) {  /* one reference for each role */
        zs_ossl.BIO_free(bio);  /* frees io */
        return -1;
    }
    zs_ossl.SSL_set0_rbio(ssl, bio);
    zs_ossl.SSL_set0_wbio(ssl, bio);
    *in = &io->in;
    *out = &io->out;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* ZS_TLS_BIO_H */
