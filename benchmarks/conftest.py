"""Benchmark reporting: per-group ratios against the standard library, measured
in the same run.  Backend fixtures come from the root conftest.py."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest


def _impl_of(name: str) -> str | None:
    match = re.search(r"\[(c|py|std)(?:-|\])", name)
    return match.group(1) if match else None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in session.benchmarks:
        impl = _impl_of(bench.name)
        if impl is None or not bench.stats:
            continue
        key = bench.group or re.sub(r"\[.*", "", bench.name)
        per_op = bench.extra_info.get("ops_per_round", 1)
        groups[key][impl] = bench.stats.median / per_op
    rows = [(g, v) for g, v in sorted(groups.items()) if "std" in v]
    if not rows:
        return
    tr = terminalreporter
    tr.section("zerosock vs the standard library (median time per operation)")
    tr.write_line(f"{'benchmark':<44}{'stdlib':>11}{'C':>11}{'Python':>11}{'C/std':>8}{'Py/std':>8}")
    for group, values in rows:
        std = values["std"]
        fmt = lambda v: f"{v * 1e9:9.0f}ns" if v is not None else f"{'-':>11}"
        ratio = lambda v: f"{v / std:8.2f}" if v is not None else f"{'-':>8}"
        c, py = values.get("c"), values.get("py")
        tr.write_line(f"{group:<44}{fmt(std)}{fmt(c):>11}{fmt(py):>11}{ratio(c)}{ratio(py)}")
