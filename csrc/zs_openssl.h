/*
 * zs_openssl.h -- OpenSSL's functions, taken from the library the
 * interpreter's own `_ssl` module already loaded.
 *
 * zerosock never links or ships a libssl: an SSL_CTX made by one copy of the
 * library must never meet another copy's functions.  The few functions the
 * TLS transport needs are looked up at run time, once, into one table of
 * pointers (`zs_ossl`); Cython code calls through that table and never sees
 * the platform's dynamic loader.  Only the prototypes and constants used are
 * declared here, with the ABI every OpenSSL from 1.1.1 on shares.
 */
#ifndef ZS_OPENSSL_H
#define ZS_OPENSSL_H

/* The platform preamble (Winsock/windows.h or the POSIX headers) is the
 * shim's; the output BIO sends through its zs_send. */
#include "zs_shim.h"
#include <stdint.h>
#ifndef _WIN32
#  include <dlfcn.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque to us: only pointers to them cross this interface. */
typedef struct ssl_st ZS_SSL;
typedef struct ssl_ctx_st ZS_SSL_CTX;
typedef struct bio_st ZS_BIO;

/* SSL_get_error() results (ssl.h; the same numbers the ssl module exports). */
#define ZS_SSL_ERROR_NONE 0
#define ZS_SSL_ERROR_SSL 1
#define ZS_SSL_ERROR_WANT_READ 2
#define ZS_SSL_ERROR_WANT_WRITE 3
#define ZS_SSL_ERROR_SYSCALL 5
#define ZS_SSL_ERROR_ZERO_RETURN 6

#define ZS_BIO_CTRL_PENDING 10
#define ZS_BIO_CTRL_FLUSH 11
#define ZS_BIO_CTRL_WPENDING 13
#define ZS_SSL_CTRL_SET_READ_AHEAD 41
#define ZS_BIO_TYPE_SOURCE_SINK 0x0400
#define ZS_BIO_FLAGS_READ 0x01
#define ZS_BIO_FLAGS_WRITE 0x02
#define ZS_BIO_FLAGS_IO_SPECIAL 0x04
#define ZS_BIO_FLAGS_SHOULD_RETRY 0x08

typedef struct bio_method_st ZS_BIO_METHOD;

typedef struct {
    unsigned long version;                 /* OpenSSL_version_num() */
    int (*SSL_read)(ZS_SSL *, void *, int);
    int (*SSL_write)(ZS_SSL *, const void *, int);
    int (*SSL_get_error)(const ZS_SSL *, int);
    int (*SSL_pending)(const ZS_SSL *);
    int (*SSL_has_pending)(const ZS_SSL *);
    ZS_BIO *(*SSL_get_rbio)(const ZS_SSL *);
    ZS_BIO *(*SSL_get_wbio)(const ZS_SSL *);
    ZS_SSL_CTX *(*SSL_get_SSL_CTX)(const ZS_SSL *);
    void *(*SSL_get_ex_data)(const ZS_SSL *, int);
    /* uint64_t from 3.0 on, unsigned long before: the low 32 bits agree. */
    uint64_t (*SSL_CTX_get_options)(const ZS_SSL_CTX *);
    int (*SSL_CTX_get_verify_mode)(const ZS_SSL_CTX *);
    int (*BIO_read)(ZS_BIO *, void *, int);
    int (*BIO_write)(ZS_BIO *, const void *, int);
    long (*BIO_ctrl)(ZS_BIO *, int, long, void *);
    unsigned long (*ERR_peek_last_error)(void);
    void (*ERR_clear_error)(void);
    const char *(*ERR_reason_error_string)(unsigned long);
    unsigned long (*OpenSSL_version_num)(void);
    /* A BIO of our own for the session's output (see zs_outbio_*). */
    ZS_BIO_METHOD *(*BIO_meth_new)(int, const char *);
    int (*BIO_meth_set_write)(ZS_BIO_METHOD *, int (*)(ZS_BIO *, const char *, int));
    int (*BIO_meth_set_ctrl)(ZS_BIO_METHOD *, long (*)(ZS_BIO *, int, long, void *));
    int (*BIO_meth_set_destroy)(ZS_BIO_METHOD *, int (*)(ZS_BIO *));
    ZS_BIO *(*BIO_new)(const ZS_BIO_METHOD *);
    void (*BIO_set_data)(ZS_BIO *, void *);
    void *(*BIO_get_data)(ZS_BIO *);
    void (*BIO_set_init)(ZS_BIO *, int);
    void (*BIO_clear_flags)(ZS_BIO *, int);
    void (*BIO_set_flags)(ZS_BIO *, int);
    int (*BIO_meth_set_read)(ZS_BIO_METHOD *, int (*)(ZS_BIO *, char *, int));
    void (*SSL_set0_wbio)(ZS_SSL *, ZS_BIO *);
    void (*SSL_set0_rbio)(ZS_SSL *, ZS_BIO *);
    long (*SSL_ctrl)(ZS_SSL *, int, long, void *);
    void (*SSL_set_default_read_buffer_len)(ZS_SSL *, size_t);
} zs_openssl_table;

