# CPython's internals in one place: csrc/zs_cpython.h, whose fast paths
# zerosock._cpython_c checks at import (call enabled() before using one).

from cpython.object cimport PyObject, PyTypeObject, Py_TYPE

cdef extern from "zs_cpython.h":
    # chosen by the compiler
    double zs_loop_clock() except? -1.0
    PyObject *zs_type_lookup(PyTypeObject *type, object name)

    # __slots__ members
    Py_ssize_t zs_slot_offset(object descr) except -1
    PyObject *zs_slot_get(object o, Py_ssize_t offset)
    void zs_slot_set(object o, Py_ssize_t offset, object value)

    # handle_free_list
    object zs_handle_alloc(PyTypeObject *kind)
    const char *zs_handle_dealloc_misfit(PyTypeObject *kind, PyTypeObject *plain)
    int zs_set_handle_dealloc(object kind, Py_ssize_t *offsets, int count) except -1
    int zs_handle_free_count(object kind)

    # type_version_tags
    int zs_version_tags_on
    ctypedef struct zs_type_memo:
        pass
    bint zs_type_unchanged(const zs_type_memo *memo, PyTypeObject *kind)
    void zs_remember_type(zs_type_memo *memo, PyTypeObject *kind)
    void zs_forget_type(zs_type_memo *memo)
    const char *zs_version_tags_misfit(object base, object derived, object name)

    # bytearray_internals
    int zs_bytearray_consume(object o, Py_ssize_t n, bint fast) except -1
    int zs_bytearray_append(object o, const char *data, Py_ssize_t n, bint fast) except -1
    const char *zs_bytearray_misfit()

    # bytes_refill
    void zs_bytes_refill(object o, const char *data, Py_ssize_t n)
    const char *zs_bytes_refill_misfit()

    # awaitable_slots
    ctypedef object (*zs_step_fn)(object, int *)
    int zs_install_op_slots(object type, zs_step_fn step, bint reuse_stop) except -1

    # stop_iteration_reuse
    bint zs_stop_kept_alone()
    Py_ssize_t zs_stops_made_count()

    # what a C path checks before it stands in for methods
    bint zs_class_keeps(zs_type_memo *memo, PyTypeObject *kind, dict expected)
    int zs_instance_keeps(object obj, dict expected) except -1


# Whether a class, and an object of it, still have what a C path stands in
# for: ``expected`` maps a name to what the class's MRO gives for it (None:
# nothing), checked again only when the class's version tag changes
# (``memo``; each module sets its own zs_version_tags_on); an object keeps
# them when it sets none of those names on itself.
cdef inline bint class_keeps(PyTypeObject *kind, zs_type_memo *memo, dict expected) noexcept:
    return zs_class_keeps(memo, kind, expected)


cdef inline bint instance_keeps(object obj, dict expected) except -1:
    return zs_instance_keeps(obj, expected)


cdef inline bint keeps_methods(object obj, zs_type_memo *memo, dict expected) except -1:
    return zs_class_keeps(memo, Py_TYPE(obj), expected) and zs_instance_keeps(obj, expected)
