"""No code written twice in src/ and csrc/ beyond what the C and Python twins
share (tools/repeats.py says what counts)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "repeats.py"


@pytest.mark.skipif(not TOOL.is_file(), reason="needs the source tree's tools/")
def test_no_run_of_six_lines_is_repeated() -> None:
    spec = importlib.util.spec_from_file_location("repeats", TOOL)
    assert spec is not None and spec.loader is not None
    repeats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repeats)
    assert repeats.repeated_runs() == [], "write each of these once (python tools/repeats.py)"
