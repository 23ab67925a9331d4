# Direct access to the __slots__ members of Python classes (asyncio's Handle
# and TimerHandle, the transport facade's _core): the offset is read once from
# the member's descriptor, after which a read or a write is a load or a store,
# where setattr/getattr from C walk the type and call the descriptor (on a
# fresh Handle, slower than the interpreter's own specialised bytecode).
# Only for objects whose type is known to have the slot.

from cpython.object cimport PyObject

cdef extern from *:
    """
    #include "structmember.h"
    static Py_ssize_t zs_slot_offset(PyObject *descr)
    {
        if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)
                || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            PyErr_SetString(PyExc_TypeError, "not an object __slots__ member");
            return -1;
        }
        return ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    /* Borrowed; NULL when the slot was never set. */
    static inline PyObject *zs_slot_get(PyObject *o, Py_ssize_t offset)
    {
        return *(PyObject **)((char *)o + offset);
    }
    static inline void zs_slot_set(PyObject *o, Py_ssize_t offset, PyObject *value)
    {
        PyObject **slot = (PyObject **)((char *)o + offset);
        PyObject *old = *slot;
        Py_INCREF(value);
        *slot = value;
        Py_XDECREF(old);
    }
    """
    Py_ssize_t zs_slot_offset(object descr) except -1
    PyObject *zs_slot_get(object o, Py_ssize_t offset)
    void zs_slot_set(object o, Py_ssize_t offset, object value)