static zs_openssl_table zs_ossl;

/* The library and reason of a packed error code: the layout changed in 3.0. */
static inline int zs_ossl_err_lib(unsigned long e)
{
    if (zs_ossl.version >= 0x30000000UL) {
        if (e & 0x80000000UL)  /* ERR_SYSTEM_FLAG: an errno, library "SYS" (2) */
            return 2;
        return (int)((e >> 23) & 0xFFUL);
    }
    return (int)((e >> 24) & 0xFFUL);
}

static inline int zs_ossl_err_reason(unsigned long e)
{
    if (zs_ossl.version >= 0x30000000UL) {
        if (e & 0x80000000UL)
            return (int)(e & 0x7FFFFFFFUL);
        return (int)(e & 0x7FFFFFUL);
    }
    return (int)(e & 0xFFFUL);
}

static inline size_t zs_bio_pending(ZS_BIO *bio)
{
    long n = zs_ossl.BIO_ctrl(bio, ZS_BIO_CTRL_PENDING, 0, NULL);
    return n > 0 ? (size_t)n : 0;
}

#ifdef _WIN32
/* _ssl.pyd links OpenSSL's DLLs by these names (one pair per release line). */
static const char *const zs_ossl_win_libs[] = {
    "libssl-3-x64.dll", "libcrypto-3-x64.dll", "libssl-3.dll", "libcrypto-3.dll",
    "libssl-3-arm64.dll", "libcrypto-3-arm64.dll",
    "libssl-1_1-x64.dll", "libcrypto-1_1-x64.dll", "libssl-1_1.dll", "libcrypto-1_1.dll",
    NULL,
};

static void *zs_ossl_sym(void *unused, const char *name)
{
    const char *const *lib;
    (void)unused;
    for (lib = zs_ossl_win_libs; *lib != NULL; lib++) {
        HMODULE mod = GetModuleHandleA(*lib);  /* never loads a library */
        if (mod != NULL) {
            FARPROC f = GetProcAddress(mod, name);
            if (f != NULL)
                return (void *)f;
        }
    }
    return NULL;
}
#else
static void *zs_ossl_sym(void *handle, const char *name)
{
    /* Searches _ssl and the libraries it depends on, in load order. */
    return dlsym(handle, name);
}
#endif

/* Fill zs_ossl from the OpenSSL that the module at `ssl_module_path`
 * (`_ssl.__file__`) has loaded.  0 on success; -1 with `*missing` naming the
 * first symbol not found (or the module itself) when anything is absent,
 * e.g. an `_ssl` linked statically, whose OpenSSL exports nothing. */
