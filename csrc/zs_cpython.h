/*
 * zs_cpython.h -- CPython's internals in one place.
 *
 * Every piece of zerosock's C that relies on CPython's private layout or
 * behaviour lives here.  Those chosen at run time are the fast paths of
 * zerosock._cpython_c, which keeps for each the CPython versions it was
 * verified on and checks it at import against the running interpreter: the
 * code calls them only while that module says they are on, and takes a
 * generic path otherwise.  The rest is chosen by the compiler: private API
 * of the versions that have it, public API on the others.
 *
 *   fast path             what it relies on                                 verified
 *   handle_slots          asyncio.Handle/TimerHandle's __slots__ and what   3.9-3.15
 *                         __init__, _run and cancel do with them
 *   handle_free_list      what subtype_dealloc does for such a class        3.9-3.15
 *   type_version_tags     a type's version tag changes with the type        3.9-3.15
 *   bytearray_internals   PyByteArrayObject's fields (from 3.15 over a      3.9-3.15
 *                         bytes object of its own)
 *   bytes_refill          a bytes object nobody else holds may be refilled  3.9-3.15
 *   awaitable_slots       a ready static type's iternext/am_send slots set  3.9-3.15
 *   stop_iteration_reuse  an await's StopIteration read once and dropped   3.12-3.14
 *   (ssl_object_layout    _ssl objects' pointers: zs_openssl.h, checked by the TLS engine)
 *
 * Every function here takes and returns references as the C API does.
 */
#ifndef ZS_CPYTHON_H
#define ZS_CPYTHON_H

#include <Python.h>
#include <structmember.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- chosen by the compiler --------------------------------------------- */

/* The clock of loop.time(): what time.monotonic() reads, read without its
 * call.  -1.0 with an exception set when the clock fails (3.13 on reports
 * that; earlier versions cannot fail here). */
static inline double zs_loop_clock(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Monotonic(&t) < 0)
        return -1.0;
    return PyTime_AsSecondsDouble(t);
#else
    return _PyTime_AsSecondsDouble(_PyTime_GetMonotonicClock());
#endif
}

/* What `name` is on `type` (its MRO's first), borrowed, or NULL without an
 * exception set.  The interpreter's method cache where it exports it (3.9
 * to 3.15); the MRO's dicts, with the public API, on later versions. */
static inline PyObject *zs_type_lookup(PyTypeObject *type, PyObject *name)
{
#if PY_VERSION_HEX < 0x03100000
    return _PyType_Lookup(type, name);
#else
    PyObject *mro = type->tp_mro, *found;
    Py_ssize_t i;
    if (mro == NULL)
        return NULL;
    for (i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        found = dict == NULL ? NULL : PyDict_GetItemWithError(dict, name);
        if (found != NULL)
            return found;
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return NULL;
        }
    }
    return NULL;
#endif
}

/* ---- __slots__ members (CPython's member descriptors: public C API) ------
 * A slot's offset is read once from its descriptor; a read or a write is then
 * a load or a store, where getattr/setattr walk the type and call the
 * descriptor.  zerosock's own classes use these always; asyncio's Handle
 * only under handle_slots. */

/* The offset of an object __slots__ member, or -1 with TypeError. */
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

/* ---- handle_free_list ----------------------------------------------------
 * How zerosock's Handle and TimerHandle are freed and made: what the
 * interpreter's deallocation for classes (subtype_dealloc) does for them --
 * no __dict__, no finalizer -- without its walk of the bases' members, and
 * with a free list.  A loop makes and frees a few handles per callback it
 * schedules; reusing one skips the memory allocator and the collector's
 * accounting.  A freed handle is kept untracked, its slots and weak
 * references already cleared, owning no reference (its class's is dropped as
 * for any freed instance). */
#define ZS_HANDLE_SLOTS 9
#define ZS_HANDLE_FREE_MAX 250
typedef struct {
    PyTypeObject *type;
    destructor generic;             /* what the class had */
    Py_ssize_t offsets[ZS_HANDLE_SLOTS];
    int count;
    int nfree;
    PyObject *free[ZS_HANDLE_FREE_MAX];
} zs_handle_layout;
static zs_handle_layout zs_handle_layouts[2];
static int zs_handle_layout_count;

