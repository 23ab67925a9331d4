from zerosock._shim cimport sockaddr, sockaddr_storage, zs_socklen_t

from cpython.ref cimport PyObject

# The peers a cache remembers besides the last: PEER_ENTRIES (2 **
# PEER_ENTRY_BITS, at most 256: by_object holds entry numbers in a byte) of
# them, in PEER_SETS sets of PEER_WAYS, every address up to PEER_BYTES long
# (an IPv6 one).
cdef enum:
    PEER_ENTRY_BITS = 8
    PEER_ENTRIES = 256
    PEER_WAYS = 4
    PEER_SETS = 64
    PEER_BYTES = 28

cdef struct PeerEntry:
    zs_socklen_t length             # 0: empty
    unsigned char raw[PEER_BYTES]
    PyObject *obj                   # a reference of the cache's own

cdef struct PeerTable:
    PeerEntry entries[PEER_ENTRIES]
    unsigned char by_object[PEER_ENTRIES]  # an entry whose object hashes here
    unsigned char next_way[PEER_SETS]      # per set: the way replaced next


cdef class AddressCache:
    """Converts peer addresses to their Python form, remembering the last one
    and, once a second peer shows up, a table of recent ones: datagrams from
    the same peers reuse their objects instead of building a tuple each, and
    a reply sent to such an object takes its C address back without parsing."""
    cdef sockaddr_storage last
    cdef zs_socklen_t last_len
    cdef object last_obj
    cdef PeerTable *table
    cdef object get(self, const sockaddr *addr, zs_socklen_t length, int family)
    cdef void _remember_last(self, const sockaddr *addr, zs_socklen_t length, object obj) noexcept
    cdef bint find(self, object obj, sockaddr_storage *name, zs_socklen_t *namelen) noexcept

cdef int parse_address(object address, int family, sockaddr_storage *out,
                       zs_socklen_t *out_len, str caller) except -1
cdef object make_address(const sockaddr *addr, zs_socklen_t length, int family)
cdef unsigned int uint_format(object value) except? 0xFFFFFFFF
