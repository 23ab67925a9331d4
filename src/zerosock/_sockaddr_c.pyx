# cython: language_level=3
"""Conversion between Python socket addresses and C ``sockaddr`` structures,
with the standard library's argument checking and exceptions."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.string cimport memchr, memcmp, memcpy, memset

from zerosock._shim cimport (
    AF_INET, AF_INET6, AF_UNIX, INADDR_ANY, INADDR_BROADCAST, INET6_ADDRSTRLEN,
    htonl, htons, inet_ntop, inet_pton, ntohl, ntohs,
    sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, sockaddr_un, zs_socklen_t,
    ZS_HAVE_ABSTRACT_UNIX,
)

import errno as _errno
import os as _os
import sys as _sys
import warnings as _warnings
from operator import index as _index

from zerosock._socket_shared import resolve_host

cdef extern from "Python.h":
    object PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)


# 3.15 deprecates an "I" format value that is neither a C int nor an unsigned int.
cdef bint _WARN_UINT_OUT_OF_RANGE = _sys.version_info >= (3, 15)


cdef unsigned int uint_format(object value) except? 0xFFFFFFFF:
    """``value`` as the standard library's "I" format takes it: any int,
    masked to 32 bits (a float or a str is a TypeError), with 3.15's
    DeprecationWarning for what fits neither a C int nor an unsigned int."""
    number = _index(value)
    if _WARN_UINT_OUT_OF_RANGE and not -0x80000000 <= number <= 0xFFFFFFFF:
        _warnings.warn("integer value out of range", DeprecationWarning, stacklevel=1)
    return number & 0xFFFFFFFF


cdef inline unsigned int _raw_hash(const unsigned char *raw, zs_socklen_t length) noexcept nogil:
    """A hash of an address's bytes, four at a time (the tail is left to the compare)."""
    cdef unsigned int h = 0x811C9DC5, word
    cdef zs_socklen_t i = 0
    while i + 4 <= length:
        memcpy(&word, raw + i, 4)
        h = (h ^ word) * 0x01000193
        i += 4
    return h ^ (h >> 16)


cdef inline unsigned int _object_slot(PyObject *obj) noexcept nogil:
    """The by_object slot of an object, from its address (multiplicative hashing)."""
    return <unsigned int>(((<unsigned long long><size_t>obj >> 4) * 0x9E3779B97F4A7C15ULL)
                          >> (64 - PEER_ENTRY_BITS))


cdef class AddressCache:
    def __dealloc__(self):
        cdef int i
        if self.table != NULL:
            for i in range(PEER_ENTRIES):
                Py_XDECREF(self.table.entries[i].obj)
            PyMem_Free(self.table)
            self.table = NULL

    cdef object get(self, const sockaddr *addr, zs_socklen_t length, int family):
        if (self.last_obj is not None and length == self.last_len
                and memcmp(addr, &self.last, length) == 0):
            return self.last_obj
        cdef PeerTable *table = self.table
        cdef PeerEntry *entry
        cdef unsigned int index, set_index = 0
        cdef int way
        # IP addresses only: their objects are tuples of our own making, never
        # an object (such as "") that callers may hold for other reasons.
        cdef bint cacheable = (length <= PEER_BYTES and length >= <zs_socklen_t>sizeof(sockaddr_in)
                               and (addr.sa_family == AF_INET or addr.sa_family == AF_INET6))
        if cacheable and table == NULL and self.last_obj is not None:
            # A second peer: from here on, remember more than the last.
            table = <PeerTable *>PyMem_Calloc(1, sizeof(PeerTable))
            self.table = table
        if cacheable and table != NULL:
            set_index = _raw_hash(<const unsigned char *>addr, length) & (PEER_SETS - 1)
            for way in range(PEER_WAYS):
                entry = &table.entries[set_index * PEER_WAYS + way]
                if entry.length == length and memcmp(entry.raw, addr, length) == 0:
                    # This peer's is the object a reply will most likely name.
                    table.by_object[_object_slot(entry.obj)] = set_index * PEER_WAYS + way
                    obj = <object>entry.obj
                    self._remember_last(addr, length, obj)
                    return obj
        obj = make_address(addr, length, family)
        if cacheable and table != NULL:
            way = table.next_way[set_index]
            table.next_way[set_index] = (way + 1) % PEER_WAYS
            index = set_index * PEER_WAYS + way
            entry = &table.entries[index]
            Py_XDECREF(entry.obj)
            Py_INCREF(obj)
            entry.obj = <PyObject *>obj
            entry.length = length
            memcpy(entry.raw, addr, length)
            table.by_object[_object_slot(entry.obj)] = index
        self._remember_last(addr, length, obj)
        return obj

    cdef void _remember_last(self, const sockaddr *addr, zs_socklen_t length, object obj) noexcept:
        if length <= sizeof(sockaddr_storage):
            memcpy(&self.last, addr, length)
            self.last_len = length
            self.last_obj = obj

    cdef bint find(self, object obj, sockaddr_storage *name, zs_socklen_t *namelen) noexcept:
        """Whether ``obj`` is an address this cache made and still holds; if
        so its C form is copied to ``name``."""
        if obj is None:
            return False
        if obj is self.last_obj:
            memcpy(name, &self.last, self.last_len)
            namelen[0] = self.last_len
            return True
        cdef PeerTable *table = self.table
        if table == NULL:
            return False
        cdef PeerEntry *entry = &table.entries[table.by_object[_object_slot(<PyObject *>obj)]]
        if entry.obj != <PyObject *>obj or entry.length == 0:
            return False
        memcpy(name, entry.raw, entry.length)
        namelen[0] = entry.length
        return True


