from cpython.object cimport PyObject

from zerosock._aio_ring_c cimport RingPoller
from zerosock._aio_timers_c cimport TimerHeap
from zerosock._cpython_c cimport zs_type_memo
from zerosock._selectors_c cimport Selector


cdef class LoopCore:
    cdef object loop
    cdef dict state               # the loop's __dict__: _stopping and a replaced time() looked up there
    cdef dict loop_keywords       # {"loop": loop}: what its Futures and Tasks are made with (never exposed)
    cdef object ready             # the loop's _ready deque
    cdef object ready_append, ready_popleft  # its bound methods
    cdef readonly TimerHeap timers  # the loop's _scheduled
    cdef Selector native          # the loop's selector when it is zerosock's C one
    cdef RingPoller ring          # its poller when that is an io_uring (completions to run too)
    cdef bint stdlib_time         # the loop's class keeps the stdlib's time()
    cdef double clock_resolution
    # This iteration's I/O handles, then its due timers: owned references in
    # an array kept from one iteration to the next.
    cdef PyObject **pending
    cdef Py_ssize_t npending, pending_capacity
    # Sparing the zero-timeout poll after a quiet iteration (see run_once).
    cdef bint skip_poll           # the last iteration was quiet: the next may spare its poll
    cdef bint disturbed           # this iteration ran something after its poll that is not quiet
    cdef zs_type_memo may_spare_memo  # the loop's type when found to allow sparing
    cdef Py_ssize_t state_size    # len(state) when own_iteration was found
    cdef bint own_iteration       # the loop has no _run_once of its own
    # The loop's _debug read from its __slots__ member while its class keeps
    # the member found at first (debug_slot: {"_debug": member}, None: no slot).
    cdef dict debug_slot
    cdef Py_ssize_t debug_offset
    cdef zs_type_memo debug_memo
    cdef readonly unsigned long long spared_polls  # how many polls were spared (for tests)


    cdef int _add_pending(self, object handle) except -1
    cdef void _release_pending(self, Py_ssize_t start) noexcept
    cdef double now(self) except? -1.0
    cpdef object call_soon(self, object callback, tuple args, object context)
    cpdef object call_at(self, object when, object callback, tuple args, object context)
    cpdef object call_later(self, object delay, object callback, tuple args, object context)
    cpdef int schedule(self, double when, object handle) except -1
    cdef int _collect(self, object fileobj, object handle, bint writing) except -1
    cdef int _poll(self, double timeout, bint debug) except -1
    cdef int _drop_cancelled_timers(self) except -1
    cdef int _collect_due(self) except -1
    cdef int _run_debug(self, object handle) except -1
    cdef bint _may_spare_poll(self) except -1
    cdef bint _loop_debug(self) except -1
    cpdef int run_once(self) except -1


# Whether a TimerHandle (the stdlib's, ours or another) is scheduled: its _scheduled as a truth value.
cdef int timer_scheduled(object timer) except -1
