from zerosock._shim cimport sockaddr, sockaddr_storage, zs_socklen_t

cdef class AddressCache:
    """Remembers the last peer address converted, so a stream of datagrams
    from one peer reuses one Python object instead of building a tuple each."""
    cdef sockaddr_storage last
    cdef zs_socklen_t last_len
    cdef object last_obj
    cdef object get(self, const sockaddr *addr, zs_socklen_t length, int family)

cdef int parse_address(object address, int family, sockaddr_storage *out,
                       zs_socklen_t *out_len, str caller) except -1
cdef object make_address(const sockaddr *addr, zs_socklen_t length, int family)
cdef unsigned int uint_format(object value) except? 0xFFFFFFFF