cdef bytes _host_bytes(object host):
    """The host as bytes, checked the way the standard library checks it."""
    cdef bytes raw
    if isinstance(host, str):
        try:
            raw = (<str>host).encode("ascii")
        except UnicodeEncodeError:
            try:
                raw = (<str>host).encode("idna")
            except UnicodeError:
                # The standard library's message and type for a name IDNA refuses.
                raise TypeError("encoding of hostname failed") from None
    elif isinstance(host, (bytes, bytearray)):
        raw = bytes(host)
    else:
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if b"\0" in raw:
        raise TypeError("host name must not contain null character")
    return raw


cdef int _check_port(int port, str caller) except -1:
    if port < 0 or port > 0xFFFF:
        raise OverflowError(f"{caller}(): port must be 0-65535.")
    return 0


# Both parsers follow the standard library's order, which decides the
# exception when several things are wrong: convert every field, resolve the
# host, then check the port's and flowinfo's ranges.


cdef int _parse_ipv4(object address, sockaddr_in *sin, str caller) except -1:
    if not isinstance(address, tuple):
        raise TypeError(f"{caller}(): AF_INET address must be tuple, not {type(address).__name__}")
    if len(<tuple>address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port_obj = <tuple>address
    cdef bytes raw = _host_bytes(host)
    cdef int port = _index(port_obj)
    sin.sin_family = AF_INET
    if inet_pton(AF_INET, PyBytes_AS_STRING(raw), &sin.sin_addr) == 1:
        pass
    elif raw == b"":
        sin.sin_addr.s_addr = htonl(INADDR_ANY)
    elif raw == b"<broadcast>":
        sin.sin_addr.s_addr = htonl(INADDR_BROADCAST)
    else:
        numeric = resolve_host(host, AF_INET)[0].encode("ascii")
        if inet_pton(AF_INET, PyBytes_AS_STRING(numeric), &sin.sin_addr) != 1:
            raise OSError(_errno.EINVAL, f"unexpected resolver result {numeric!r}")
    _check_port(port, caller)
    sin.sin_port = htons(<unsigned short>port)
    return 0


cdef int _parse_ipv6(object address, sockaddr_in6 *sin6, str caller) except -1:
    if not isinstance(address, tuple):
        raise TypeError(f"{caller}(): AF_INET6 address must be tuple, not {type(address).__name__}")
    cdef Py_ssize_t n = len(<tuple>address)
    if n < 2 or n > 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    host = (<tuple>address)[0]
    cdef bytes raw = _host_bytes(host)
    cdef int port = _index((<tuple>address)[1])
    # flowinfo and scope_id as the standard library's "I" format takes them.
    cdef unsigned int flowinfo = uint_format((<tuple>address)[2]) if n > 2 else 0
    cdef unsigned int scope_id = uint_format((<tuple>address)[3]) if n > 3 else 0
    sin6.sin6_family = AF_INET6
    if inet_pton(AF_INET6, PyBytes_AS_STRING(raw), &sin6.sin6_addr) != 1:
        # The scope stays the tuple's: the standard library overwrites the one
        # resolved from a "%zone" suffix, and both backends must connect alike.
        numeric = resolve_host(host, AF_INET6)[0].encode("ascii")
        if inet_pton(AF_INET6, PyBytes_AS_STRING(numeric), &sin6.sin6_addr) != 1:
            raise OSError(_errno.EINVAL, f"unexpected resolver result {numeric!r}")
    _check_port(port, caller)
    if flowinfo > 0xFFFFF:
        raise OverflowError(f"{caller}(): flowinfo must be 0-1048575.")
    sin6.sin6_port = htons(<unsigned short>port)
    sin6.sin6_flowinfo = htonl(flowinfo)
    sin6.sin6_scope_id = scope_id
    return 0


cdef Py_ssize_t _sun_path_offset():
    cdef sockaddr_un probe
    return <char *>&probe.sun_path[0] - <char *>&probe


cdef int _parse_unix(object address, sockaddr_un *sun, zs_socklen_t *out_len, str caller) except -1:
    cdef bytes path
    if isinstance(address, str):
        path = _os.fsencode(address)
    elif isinstance(address, (bytes, bytearray, memoryview)):
        path = bytes(address)
    else:
        raise TypeError(f"{caller}(): AF_UNIX address must be str or bytes, "
                        f"not {type(address).__name__}")
    cdef Py_ssize_t offset = _sun_path_offset()
    cdef Py_ssize_t capacity = sizeof(sockaddr_un) - offset
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path)
    # As the standard library: on Linux the empty path is abstract too, so
    # bind("") auto-binds to a fresh abstract name.
    cdef bint abstract = ZS_HAVE_ABSTRACT_UNIX and (n == 0 or PyBytes_AS_STRING(path)[0] == 0)
    if n > capacity or (not abstract and n >= capacity):
        raise OSError("AF_UNIX path too long")  # no errno, as the standard library
    memset(sun, 0, sizeof(sockaddr_un))
    sun.sun_family = AF_UNIX
    memcpy(&sun.sun_path[0], PyBytes_AS_STRING(path), n)
    out_len[0] = <zs_socklen_t>(offset + n + (0 if abstract else 1))
    return 0


