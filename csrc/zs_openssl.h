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

/* The platform preamble (Winsock/windows.h or the POSIX headers) is the shim's. */
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
#define ZS_TLS1_3_VERSION 0x0304
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
    int (*BIO_write)(ZS_BIO *, const void *, int);
    unsigned long (*ERR_peek_last_error)(void);
    void (*ERR_clear_error)(void);
    const char *(*ERR_reason_error_string)(unsigned long);
    unsigned long (*OpenSSL_version_num)(void);
    /* A BIO of our own for the session's records (zs_tls_bio.h). */
    ZS_BIO_METHOD *(*BIO_meth_new)(int, const char *);
    int (*BIO_meth_set_write)(ZS_BIO_METHOD *, int (*)(ZS_BIO *, const char *, int));
    int (*BIO_meth_set_ctrl)(ZS_BIO_METHOD *, long (*)(ZS_BIO *, int, long, void *));
    int (*BIO_meth_set_destroy)(ZS_BIO_METHOD *, int (*)(ZS_BIO *));
    ZS_BIO *(*BIO_new)(const ZS_BIO_METHOD *);
    int (*BIO_free)(ZS_BIO *);
    int (*BIO_up_ref)(ZS_BIO *);
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
    int (*SSL_do_handshake)(ZS_SSL *);
    int (*SSL_version)(const ZS_SSL *);
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
    ZS_OSSL_LOAD(BIO_write, "BIO_write");
    ZS_OSSL_LOAD(ERR_peek_last_error, "ERR_peek_last_error");
    ZS_OSSL_LOAD(ERR_clear_error, "ERR_clear_error");
    ZS_OSSL_LOAD(ERR_reason_error_string, "ERR_reason_error_string");
    ZS_OSSL_LOAD(OpenSSL_version_num, "OpenSSL_version_num");
    ZS_OSSL_LOAD(BIO_meth_new, "BIO_meth_new");
    ZS_OSSL_LOAD(BIO_meth_set_write, "BIO_meth_set_write");
    ZS_OSSL_LOAD(BIO_meth_set_ctrl, "BIO_meth_set_ctrl");
    ZS_OSSL_LOAD(BIO_meth_set_destroy, "BIO_meth_set_destroy");
    ZS_OSSL_LOAD(BIO_new, "BIO_new");
    ZS_OSSL_LOAD(BIO_free, "BIO_free");
    ZS_OSSL_LOAD(BIO_up_ref, "BIO_up_ref");
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
    ZS_OSSL_LOAD(SSL_do_handshake, "SSL_do_handshake");
    ZS_OSSL_LOAD(SSL_version, "SSL_version");
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

/* ---- CPython's _ssl objects (ssl_object_layout) ---------------------------
 * The one place zerosock reads the private layout of _ssl's objects: each
 * keeps its OpenSSL pointer right after its PyObject header -- _SSLContext
 * its SSL_CTX, _SSLSocket (an SSLObject's _sslobj) its SSL after the weak
 * reference to its socket, MemoryBIO its BIO.  So on CPython 3.11 to 3.15.
 * Nothing trusts a pointer read here before zerosock._aio_tls_openssl_c has
 * checked, at import, that each is what OpenSSL itself reports. */
static inline void *zs_pyssl_slot(PyObject *o, int slot)
{
    return ((void **)((char *)o + sizeof(PyObject)))[slot];
}

static inline ZS_SSL_CTX *zs_pyssl_context_ctx(PyObject *context) { return (ZS_SSL_CTX *)zs_pyssl_slot(context, 0); }
static inline ZS_SSL *zs_pyssl_socket_ssl(PyObject *sslsocket) { return (ZS_SSL *)zs_pyssl_slot(sslsocket, 1); }
static inline ZS_BIO *zs_pyssl_memorybio_bio(PyObject *bio) { return (ZS_BIO *)zs_pyssl_slot(bio, 0); }

#ifdef __cplusplus
}
#endif

#endif /* ZS_OPENSSL_H */