static void zs_handle_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    zs_handle_layout *layout = NULL;
    int i;
    for (i = 0; i < zs_handle_layout_count && layout == NULL; i++) {
        if (type == zs_handle_layouts[i].type)
            layout = &zs_handle_layouts[i];
    }
    for (i = 0; i < zs_handle_layout_count && layout == NULL; i++) {
        /* A subclass's instance: the generic deallocation did its part. */
        if (PyType_IsSubtype(type, zs_handle_layouts[i].type))
            layout = &zs_handle_layouts[i];
    }
    if (type == layout->type && (type->tp_finalize != NULL || type->tp_del != NULL)) {
        layout->generic(self);  /* a finalizer given to the class itself since */
        return;
    }
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, zs_handle_dealloc)
    /* (Where the list is depends on the version: 3.12 on may manage it.) */
    if (type->tp_weaklistoffset != 0)
        PyObject_ClearWeakRefs(self);
    for (i = 0; i < layout->count; i++)
        Py_CLEAR(*(PyObject **)((char *)self + layout->offsets[i]));
    if (type == layout->type && layout->nfree < ZS_HANDLE_FREE_MAX
            && type->tp_free == PyObject_GC_Del)
        layout->free[layout->nfree++] = self;
    else
        type->tp_free(self);
    Py_DECREF(type);  /* a class's instances own a reference to it */
    Py_TRASHCAN_END
}

/* A new instance of `type` with every slot NULL, as PyType_GenericAlloc
 * makes it: from the free list when `type` has one. */
static PyObject *zs_handle_alloc(PyTypeObject *type)
{
    zs_handle_layout *layout = NULL;
    PyObject *self;
    int i;
    for (i = 0; i < zs_handle_layout_count && layout == NULL; i++) {
        if (type == zs_handle_layouts[i].type)
            layout = &zs_handle_layouts[i];
    }
    if (layout == NULL || layout->nfree == 0 || type->tp_dealloc != zs_handle_dealloc)
        return PyType_GenericAlloc(type, 0);
    self = layout->free[--layout->nfree];
    (void)PyObject_Init(self, type);  /* the class's reference, a new refcount */
    PyObject_GC_Track(self);
    return self;
}

/* Why the deallocation above does not fit `type`, or NULL when it does:
 * a class made by a class statement with __slots__ and no __dict__, no
 * finalizer, whose deallocation is still the interpreter's generic one
 * (that of `plain`, such a class made for the comparison). */
static const char *zs_handle_dealloc_misfit(PyTypeObject *type, PyTypeObject *plain)
{
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || !(type->tp_flags & Py_TPFLAGS_HAVE_GC))
        return "not a heap type with garbage collection";
    if (type->tp_dictoffset != 0)
        return "instances have a __dict__";
    if (type->tp_finalize != NULL || type->tp_del != NULL)
        return "a finalizer";
    if (type->tp_dealloc != plain->tp_dealloc)
        return "not the interpreter's generic deallocation";
    if (type->tp_free != PyObject_GC_Del || plain->tp_free != PyObject_GC_Del)
        return "not freed by PyObject_GC_Del";
    if (type->tp_basicsize != type->tp_base->tp_basicsize)
        return "a layout of its own";
    return NULL;
}

static int zs_set_handle_dealloc(PyObject *kind, Py_ssize_t *offsets, int count)
{
    PyTypeObject *type = (PyTypeObject *)kind;
    zs_handle_layout *layout;
    if (zs_handle_layout_count == 2 || count > ZS_HANDLE_SLOTS) {
        PyErr_SetString(PyExc_RuntimeError, "not a handle class this deallocation fits");
        return -1;
    }
    layout = &zs_handle_layouts[zs_handle_layout_count++];
    layout->type = type;
    layout->generic = type->tp_dealloc;
    memcpy(layout->offsets, offsets, sizeof(Py_ssize_t) * (size_t)count);
    layout->count = count;
    layout->nfree = 0;
    type->tp_dealloc = zs_handle_dealloc;
    return 0;
}

