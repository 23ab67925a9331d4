"""Choose the backend: the C extension when it is built, pure Python otherwise.

This is the one place that reads ``ZEROSOCK_PURE_PYTHON``.  ``load_backend``
gives either backend by name so tests and benchmarks can hold both at once.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

_BACKEND_MODULES = {"c": "zerosock._backend_c", "python": "zerosock._backend_py"}


def env_flag(name: str) -> bool:
    """True when the variable is set to anything but empty or ``0``."""
    return os.environ.get(name, "").strip() not in ("", "0")


PURE_PYTHON_REQUESTED = env_flag("ZEROSOCK_PURE_PYTHON")
C_UNSUPPORTED = sys.implementation.name != "cpython"


def load_backend(name: str) -> ModuleType:
    """Import one backend's namespace module (``"c"`` or ``"python"``)."""
    try:
        module = _BACKEND_MODULES[name]
    except KeyError:
        raise ValueError(f"unknown zerosock backend {name!r}; choose 'c' or 'python'") from None
    return importlib.import_module(module)


# Why importing the C backend failed, when it was tried and did (``python -m zerosock`` says).
C_IMPORT_ERROR: "str | None" = None


def _choose() -> ModuleType:
    global C_IMPORT_ERROR
    if not (PURE_PYTHON_REQUESTED or C_UNSUPPORTED):
        try:
            return load_backend("c")
        except ImportError as exc:
            C_IMPORT_ERROR = str(exc)
    return load_backend("python")


backend = _choose()
BACKEND: str = backend.BACKEND
