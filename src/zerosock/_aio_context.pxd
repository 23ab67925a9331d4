# A step of the loop run in a contextvars.Context, as Context.run() runs it
# but without its Python call, for the loop's stdlib Handles (the transports'
# I/O handles do the same with borrowed pointers: IOHandle.run).  Inline, so
# each caller's step becomes a direct call.
from cpython.contextvars cimport PyContext_Enter, PyContext_Exit

ctypedef int (*context_step)(object target, object arg) except -1


cdef inline object run_in_context(object context, context_step step, object target,
                                  object arg, int *result):
    # Returns what the step raised, for the caller to report outside the
    # context as Handle._run does (None when it returned, its value in
    # result); SystemExit and KeyboardInterrupt propagate.  The context is
    # left on every path.
    PyContext_Enter(context)
    try:
        result[0] = step(target, arg)
    except (SystemExit, KeyboardInterrupt):
        PyContext_Exit(context)
        raise
    except BaseException as exc:
        PyContext_Exit(context)
        return exc
    PyContext_Exit(context)
    return None