static int zs_handle_free_count(PyObject *kind)
{
    int i;
    for (i = 0; i < zs_handle_layout_count; i++) {
        if ((PyObject *)zs_handle_layouts[i].type == kind)
            return zs_handle_layouts[i].nfree;
    }
    return 0;
}

/* ---- type_version_tags ---------------------------------------------------
 * The last type found to pass some check, by its version tag: any change to
 * the type or to one of its bases gives it a new tag, never reused (the
 * interpreter's method cache relies on the same).  From 3.10 a change sets
 * the tag to 0; 3.9 only clears Py_TPFLAGS_VALID_VERSION_TAG and keeps the
 * number, so there the flag is read too.  The check is on the hot paths:
 * two comparisons where the tag alone does, as a memo holds a type only with
 * its valid (nonzero) tag.  With the fast path off (zs_version_tags_on 0,
 * each module's copy set at its import) nothing is remembered and the check
 * runs every time. */
static int zs_version_tags_on;

typedef struct {
    PyTypeObject *type;             /* NULL, or a type whose tag was valid */
    unsigned int tag;
} zs_type_memo;

static inline int zs_type_tag_valid(PyTypeObject *type)
{
#if PY_VERSION_HEX < 0x030A0000
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return 0;
#endif
    return type->tp_version_tag != 0;
}

static inline void zs_forget_type(zs_type_memo *memo)
{
    memo->type = NULL;
    memo->tag = 0;
}

static inline int zs_type_unchanged(const zs_type_memo *memo, PyTypeObject *type)
{
#if PY_VERSION_HEX < 0x030A0000
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return 0;
#endif
    return type == memo->type && type->tp_version_tag == memo->tag;
}

static inline void zs_remember_type(zs_type_memo *memo, PyTypeObject *type)
{
    if (zs_version_tags_on && zs_type_tag_valid(type)) {
        memo->type = type;
        memo->tag = type->tp_version_tag;
    } else {
        zs_forget_type(memo);
    }
}

/* Whether class `kind` still has what `expected` says (a dict: name -> what
 * its MRO must give for it, None: nothing), checked again only when its
 * version tag changes.  What a C path checks before it stands in for methods. */
static inline int zs_class_keeps(zs_type_memo *memo, PyTypeObject *kind, PyObject *expected)
{
    PyObject *name, *value;
    Py_ssize_t pos = 0;
    if (zs_type_unchanged(memo, kind))
        return 1;
    while (PyDict_Next(expected, &pos, &name, &value)) {
        if (zs_type_lookup(kind, name) != (value == Py_None ? NULL : value))
            return 0;
    }
    zs_remember_type(memo, kind);
    return 1;
}

/* Whether `obj` sets none of `expected`'s names on itself (its __dict__);
 * -1 with an exception set on failure. */
static inline int zs_instance_keeps(PyObject *obj, PyObject *expected)
{
    PyObject *state, *name, *value;
    Py_ssize_t pos = 0;
    int found = 0;
    if (Py_TYPE(obj)->tp_dictoffset == 0)
        return 1;
    state = PyObject_GenericGetDict(obj, NULL);
    if (state == NULL)
        return -1;
    if (PyDict_GET_SIZE(state)) {
        while (!found && PyDict_Next(expected, &pos, &name, &value))
            found = PyDict_Contains(state, name);
    }
    Py_DECREF(state);
    return found < 0 ? -1 : !found;
}

/* The check at import: a class looked up has a valid tag, which a change
 * to its base replaces.  NULL when so, else why not. */