static int zs_openssl_load(const char *ssl_module_path, const char **missing)
{
    void *handle = NULL;
    zs_openssl_table t;
    memset(&t, 0, sizeof(t));
#ifndef _WIN32
    /* RTLD_NOLOAD: only a library already in the process; never a second copy. */
    handle = dlopen(ssl_module_path, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        *missing = ssl_module_path;
        return -1;
    }
#else
    (void)ssl_module_path;
#endif
#define ZS_OSSL_LOAD(field, name) do { \
        *(void **)&t.field = zs_ossl_sym(handle, name); \
        if (t.field == NULL) { *missing = name; goto fail; } \
    } while (0)
    ZS_OSSL_LOAD(SSL_read, "SSL_read");
    ZS_OSSL_LOAD(SSL_write, "SSL_write");
    ZS_OSSL_LOAD(SSL_get_error, "SSL_get_error");
    ZS_OSSL_LOAD(SSL_pending, "SSL_pending");
    ZS_OSSL_LOAD(SSL_has_pending, "SSL_has_pending");
    ZS_OSSL_LOAD(SSL_get_rbio, "SSL_get_rbio");
    ZS_OSSL_LOAD(SSL_get_wbio, "SSL_get_wbio");
    ZS_OSSL_LOAD(SSL_get_SSL_CTX, "SSL_get_SSL_CTX");
    ZS_OSSL_LOAD(SSL_get_ex_data, "SSL_get_ex_data");
    ZS_OSSL_LOAD(SSL_CTX_get_options, "SSL_CTX_get_options");
    ZS_OSSL_LOAD(SSL_CTX_get_verify_mode, "SSL_CTX_get_verify_mode");
    ZS_OSSL_LOAD(BIO_read, "BIO_read");
    ZS_OSSL_LOAD(BIO_write, "BIO_write");
    ZS_OSSL_LOAD(BIO_ctrl, "BIO_ctrl");
    ZS_OSSL_LOAD(ERR_peek_last_error, "ERR_peek_last_error");
    ZS_OSSL_LOAD(ERR_clear_error, "ERR_clear_error");
    ZS_OSSL_LOAD(ERR_reason_error_string, "ERR_reason_error_string");
    ZS_OSSL_LOAD(OpenSSL_version_num, "OpenSSL_version_num");
    ZS_OSSL_LOAD(BIO_meth_new, "BIO_meth_new");
    ZS_OSSL_LOAD(BIO_meth_set_write, "BIO_meth_set_write");
    ZS_OSSL_LOAD(BIO_meth_set_ctrl, "BIO_meth_set_ctrl");
    ZS_OSSL_LOAD(BIO_meth_set_destroy, "BIO_meth_set_destroy");
    ZS_OSSL_LOAD(BIO_new, "BIO_new");
    ZS_OSSL_LOAD(BIO_set_data, "BIO_set_data");
    ZS_OSSL_LOAD(BIO_get_data, "BIO_get_data");
    ZS_OSSL_LOAD(BIO_set_init, "BIO_set_init");
    ZS_OSSL_LOAD(BIO_clear_flags, "BIO_clear_flags");
    ZS_OSSL_LOAD(BIO_set_flags, "BIO_set_flags");
    ZS_OSSL_LOAD(BIO_meth_set_read, "BIO_meth_set_read");
    ZS_OSSL_LOAD(SSL_set0_wbio, "SSL_set0_wbio");
    ZS_OSSL_LOAD(SSL_set0_rbio, "SSL_set0_rbio");
    ZS_OSSL_LOAD(SSL_ctrl, "SSL_ctrl");
    ZS_OSSL_LOAD(SSL_set_default_read_buffer_len, "SSL_set_default_read_buffer_len");
#undef ZS_OSSL_LOAD
    t.version = t.OpenSSL_version_num();
#ifndef _WIN32
    dlclose(handle);  /* _ssl keeps the library loaded; we only dropped our count */
#endif
    zs_ossl = t;
    return 0;
