# The fast path to the memory of bytes, bytearray and memoryview objects: their
# pointer and length read straight from the object, without taking a buffer
# export (PyObject_GetBuffer and its release cost more than the syscall's
# wrapper).  Only for code that runs no Python between borrowing and the last
# use of the pointer: nothing then can resize, free or release the memory.
# Anything else, or a borrow refused, goes through PyObject_GetBuffer.

cdef extern from *:
    """
    static inline int zs_borrow_memory(PyObject *o, int writable, char **ptr, Py_ssize_t *len)
    {
        if (PyBytes_CheckExact(o)) {
            if (writable)
                return 0;
            *ptr = PyBytes_AS_STRING(o);
            *len = PyBytes_GET_SIZE(o);
            return 1;
        }
        if (PyByteArray_CheckExact(o)) {
            *ptr = PyByteArray_AS_STRING(o);
            *len = PyByteArray_GET_SIZE(o);
            return 1;
        }
        if (PyMemoryView_Check(o)) {
            PyMemoryViewObject *mv = (PyMemoryViewObject *)o;
            /* A released view, a read-only one asked to be written, or one
               not flat (where len() and the size in bytes disagree):
               PyObject_GetBuffer says why or handles it. */
            if ((mv->flags & _Py_MEMORYVIEW_RELEASED) || !(mv->flags & _Py_MEMORYVIEW_C)
                    || mv->view.ndim != 1 || (writable && mv->view.readonly))
                return 0;
            *ptr = (char *)mv->view.buf;
            *len = mv->view.len;
            return 1;
        }
        return 0;
    }
    """
    bint zs_borrow_memory(object o, bint writable, char **ptr, Py_ssize_t *length)