static const char *zs_version_tags_misfit(PyObject *base, PyObject *derived, PyObject *name)
{
    zs_type_memo memo = {NULL, 0};
    PyTypeObject *type = (PyTypeObject *)derived;
    int saved = zs_version_tags_on;
    const char *why = NULL;
    (void)zs_type_lookup(type, name);
    zs_version_tags_on = 1;
    zs_remember_type(&memo, type);
    zs_version_tags_on = saved;
    if (memo.tag == 0)
        return "a class looked up has no valid version tag";
    if (!zs_type_unchanged(&memo, type))
        return "a class's tag does not hold while it is unchanged";
    if (PyObject_SetAttr(base, name, Py_None) < 0) {
        PyErr_Clear();
        return "the probe class could not be changed";
    }
    (void)zs_type_lookup(type, name);
    if (zs_type_unchanged(&memo, type))
        why = "a change to a base class leaves the tag as it was";
    return why;
}

/* ---- bytearray_internals -------------------------------------------------
 * The bytearray edits a stream buffer needs, with the stdlib's semantics
 * (`del b[:n]`, `b.extend(data)`), keeping the allocation for the next read:
 * an echo server's buffer fills and empties once per message.  With the
 * fast path off (`fast` 0), the public API does the same. */
/* Whether the bytes may be edited in place: not exported (the stdlib's
 * BufferError), and from 3.15 their bytes object held by nobody else. */
static inline int zs_bytearray_editable(PyByteArrayObject *b)
{
#if PY_VERSION_HEX >= 0x030F0000
    if (b->ob_bytes_object == NULL || Py_REFCNT(b->ob_bytes_object) != 1)
        return 0;
#endif
    return b->ob_exports == 0;
}

static int zs_bytearray_consume(PyObject *o, Py_ssize_t n, int fast)
{
    PyByteArrayObject *b = (PyByteArrayObject *)o;
    Py_ssize_t left;
    if (n <= 0)
        return 0;
    if (!fast || !zs_bytearray_editable(b))
        return PySequence_DelSlice(o, 0, n);
    left = Py_SIZE(b) - n;
    b->ob_start = left ? b->ob_start + n : b->ob_bytes;
    Py_SET_SIZE(b, left);
    b->ob_start[left] = '\0';
    return 0;
}

static int zs_bytearray_append(PyObject *o, const char *data, Py_ssize_t n, int fast)
{
    PyByteArrayObject *b = (PyByteArrayObject *)o;
    Py_ssize_t size = Py_SIZE(b);
    if (fast && b->ob_start != b->ob_bytes && zs_bytearray_editable(b)
            && (b->ob_start - b->ob_bytes) + size + n + 1 > b->ob_alloc) {
        /* Slide the unread bytes to the front rather than grow. */
        memmove(b->ob_bytes, b->ob_start, (size_t)size);
        b->ob_start = b->ob_bytes;
        b->ob_bytes[size] = '\0';
    }
    if (PyByteArray_Resize(o, size + n) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(o) + size, data, (size_t)n);
    return 0;
}

/* The check at import: the fields are where the running interpreter keeps
 * them, and the edits above leave what the public API reads.  From 3.15 the
 * bytes live in a bytes object whose size is the allocation (its own trailing
 * NUL beyond it); before, the allocation counted the trailing NUL. */