fail:
#ifndef _WIN32
    dlclose(handle);
#endif
    return -1;
}

/* The session's output BIO: records appended to one growing buffer that the
 * transport sends from, instead of a memory BIO (which clears every byte it
 * grows by, and is read out through one more copy).  While the transport has
 * nothing queued, the caller sets `fd` and a record is sent from OpenSSL's
 * own buffer as it is made; only what the kernel leaves is kept, and a send
 * error is kept in `err` for the transport to report.  The BIO owns the
 * buffer: an SSLObject kept by the application past its connection stays safe. */
typedef struct {
    char *buf;
    size_t len, cap;
    zs_sock_t fd;       /* send records at once on this socket; ZS_INVALID_SOCKET: keep them */
    int err;            /* the error a send at once met, 0 if none */
} zs_outbuf;

static int zs_outbio_write(ZS_BIO *bio, const char *data, int n)
{
    zs_outbuf *out = (zs_outbuf *)zs_ossl.BIO_get_data(bio);
    zs_ossl.BIO_clear_flags(bio, ZS_BIO_FLAGS_READ | ZS_BIO_FLAGS_WRITE |
                                 ZS_BIO_FLAGS_IO_SPECIAL | ZS_BIO_FLAGS_SHOULD_RETRY);
    if (out == NULL || n < 0)
        return -1;
    if (out->fd != ZS_INVALID_SOCKET && out->len == 0) {
        long sent = zs_send(out->fd, data, (size_t)n, 0);
        if (sent == n)
            return n;
        out->fd = ZS_INVALID_SOCKET;  /* what follows queues behind the rest */
        if (sent < 0) {
            int e = zs_last_error();
            if (!zs_is_would_block(e) && e != ZS_EINTR) {
                out->err = e;  /* the connection is lost: the record goes nowhere */
                return n;
            }
            sent = 0;
        }
        return zs_outbio_write(bio, data + sent, n - (int)sent) < 0 ? -1 : n;
    }
    if (out->len + (size_t)n > out->cap) {
        size_t cap = out->cap ? out->cap : 16384;
        char *grown;
        while (cap < out->len + (size_t)n)
            cap *= 2;
        grown = (char *)PyMem_RawRealloc(out->buf, cap);
        if (grown == NULL)
            return -1;
        out->buf = grown;
        out->cap = cap;
    }
    memcpy(out->buf + out->len, data, (size_t)n);
    out->len += (size_t)n;
    return n;
}

static long zs_outbio_ctrl(ZS_BIO *bio, int cmd, long num, void *ptr)
{
    zs_outbuf *out = (zs_outbuf *)zs_ossl.BIO_get_data(bio);
    (void)num; (void)ptr;
    switch (cmd) {
    case ZS_BIO_CTRL_FLUSH:
        return 1;
    case ZS_BIO_CTRL_WPENDING:
        return out != NULL ? (long)out->len : 0;
    default:
        return 0;
    }
}

static int zs_outbio_destroy(ZS_BIO *bio)
{
    zs_outbuf *out = (zs_outbuf *)zs_ossl.BIO_get_data(bio);
    if (out != NULL) {
        PyMem_RawFree(out->buf);
        PyMem_RawFree(out);
        zs_ossl.BIO_set_data(bio, NULL);
    }
    return 1;
}

static ZS_BIO_METHOD *zs_outbio_method;

