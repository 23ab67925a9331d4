/*
 * zs_errors.h -- the error codes the shim returns, as Python must see them.
 *
 * On POSIX a code from zs_last_error() is an errno value and goes to Python
 * unchanged.  On Windows it is a Winsock (WSA) code, and CPython's own socket
 * module hands those through winerror_to_errno() (PC/errmap.h): six WSA codes
 * that shadow C runtime errnos (WSAEINTR, WSAEBADF, WSAEACCES, WSAEFAULT,
 * WSAEINVAL, WSAEMFILE) become that errno (code - 10000), every other one
 * stays as it is -- and CPython's errno module names those WSA values
 * errno.EWOULDBLOCK (10035), errno.ECONNRESET (10054) and so on, which is also
 * how its OSError constructor picks the subclass.  So zs_python_errno() on
 * Windows gives the value that makes OSError(value, text) the same subclass
 * the standard library raises there, and the same subclass a Linux user gets
 * for the POSIX error of the same name.
 *
 * One row per Winsock error a socket call of the shim can report:
 *
 *   X(WSA code, WSA name, Python errno on Windows, errno name, Python class)
 *
 * The errno name is the attribute of Python's errno module that equals the
 * Python errno on Windows and is the POSIX error of the same meaning on Linux
 * ("" when POSIX has none); the class is what OSError(errno.<name>, ...)
 * constructs on both.  csrc/tests/zs_shim_test.c checks the rows against the
 * Windows headers and CPython's rules; tests/test_error_table.py checks the
 * classes against the running Python.
 */
#ifndef ZS_ERRORS_H
#define ZS_ERRORS_H

#define ZS_WINSOCK_ERRORS(X) \
    X(10004, "WSAEINTR",           4,     "EINTR",           "InterruptedError") \
    X(10009, "WSAEBADF",           9,     "EBADF",           "OSError") \
    X(10013, "WSAEACCES",          13,    "EACCES",          "PermissionError") \
    X(10014, "WSAEFAULT",          14,    "EFAULT",          "OSError") \
    X(10022, "WSAEINVAL",          22,    "EINVAL",          "OSError") \
    X(10024, "WSAEMFILE",          24,    "EMFILE",          "OSError") \
    X(10035, "WSAEWOULDBLOCK",     10035, "EWOULDBLOCK",     "BlockingIOError") \
    X(10036, "WSAEINPROGRESS",     10036, "EINPROGRESS",     "BlockingIOError") \
    X(10037, "WSAEALREADY",        10037, "EALREADY",        "BlockingIOError") \
    X(10038, "WSAENOTSOCK",        10038, "ENOTSOCK",        "OSError") \
    X(10039, "WSAEDESTADDRREQ",    10039, "EDESTADDRREQ",    "OSError") \
    X(10040, "WSAEMSGSIZE",        10040, "EMSGSIZE",        "OSError") \
    X(10041, "WSAEPROTOTYPE",      10041, "EPROTOTYPE",      "OSError") \
    X(10042, "WSAENOPROTOOPT",     10042, "ENOPROTOOPT",     "OSError") \
    X(10043, "WSAEPROTONOSUPPORT", 10043, "EPROTONOSUPPORT", "OSError") \
    X(10044, "WSAESOCKTNOSUPPORT", 10044, "ESOCKTNOSUPPORT", "OSError") \
    X(10045, "WSAEOPNOTSUPP",      10045, "EOPNOTSUPP",      "OSError") \
    X(10046, "WSAEPFNOSUPPORT",    10046, "EPFNOSUPPORT",    "OSError") \
    X(10047, "WSAEAFNOSUPPORT",    10047, "EAFNOSUPPORT",    "OSError") \
    X(10048, "WSAEADDRINUSE",      10048, "EADDRINUSE",      "OSError") \
    X(10049, "WSAEADDRNOTAVAIL",   10049, "EADDRNOTAVAIL",   "OSError") \
    X(10050, "WSAENETDOWN",        10050, "ENETDOWN",        "OSError") \
    X(10051, "WSAENETUNREACH",     10051, "ENETUNREACH",     "OSError") \
    X(10052, "WSAENETRESET",       10052, "ENETRESET",       "OSError") \
    X(10053, "WSAECONNABORTED",    10053, "ECONNABORTED",    "ConnectionAbortedError") \
    X(10054, "WSAECONNRESET",      10054, "ECONNRESET",      "ConnectionResetError") \
    X(10055, "WSAENOBUFS",         10055, "ENOBUFS",         "OSError") \
    X(10056, "WSAEISCONN",         10056, "EISCONN",         "OSError") \
    X(10057, "WSAENOTCONN",        10057, "ENOTCONN",        "OSError") \
    X(10058, "WSAESHUTDOWN",       10058, "ESHUTDOWN",       "BrokenPipeError") \
    X(10059, "WSAETOOMANYREFS",    10059, "ETOOMANYREFS",    "OSError") \
    X(10060, "WSAETIMEDOUT",       10060, "ETIMEDOUT",       "TimeoutError") \
    X(10061, "WSAECONNREFUSED",    10061, "ECONNREFUSED",    "ConnectionRefusedError") \
    X(10062, "WSAELOOP",           10062, "ELOOP",           "OSError") \
    X(10063, "WSAENAMETOOLONG",    10063, "ENAMETOOLONG",    "OSError") \
    X(10064, "WSAEHOSTDOWN",       10064, "EHOSTDOWN",       "OSError") \
    X(10065, "WSAEHOSTUNREACH",    10065, "EHOSTUNREACH",    "OSError") \
    X(10093, "WSANOTINITIALISED",  10093, "",                "OSError") \
    X(10101, "WSAEDISCON",         10101, "",                "OSError")

#ifdef _WIN32
#  define ZS_ERROR_CASE(code, name, py_errno, errno_name, exc) case code: return py_errno;
#endif

/* The errno value Python code sees for a zs_last_error() code: the value
 * whose OSError subclass the standard library raises for it. */
static inline int zs_python_errno(int code)
{
#ifdef _WIN32
    switch (code) {
    ZS_WINSOCK_ERRORS(ZS_ERROR_CASE)
    default: return code;
    }
#else
    return code;
#endif
}

#ifdef ZS_ERROR_CASE
#  undef ZS_ERROR_CASE
#endif

#endif /* ZS_ERRORS_H */
