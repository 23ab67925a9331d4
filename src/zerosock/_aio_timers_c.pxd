cdef struct TimerKey:
    double when                  # the handle's _when, as a float
    unsigned long long seq       # scheduling order: ties run first-scheduled first


cdef class TimerHeap:
    cdef list handles            # TimerHandles in heap order (the list keeps them visible to the GC)
    cdef TimerKey *keys          # keys[i] orders handles[i]
    cdef Py_ssize_t capacity     # of keys
    cdef unsigned long long next_seq
    cdef public Py_ssize_t cancelled_count  # cancelled handles still in the heap

    cdef int _reserve(self, Py_ssize_t size) except -1
    cdef int push(self, double when, object handle) except -1
    cdef object pop(self, TimerKey *key)
    cdef int compact(self) except -1
