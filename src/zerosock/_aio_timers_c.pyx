# cython: language_level=3
"""The timer heap of zerosock.aio: the loop's scheduled ``TimerHandle``\\s
ordered by a binary heap whose comparisons are C comparisons of
(when, scheduling order), where the stdlib's heapq calls
``TimerHandle.__lt__``, a Python method, at every step."""

cimport cython
from cpython.list cimport PyList_GET_ITEM, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject, PyObject_GetItem
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.string cimport memcpy


cdef extern from *:
    """
    #define ZS_KEY_LESS(a, b) ((a).when < (b).when || ((a).when == (b).when && (a).seq < (b).seq))
    """
    bint ZS_KEY_LESS(TimerKey a, TimerKey b)
    # A list's item array (public API), sifted in place.
    PyObject **PySequence_Fast_ITEMS(object sequence)


cdef inline void _sift_up(PyObject **items, TimerKey *keys, Py_ssize_t pos) noexcept:
    cdef PyObject *item = items[pos]
    cdef TimerKey key = keys[pos]
    cdef Py_ssize_t parent
    while pos > 0:
        parent = (pos - 1) >> 1
        if not ZS_KEY_LESS(key, keys[parent]):
            break
        items[pos] = items[parent]
        keys[pos] = keys[parent]
        pos = parent
    items[pos] = item
    keys[pos] = key


cdef inline void _sift_down(PyObject **items, TimerKey *keys, Py_ssize_t pos,
                            Py_ssize_t size) noexcept:
    cdef PyObject *item = items[pos]
    cdef TimerKey key = keys[pos]
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and ZS_KEY_LESS(keys[child + 1], keys[child]):
            child += 1
        if not ZS_KEY_LESS(keys[child], key):
            break
        items[pos] = items[child]
        keys[pos] = keys[child]
        pos = child
    items[pos] = item
    keys[pos] = key


@cython.final
cdef class TimerHeap:
    """What ``loop._scheduled`` is on the C backend: a heap of TimerHandles.

    The loop core pushes and pops; from Python it answers what the stdlib's
    list is asked for (``len``, truth, iteration, ``[0]`` the earliest,
    ``clear``)."""

    def __cinit__(self):
        self.handles = []

    def __dealloc__(self):
        PyMem_Free(self.keys)

    cdef int _reserve(self, Py_ssize_t size) except -1:
        cdef Py_ssize_t capacity
        cdef TimerKey *grown
        if size <= self.capacity:
            return 0
        capacity = max(16, self.capacity * 2, size)
        grown = <TimerKey *>PyMem_Realloc(self.keys, <size_t>capacity * sizeof(TimerKey))
        if grown == NULL:
            raise MemoryError()
        self.keys = grown
        self.capacity = capacity
        return 0

    cdef int push(self, double when, object handle) except -1:
        cdef Py_ssize_t n = len(self.handles)
        self._reserve(n + 1)
        self.handles.append(handle)
        self.keys[n].when = when
        self.keys[n].seq = self.next_seq
        self.next_seq += 1
        _sift_up(PySequence_Fast_ITEMS(self.handles), self.keys, n)
        return 0

    cdef object pop(self, TimerKey *key):
        """Remove and return the earliest handle, its key in ``key`` (the heap is not empty)."""
        cdef Py_ssize_t n = len(self.handles) - 1
        # Taken, then deleted: GCC 16 finds uninitialized variables in the
        # fallback of Cython's inlined list.pop() helper.
        last = <object>PyList_GET_ITEM(self.handles, n)
        del self.handles[n]
        if key != NULL:
            key[0] = self.keys[0]
        if n == 0:
            return last
        first = self.handles[0]
        self.handles[0] = last
        self.keys[0] = self.keys[n]
        _sift_down(PySequence_Fast_ITEMS(self.handles), self.keys, 0, n)
        return first

    cdef int compact(self, handle_test cancelled, handle_step unschedule) except -1:
        """Drop every handle ``cancelled`` says is cancelled (``unschedule``
        marks it so) and re-heap the rest.

        The two may run Python code (a handle type's own ``_cancelled``, a
        flag's ``__bool__``) that schedules or clears timers: the heap is
        emptied first, so such changes land in an empty heap, and what was
        not dropped is merged back with its key, order kept."""
        cdef list old = self.handles
        cdef Py_ssize_t i, n = len(old)
        cdef TimerKey *old_keys = <TimerKey *>PyMem_Malloc(<size_t>max(n, 1) * sizeof(TimerKey))
        if old_keys == NULL:
            raise MemoryError()
        memcpy(old_keys, self.keys, <size_t>n * sizeof(TimerKey))
        self.handles = []
        self.cancelled_count = 0
        try:
            for i in range(n):
                handle = <object>PyList_GET_ITEM(old, i)
                if cancelled(handle):
                    unschedule(handle)
                    # Out of the list, whose reference ``handle`` outlives.
                    Py_INCREF(None)
                    PyList_SET_ITEM(old, i, None)
                    Py_DECREF(handle)
        finally:
            # Kept handles (every one not yet tested, on failure) return with their keys.
            self._merge(old, old_keys, n)
            PyMem_Free(old_keys)
        return 0

    cdef int _merge(self, list old, TimerKey *old_keys, Py_ssize_t n) except -1:
        cdef Py_ssize_t i, size = len(self.handles)
        self._reserve(size + n)
        for i in range(n):
            item = <object>PyList_GET_ITEM(old, i)
            if item is not None:
                self.handles.append(item)
                self.keys[size] = old_keys[i]
                size += 1
        for i in range(size // 2 - 1, -1, -1):
            _sift_down(PySequence_Fast_ITEMS(self.handles), self.keys, i, size)
        return 0

    @property
    def when(self):
        """The earliest handle's time as a float (the heap is not empty)."""
        return self.keys[0].when

    def clear(self):
        self.handles = []
        self.cancelled_count = 0

    def __len__(self):
        return len(self.handles)

    def __bool__(self):
        return len(self.handles) != 0

    def __iter__(self):
        return iter(list(self.handles))

    def __getitem__(self, index):
        # PyObject_GetItem itself, where Cython's generic indexing helper
        # inlines a path GCC 16 warns about.
        return PyObject_GetItem(self.handles, index)

    def __repr__(self):
        return f"<TimerHeap of {len(self.handles)} handles>"