/* A new output BIO and its buffer (*out); NULL when OpenSSL or memory fails. */
static ZS_BIO *zs_outbio_new(zs_outbuf **out)
{
    ZS_BIO *bio;
    if (zs_outbio_method == NULL) {
        ZS_BIO_METHOD *m = zs_ossl.BIO_meth_new(ZS_BIO_TYPE_SOURCE_SINK | 0x7a, "zerosock output");
        if (m == NULL || !zs_ossl.BIO_meth_set_write(m, zs_outbio_write)
                || !zs_ossl.BIO_meth_set_ctrl(m, zs_outbio_ctrl)
                || !zs_ossl.BIO_meth_set_destroy(m, zs_outbio_destroy))
            return NULL;  /* (a method never freed: made once per process) */
        zs_outbio_method = m;
    }
    *out = (zs_outbuf *)PyMem_RawCalloc(1, sizeof(zs_outbuf));
    if (*out == NULL)
        return NULL;
    (*out)->fd = ZS_INVALID_SOCKET;
    bio = zs_ossl.BIO_new(zs_outbio_method);
    if (bio == NULL) {
        PyMem_RawFree(*out);
        return NULL;
    }
    zs_ossl.BIO_set_data(bio, *out);
    zs_ossl.BIO_set_init(bio, 1);
    return bio;
}

/* The session's input BIO: OpenSSL reads ciphertext straight from where the
 * socket received it.  During a read that is the transport's shared receive
 * buffer; what OpenSSL leaves unread there is moved into `keep`, memory of
 * the connection's own, before the next read can reuse the shared buffer,
 * and later reads append to it in place.  Owned by the BIO, as the output's.
 *
 * With no ciphertext held and `fd` set, a read receives from the socket
 * straight into OpenSSL's record buffer instead (the session reads ahead, so
 * that is one recv for as many records as fit): once, then `fd` is cleared,
 * so one readiness event costs one recv as the transport's own read would.
 * End of stream and errors are kept in `eof`/`err` for the transport to
 * handle as its own read would; OpenSSL sees "try again" for both. */
typedef struct {
    const char *data;   /* unread ciphertext */
    size_t len;
    char *keep;         /* the connection's own memory, allocated on first need */
    size_t keep_cap;
    zs_sock_t fd;       /* receive once from this socket when empty; ZS_INVALID_SOCKET: never */
    int eof;            /* that receive found the end of the stream */
    int err;            /* the error it met, 0 if none */
} zs_inbuf;

static int zs_inbio_read(ZS_BIO *bio, char *out, int n)
{
    zs_inbuf *in = (zs_inbuf *)zs_ossl.BIO_get_data(bio);
    size_t k;
    zs_ossl.BIO_clear_flags(bio, ZS_BIO_FLAGS_READ | ZS_BIO_FLAGS_WRITE |
                                 ZS_BIO_FLAGS_IO_SPECIAL | ZS_BIO_FLAGS_SHOULD_RETRY);
    if (in == NULL || n <= 0)
        return 0;
    if (in->len == 0) {
        if (in->fd != ZS_INVALID_SOCKET) {
            long got = zs_recv(in->fd, out, (size_t)n, 0);
            in->fd = ZS_INVALID_SOCKET;
            if (got > 0)
                return (int)got;
            if (got == 0) {
                in->eof = 1;
            } else {
                int e = zs_last_error();
                if (!zs_is_would_block(e) && e != ZS_EINTR)
                    in->err = e;
            }
        }
        /* As an empty memory BIO: "try again", never end of stream. */
        zs_ossl.BIO_set_flags(bio, ZS_BIO_FLAGS_READ | ZS_BIO_FLAGS_SHOULD_RETRY);
        return -1;
    }
    k = in->len < (size_t)n ? in->len : (size_t)n;
    memcpy(out, in->data, k);
    in->data += k;
    in->len -= k;
    return (int)k;
}

static long zs_inbio_ctrl(ZS_BIO *bio, int cmd, long num, void *ptr)
{
    zs_inbuf *in = (zs_inbuf *)zs_ossl.BIO_get_data(bio);
    (void)num; (void)ptr;
    switch (cmd) {
    case ZS_BIO_CTRL_FLUSH:
        return 1;
    case ZS_BIO_CTRL_PENDING:
        return in != NULL ? (long)in->len : 0;
    default:
        return 0;
    }
}

