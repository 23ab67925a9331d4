cdef struct TimerKey:
    double when                  # the handle's _when, as a float
    unsigned long long seq       # scheduling order: ties run first-scheduled first


# What the loop core tells the heap about a handle (either may run Python code).
ctypedef bint (*handle_test)(object) except -1
ctypedef int (*handle_step)(object) except -1


cdef class TimerHeap:
    cdef list handles            # TimerHandles in heap order (the list keeps them visible to the GC)
    cdef TimerKey *keys          # keys[i] orders handles[i]
    cdef Py_ssize_t capacity     # of keys
    cdef unsigned long long next_seq
    cdef public Py_ssize_t cancelled_count  # cancelled handles still in the heap

    cdef int _reserve(self, Py_ssize_t size) except -1
    cdef int push(self, double when, object handle) except -1
    cdef object pop(self, TimerKey *key)
    cdef int compact(self, handle_test cancelled, handle_step unschedule) except -1
    cdef int _merge(self, list old, TimerKey *old_keys, Py_ssize_t n) except -1
