# cython: language_level=3
"""C functions as methods of Python classes, declared in the class body.

``write = c_method(<void *>_write, METH_O, b"write($self, data, /)...")`` in
a class statement gives the class a method descriptor of the kind builtin
types have: the interpreter calls it without a frame, an argument tuple or a
bound method, where a compiled Python method costs those.  The descriptor is
made for the class as the class is created (``__set_name__``), so it checks
that ``self`` is an instance, as a builtin type's methods do."""

cdef extern from "Python.h":
    object PyDescr_NewMethod(type kind, PyMethodDef *method)

# A descriptor points into its CMethod's definition: every one made is kept
# here, as long as the classes, which live as long as the process.
cdef list _made = []


cdef class CMethod:
    """What ``c_method`` gives: it becomes the class's method descriptor."""

    def __set_name__(self, owner, name):
        if self.descriptor is not None:
            raise RuntimeError(f"{name} is already a method of {self.owner.__name__}")
        self.name = name.encode("ascii")
        self.definition.ml_name = self.name
        self.descriptor = PyDescr_NewMethod(owner, &self.definition)
        self.owner = owner
        _made.append(self)
        setattr(owner, name, self.descriptor)  # (type creation sets names from a copy)


cdef CMethod c_method(void *impl, int flags, bytes doc, type kind=CMethod):
    cdef CMethod method = kind.__new__(kind)
    method.doc = doc
    method.definition.ml_meth = impl
    method.definition.ml_flags = flags
    method.definition.ml_doc = method.doc
    return method