static int zs_inbio_destroy(ZS_BIO *bio)
{
    zs_inbuf *in = (zs_inbuf *)zs_ossl.BIO_get_data(bio);
    if (in != NULL) {
        PyMem_RawFree(in->keep);
        PyMem_RawFree(in);
        zs_ossl.BIO_set_data(bio, NULL);
    }
    return 1;
}

/* `want` bytes of room right after the unread ciphertext, in `keep`
 * (unread bytes first moved there, to its front); NULL when out of memory. */
static char *zs_inbuf_room(zs_inbuf *in, size_t want, size_t *room)
{
    if (in->len != 0 && in->data != in->keep) {
        if (in->data > in->keep && in->data < in->keep + in->keep_cap)
            memmove(in->keep, in->data, in->len);   /* consumed bytes at the front */
        else if (in->keep_cap >= in->len)
            memcpy(in->keep, in->data, in->len);    /* still in the shared buffer */
        else {
            char *grown = (char *)PyMem_RawMalloc(in->len + want);
            if (grown == NULL)
                return NULL;
            memcpy(grown, in->data, in->len);
            PyMem_RawFree(in->keep);
            in->keep = grown;
            in->keep_cap = in->len + want;
        }
    }
    in->data = in->keep;
    if (in->keep_cap - in->len < want) {
        char *grown = (char *)PyMem_RawRealloc(in->keep, in->len + want);
        if (grown == NULL)
            return NULL;
        in->keep = grown;
        in->keep_cap = in->len + want;
        in->data = grown;
    }
    *room = in->keep_cap - in->len;
    return in->keep + in->len;
}

/* Unread ciphertext moved out of the shared buffer [shared, shared + size)
 * into the connection's memory; -1 when out of memory. */
static int zs_inbuf_keep(zs_inbuf *in, const char *shared, size_t size)
{
    size_t room;
    if (in->len == 0 || in->data < shared || in->data >= shared + size)
        return 0;
    return zs_inbuf_room(in, 0, &room) != NULL ? 0 : -1;
}

static ZS_BIO_METHOD *zs_inbio_method;

/* A new input BIO and its buffer (*in); NULL when OpenSSL or memory fails. */
static ZS_BIO *zs_inbio_new(zs_inbuf **in)
{
    ZS_BIO *bio;
    if (zs_inbio_method == NULL) {
        ZS_BIO_METHOD *m = zs_ossl.BIO_meth_new(ZS_BIO_TYPE_SOURCE_SINK | 0x7b, "zerosock input");
        if (m == NULL || !zs_ossl.BIO_meth_set_read(m, zs_inbio_read)
                || !zs_ossl.BIO_meth_set_ctrl(m, zs_inbio_ctrl)
                || !zs_ossl.BIO_meth_set_destroy(m, zs_inbio_destroy))
            return NULL;  /* (a method never freed: made once per process) */
        zs_inbio_method = m;
    }
    *in = (zs_inbuf *)PyMem_RawCalloc(1, sizeof(zs_inbuf));
    if (*in == NULL)
        return NULL;
    (*in)->fd = ZS_INVALID_SOCKET;
    bio = zs_ossl.BIO_new(zs_inbio_method);
    if (bio == NULL) {
        PyMem_RawFree(*in);
        return NULL;
    }
    zs_ossl.BIO_set_data(bio, *in);
    zs_ossl.BIO_set_init(bio, 1);
    return bio;
}

/* The pointer a CPython object keeps `slot` pointers after its header:
 * PySSLContext's SSL_CTX (slot 0), PySSLSocket's SSL (slot 1, after its
 * socket weakref), PySSLMemoryBIO's BIO (slot 0).  Callers check at import
 * that each one is what the library says it is before trusting it. */
static inline void *zs_object_slot(PyObject *o, int slot)
{
    return ((void **)((char *)o + sizeof(PyObject)))[slot];
}

#ifdef __cplusplus
}
#endif

#endif /* ZS_OPENSSL_H */
