"""What ``python -m zerosock`` prints: which backend runs and why, the TLS
engine, the C streams, and what the build that installed the package said
(pip shows none of a build's output, so ``setup.py`` records it in the package).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any, Dict, List, Optional, Tuple

BUILD_RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build.json")


def read_build_record(path: str = BUILD_RECORD) -> Optional[Dict[str, Any]]:
    """The record ``setup.py`` wrote when it built this package, or None."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_build(record: Optional[Dict[str, Any]]) -> str:
    if record is None:
        return "no build record (a source tree, or a build by another tool)"
    made_for = f"for CPython {record.get('python')}"
    compiler = record.get("compiler") or "an unknown compiler"
    if record.get("c_extension"):
        return f"C extension built with {compiler} {made_for}"
    return f"C extension NOT built {made_for} ({compiler}): {record.get('reason')}"


def why_python_backend(record: Optional[Dict[str, Any]]) -> str:
    from . import _compat

    if _compat.PURE_PYTHON_REQUESTED:
        return "ZEROSOCK_PURE_PYTHON is set"
    if _compat.C_UNSUPPORTED:
        return f"the C extension is for CPython, this is {sys.implementation.name}"
    if record is not None and not record.get("c_extension"):
        return "the C extension was not built (see build below)"
    return f"the C extension did not import: {_compat.C_IMPORT_ERROR}"


def describe_c_streams(backend: str) -> str:
    if backend != "c":
        return "off (the Python backend runs the stdlib's streams)"
    from . import _aio_streams_c, _cpython_c  # type: ignore[attr-defined]

    if _aio_streams_c.c_streams:
        return "on"
    why = _cpython_c.fastpaths()["stream_class_switch"]["reason"]
    if why:
        return f"off (the stream_class_switch fast path is off: {why})"
    return "off (ZEROSOCK_C_STREAMS=0)"


def describe_tls_engine(engine: str, backend: str) -> str:
    chosen = os.environ.get("ZEROSOCK_TLS_ENGINE", "").strip().lower()
    if backend != "c":
        return f"{engine} (the Python backend runs the stdlib's TLS)"
    if sys.version_info < (3, 11):
        return f"{engine} (before Python 3.11 the stdlib's TLS protocol runs)"
    if chosen == engine:
        return f"{engine} (ZEROSOCK_TLS_ENGINE={chosen})"
    if engine == "memorybio":
        return "memorybio (this interpreter's ssl objects failed the OpenSSL engine's checks)"
    return engine


def report() -> List[Tuple[str, str]]:
    """The report's lines as (label, text)."""
    import zerosock
    import zerosock.aio

    record = read_build_record()
    backend = zerosock.BACKEND
    if backend != "c":
        backend = f"{backend}: {why_python_backend(record)}"
    return [
        ("zerosock", f"{zerosock.__version__} on {platform.python_implementation()} "
                     f"{platform.python_version()} ({sys.platform}, {platform.machine()})"),
        ("backend", backend),
        ("TLS engine", describe_tls_engine(zerosock.aio.TLS_ENGINE, zerosock.BACKEND)),
        ("C streams", describe_c_streams(zerosock.BACKEND)),
        ("build", describe_build(record)),
    ]


def main() -> int:
    lines = report()
    width = max(len(label) for label, _ in lines) + 2
    for label, text in lines:
        first, *rest = text.splitlines() or [""]
        print(f"{label + ':':{width}}{first}")
        for line in rest:
            print(" " * width + line)
    return 0