#if PY_VERSION_HEX >= 0x030F0000
#define ZS_BYTEARRAY_PROBE_ALLOC 16
#else
#define ZS_BYTEARRAY_PROBE_ALLOC 17
#endif
static const char *zs_bytearray_misfit(void)
{
    static const char text[] = "0123456789abcdef";
    PyObject *o = PyByteArray_FromStringAndSize(text, 16);
    PyByteArrayObject *b = (PyByteArrayObject *)o;
    const char *why = NULL;
    if (o == NULL) {
        PyErr_Clear();
        return "no memory for the probe";
    }
    if (PyByteArray_Type.tp_basicsize != (Py_ssize_t)sizeof(PyByteArrayObject))
        why = "PyByteArrayObject's size differs";
    else if (b->ob_start != PyByteArray_AS_STRING(o) || b->ob_alloc < ZS_BYTEARRAY_PROBE_ALLOC
             || b->ob_start < b->ob_bytes || b->ob_exports != 0 || !zs_bytearray_editable(b))
        why = "PyByteArrayObject's fields differ";
#if PY_VERSION_HEX >= 0x030F0000
    else if (!PyBytes_CheckExact(b->ob_bytes_object)
             || PyBytes_AS_STRING(b->ob_bytes_object) != b->ob_bytes
             || PyBytes_GET_SIZE(b->ob_bytes_object) != b->ob_alloc)
        why = "PyByteArrayObject's bytes object differs";
#endif
    else if (zs_bytearray_consume(o, 10, 1) < 0 || PyByteArray_GET_SIZE(o) != 6
             || memcmp(PyByteArray_AS_STRING(o), "abcdef", 7) != 0)
        why = "consuming the front reads back wrong";
    else if (zs_bytearray_append(o, text, 12, 1) < 0 || PyByteArray_GET_SIZE(o) != 18
             || memcmp(PyByteArray_AS_STRING(o), "abcdef0123456789ab", 19) != 0)
        why = "appending reads back wrong";
    if (PyErr_Occurred()) {
        PyErr_Clear();
        why = "the probe failed";
    }
    Py_DECREF(o);
    return why;
}

/* ---- bytes_refill --------------------------------------------------------
 * A bytes object that only the caller references (refcount 1, never seen by
 * other code since) may be refilled with the next read's bytes of the same
 * length; its cached hash must go with its old contents. */
static inline void zs_bytes_refill(PyObject *o, const char *data, Py_ssize_t n)
{
    memcpy(PyBytes_AS_STRING(o), data, (size_t)n);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    ((PyBytesObject *)o)->ob_shash = -1;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
}

/* The check at import: a refilled bytes object hashes and compares as new. */
static const char *zs_bytes_refill_misfit(void)
{
    PyObject *o = PyBytes_FromStringAndSize("zerosock", 8);
    PyObject *fresh = PyBytes_FromStringAndSize("refilled", 8);
    const char *why = NULL;
    if (o == NULL || fresh == NULL) {
        why = "no memory for the probe";
    } else if (PyBytes_Type.tp_basicsize != (Py_ssize_t)offsetof(PyBytesObject, ob_sval) + 1) {
        why = "PyBytesObject's layout differs";
    } else if (PyObject_Hash(o) == -1) {
        why = "the probe failed";
    } else {
        zs_bytes_refill(o, "refilled", 8);
        if (PyObject_Hash(o) != PyObject_Hash(fresh)
                || PyObject_RichCompareBool(o, fresh, Py_EQ) != 1)
            why = "a refilled bytes keeps its old hash";
    }
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(o);
    Py_XDECREF(fresh);
    return why;
}

/* ---- stop_iteration_reuse ----------------------------------------------
 * On 3.12 to 3.14 an await of an object that is not a generator takes the
 * value it finishes with from the StopIteration its iternext raises (3.10,
 * 3.11 and 3.15 take it from am_send, without one); making and freeing it is
 * about 700 instructions, more than the rest of a buffered stream read.
 * The interpreter reads the exception's value and drops it at once, so one
 * is kept and raised again whenever the kept reference is the only one:
 * whoever holds it (an except clause that keeps it, a debugger) holds a
 * reference, and the next raise makes a new one.  Only small bytes values:
 * the kept exception holds the last one until the next raise. */
#define ZS_STOP_KEEP_MAX 16384
static int zs_stop_reuse_on;
static PyObject *zs_stop_kept;
static Py_ssize_t zs_stops_made;  /* by the fast path: for its check */

/* For its check: whether the kept exception is held by nothing else, and
 * how many the fast path has made. */
static int zs_stop_kept_alone(void)
{
    return zs_stop_kept != NULL && Py_REFCNT(zs_stop_kept) == 1;
}

static Py_ssize_t zs_stops_made_count(void)
{
    return zs_stops_made;
}

/* StopIteration(value) raised: `value` borrowed, neither a tuple nor an
 * exception (those PyErr_SetObject would take as its arguments). */
