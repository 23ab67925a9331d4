"""What the link fault tests put each loop through, tallied per loop and
printed as a table at the end of the run (see ``pytest_terminal_summary`` in
conftest.py; ``ZEROSOCK_FAULT_FIGURES=path`` also writes it to a file)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List

COLUMNS = ("zerosock.aio (C)", "zerosock.aio (Python)", "asyncio",
           "zerosock.Socket (C)", "zerosock.Socket (Python)", "socket")
ROWS = (
    ("tests", "scenarios run"),
    ("faults", "faults injected (nftables rules)"),
    ("packets", "packets dropped or reset by them"),
    ("connections", "connections"),
    ("bytes", "bytes moved and checked"),
    ("datagrams", "datagrams delivered and checked"),
    ("hangs", "hangs"),
    ("damaged", "bytes lost or corrupted"),
    ("misreported", "resets reported as a clean close (CPython gh-156512)"),
)

_TALLY: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))


def column(backend: str, api: str = "aio") -> str:
    """The column of a backend name (``c``, ``python``, ``stdlib``) and API."""
    index = ("c", "python", "stdlib").index(backend) + (3 if api == "socket" else 0)
    return COLUMNS[index]


def add(column_name: str, **counts: int) -> None:
    for row, n in counts.items():
        _TALLY[column_name][row] += n


def table() -> str:
    """The tally as a Markdown table, or "" when no fault test ran."""
    columns: List[str] = [c for c in COLUMNS if c in _TALLY]
    if not columns:
        return ""
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{_TALLY[c][key]:,}" for c in columns) + " |")
    text = "\n".join(lines) + "\n"
    path = os.environ.get("ZEROSOCK_FAULT_FIGURES")
    if path:
        with open(path, "w") as f:
            f.write(text)
    return text
