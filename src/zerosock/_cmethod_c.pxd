from cpython.object cimport PyObject

cdef extern from "Python.h":
    ctypedef struct PyMethodDef:
        const char *ml_name
        void *ml_meth
        int ml_flags
        const char *ml_doc
    int METH_O, METH_NOARGS, METH_FASTCALL, METH_KEYWORDS


cdef class CMethod:
    cdef PyMethodDef definition
    cdef bytes name
    cdef bytes doc
    cdef readonly object descriptor  # the class's method, once the class is made
    cdef readonly type owner


# A C function ``impl`` (``flags``: its METH_* calling convention) as a method
# of the Python class in whose body the result is assigned to a name; ``kind``
# is CMethod or a subclass of it that does more as the class is created.
cdef CMethod c_method(void *impl, int flags, bytes doc, type kind=*)