cdef int parse_address(object address, int family, sockaddr_storage *out,
                       zs_socklen_t *out_len, str caller) except -1:
    """Fill ``out`` from a Python address of ``family``; ``caller`` names the
    method in error messages, as the standard library does."""
    if family == AF_INET:
        memset(out, 0, sizeof(sockaddr_in))
        _parse_ipv4(address, <sockaddr_in *>out, caller)
        out_len[0] = sizeof(sockaddr_in)
    elif family == AF_INET6:
        memset(out, 0, sizeof(sockaddr_in6))
        _parse_ipv6(address, <sockaddr_in6 *>out, caller)
        out_len[0] = sizeof(sockaddr_in6)
    elif family == AF_UNIX:
        _parse_unix(address, <sockaddr_un *>out, out_len, caller)
    else:
        raise OSError(_errno.EAFNOSUPPORT,
                      f"{caller}(): address family {family} is not supported by zerosock")
    return 0


cdef object make_address(const sockaddr *addr, zs_socklen_t length, int family):
    """The Python form of a C address, as the standard library builds it."""
    cdef char text[64]
    cdef const sockaddr_in *sin
    cdef const sockaddr_in6 *sin6
    cdef const sockaddr_un *sun
    cdef Py_ssize_t offset, path_len
    cdef const char *nul
    if length == 0:
        return None
    if addr.sa_family == AF_INET:
        sin = <const sockaddr_in *>addr
        inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(sin.sin_port))
    if addr.sa_family == AF_INET6:
        sin6 = <const sockaddr_in6 *>addr
        inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(sin6.sin6_port),
                ntohl(sin6.sin6_flowinfo), sin6.sin6_scope_id)
    if addr.sa_family == AF_UNIX:
        sun = <const sockaddr_un *>addr
        offset = _sun_path_offset()
        path_len = <Py_ssize_t>length - offset
        if path_len <= 0:
            return ""
        if sun.sun_path[0] == 0:  # Linux abstract namespace
            return PyBytes_FromStringAndSize(&sun.sun_path[0], path_len)
        nul = <const char *>memchr(&sun.sun_path[0], 0, path_len)
        if nul != NULL:
            path_len = nul - &sun.sun_path[0]
        return PyUnicode_DecodeFSDefaultAndSize(&sun.sun_path[0], path_len)
    return (addr.sa_family, PyBytes_FromStringAndSize(<const char *>addr, length))
