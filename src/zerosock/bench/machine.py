"""A description of the machine a benchmark ran on, printed with every result."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any, Dict, List, Optional


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpu_model() -> str:
    cpuinfo = _read("/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        if line.startswith(("model name", "Hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _virtualized() -> Optional[bool]:
    cpuinfo = _read("/proc/cpuinfo")
    if cpuinfo is None:
        return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return " hypervisor" in line
    return None


def _os_name() -> str:
    release = _read("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform(terse=True)


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return None


def describe(generator: str = "c", pinning: str = "", host: str = "127.0.0.1") -> Dict[str, Any]:
    """The machine, interpreter and libraries, as a JSON-ready dict."""
    import zerosock
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    mem = None
    meminfo = _read("/proc/meminfo")
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / (1 << 20), 1)
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "virtual_machine": _virtualized(),
        "cpu_governor": governor.strip() if governor else None,
        "memory_gib": mem,
        "os": _os_name(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "zerosock": f"{zerosock.__version__} ({zerosock.BACKEND} backend)",
        "uvloop": _version("uvloop"),
        "load_generator": generator,
        "pinning": pinning,
        "transport": "Unix sockets" if host == "unix" else f"loopback {host}",
        "load_average_before": load,
        "executable": sys.executable,
    }


def busy_before(desc: Dict[str, Any]) -> bool:
    """Whether other work was running when the benchmark started."""
    load = desc.get("load_average_before")
    cpus = desc.get("usable_cpus") or desc.get("logical_cpus") or 1
    return load is not None and load > max(0.5, 0.25 * cpus)


def summary_lines(desc: Dict[str, Any]) -> List[str]:
    """Two short lines for a terminal, a plot or a README."""
    cpus = f"{desc['logical_cpus']} logical CPUs"
    if desc.get("usable_cpus") and desc["usable_cpus"] != desc["logical_cpus"]:
        cpus += f" ({desc['usable_cpus']} usable)"
    if desc.get("virtual_machine"):
        cpus += ", virtual machine"
    first = f"{desc['cpu']}, {cpus}, {desc['memory_gib']} GiB · {desc['kernel']} · {desc['os']}"
    generator = {"c": "C load generator", "python": "Python load generator (figures capped by it)"}
    uvloop = f"uvloop {desc['uvloop']}" if desc.get("uvloop") else "uvloop not installed"
    second = (f"{desc['python']} · zerosock {desc['zerosock']} · {uvloop} · "
              f"{generator.get(desc['load_generator'], desc['load_generator'])} · "
              f"{desc.get('transport', 'loopback')} · {desc['pinning']} · {desc['date']}")
    return [first, second]