static void zs_raise_stop(PyObject *value)
{
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_GIL_DISABLED)
    PyStopIterationObject *stop = (PyStopIterationObject *)zs_stop_kept;
    PyObject *args;
    if (zs_stop_reuse_on && PyBytes_CheckExact(value)
            && PyBytes_GET_SIZE(value) <= ZS_STOP_KEEP_MAX) {
        if (stop == NULL || Py_REFCNT(stop) != 1) {
            Py_CLEAR(zs_stop_kept);
            zs_stop_kept = PyObject_CallOneArg(PyExc_StopIteration, value);
            if (zs_stop_kept == NULL)
                return;
            zs_stops_made++;
            stop = (PyStopIterationObject *)Py_NewRef(zs_stop_kept);
        } else {
            /* The raise's reference first: a finalizer that the clearing
             * below runs and that raises again makes a new one. */
            Py_INCREF(stop);
            Py_CLEAR(stop->traceback);  /* whatever the last raise left */
            Py_CLEAR(stop->context);
            Py_CLEAR(stop->cause);
            Py_CLEAR(stop->notes);
            Py_CLEAR(stop->dict);
            stop->suppress_context = 0;
            args = stop->args;
            if (args != NULL && Py_REFCNT(args) == 1 && PyTuple_CheckExact(args)
                    && PyTuple_GET_SIZE(args) == 1) {
                PyObject *old = PyTuple_GET_ITEM(args, 0);
                PyTuple_SET_ITEM(args, 0, Py_NewRef(value));
                Py_DECREF(old);
            } else {
                args = PyTuple_Pack(1, value);
                if (args == NULL) {
                    Py_DECREF(stop);
                    return;
                }
                Py_SETREF(stop->args, args);
            }
            Py_SETREF(stop->value, Py_NewRef(value));
        }
        /* No context: kept, it would hold an exception being handled, and
         * its frames, until the next raise (3.15's coroutines set none). */
        PyErr_SetRaisedException((PyObject *)stop);
        return;
    }
#endif
    PyErr_SetObject(PyExc_StopIteration, value);
}

/* ---- awaitable_slots -----------------------------------------------------
 * An awaitable C type whose step is one C function: set as its tp_iternext
 * and, from 3.10, its am_send, after the type is ready -- the value comes
 * back directly (am_send) or as StopIteration's, never through a wrapper. */
typedef PyObject *(*zs_step_fn)(PyObject *, int *);
static zs_step_fn zs_op_step;

static PyObject *zs_op_iternext(PyObject *op)
{
    int finished = 0;
    PyObject *value = zs_op_step(op, &finished);
    if (value == NULL || !finished)
        return value;
    if (value != Py_None) {
        if (PyTuple_Check(value) || PyExceptionInstance_Check(value)) {
            /* taken as arguments or as the exception itself: wrap it */
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        } else {
            zs_raise_stop(value);
        }
    }
    Py_DECREF(value);
    return NULL;
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult zs_op_am_send(PyObject *op, PyObject *arg, PyObject **presult)
{
    int finished = 0;
    PyObject *value = zs_op_step(op, &finished);
    *presult = value;
    if (value == NULL)
        return PYGEN_ERROR;
    return finished ? PYGEN_RETURN : PYGEN_NEXT;
}
#endif

/* `reuse_stop`: the stop_iteration_reuse fast path for its StopIteration. */
static int zs_install_op_slots(PyObject *type, zs_step_fn step, int reuse_stop)
{
    PyTypeObject *t = (PyTypeObject *)type;
#if PY_VERSION_HEX >= 0x030A0000
    if (t->tp_as_async == NULL) {
        PyErr_SetString(PyExc_TypeError, "not an awaitable type");
        return -1;
    }
#endif
    zs_op_step = step;
    zs_stop_reuse_on = reuse_stop;
    t->tp_iternext = zs_op_iternext;
#if PY_VERSION_HEX >= 0x030A0000
    t->tp_as_async->am_send = zs_op_am_send;
#endif
    PyType_Modified(t);
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* ZS_CPYTHON_H */
