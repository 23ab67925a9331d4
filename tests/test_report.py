"""``python -m zerosock``: the backend, TLS engine, C streams and build it reports."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import zerosock
from _aio_loops import fastpath_on
from zerosock import _report


def run(args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ZEROSOCK_")}
    environ.update(env)
    out = subprocess.run([sys.executable, *args], env=environ, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def report_of(stdout):
    """The report's lines by label."""
    lines = {}
    for line in stdout.splitlines():
        label, sep, text = line.partition(":")
        if sep and not line.startswith(" "):
            lines[label] = text.strip()
    return lines


def backend_env(zs):
    env = {"ZEROSOCK_PURE_PYTHON": "1"} if zs.BACKEND == "python" else {}
    # The fast paths as in this run: the TLS engine and the C streams follow them.
    if "ZEROSOCK_CPYTHON_FASTPATHS" in os.environ:
        env["ZEROSOCK_CPYTHON_FASTPATHS"] = os.environ["ZEROSOCK_CPYTHON_FASTPATHS"]
    return env


def test_report_names_the_backend_and_its_tls_engine(zs):
    lines = report_of(run(["-m", "zerosock"], **backend_env(zs)))
    assert set(lines) == {"zerosock", "backend", "TLS engine", "C streams", "build"}
    assert lines["zerosock"].startswith(f"{zerosock.__version__} on ")
    if zs.BACKEND == "c":
        assert lines["backend"] == "c"
        if fastpath_on("stream_class_switch"):
            assert lines["C streams"] == "on"
        else:
            assert lines["C streams"].startswith("off (the stream_class_switch fast path is off")
    else:
        assert lines["backend"] == "python: ZEROSOCK_PURE_PYTHON is set"
        assert lines["C streams"].startswith("off")
    assert lines["TLS engine"].split()[0] == zs.aio.TLS_ENGINE


@pytest.mark.c_extension
def test_report_says_when_the_c_streams_are_switched_off(c_backend):
    lines = report_of(run(["-m", "zerosock"], ZEROSOCK_C_STREAMS="0"))
    assert lines["C streams"] == "off (ZEROSOCK_C_STREAMS=0)"


@pytest.mark.c_extension
def test_report_says_when_the_c_streams_lack_their_fast_path(c_backend):
    lines = report_of(run(["-m", "zerosock"], ZEROSOCK_CPYTHON_FASTPATHS="0"))
    assert lines["C streams"] == ("off (the stream_class_switch fast path is off: "
                                  "ZEROSOCK_CPYTHON_FASTPATHS=0)")


@pytest.mark.c_extension
def test_report_names_a_chosen_tls_engine(c_backend):
    lines = report_of(run(["-m", "zerosock"], ZEROSOCK_TLS_ENGINE="memorybio"))
    if sys.version_info >= (3, 11):
        assert lines["TLS engine"] == "memorybio (ZEROSOCK_TLS_ENGINE=memorybio)"
    else:
        assert lines["TLS engine"].startswith("stdlib (before Python 3.11")


def test_report_gives_the_import_error_when_the_extension_does_not_load():
    # An extension module that cannot be imported (here: blocked) leaves the
    # Python backend, and the report quotes the ImportError.
    code = textwrap.dedent("""
        import sys
        sys.modules["zerosock._socket_c"] = None
        from zerosock import _report
        sys.exit(_report.main())
    """)
    lines = report_of(run(["-c", code]))
    assert lines["backend"].startswith("python: the C extension did not import: ")
    assert "zerosock._socket_c" in lines["backend"]


def test_build_record_of_a_failed_build_is_reported(tmp_path):
    record = {"c_extension": False, "python": "3.15.2", "compiler": "gcc (Debian) 16.2.0",
              "werror": False, "reason": "command 'gcc' failed with exit code 1\nx.c:1: error: no"}
    path = tmp_path / "_build.json"
    path.write_text(json.dumps(record))
    read = _report.read_build_record(str(path))
    assert read == record
    text = _report.describe_build(read)
    assert text.startswith("C extension NOT built for CPython 3.15.2 (gcc (Debian) 16.2.0): ")
    assert "x.c:1: error: no" in text
    assert _report.why_python_backend(read) == "the C extension was not built (see build below)"


def test_build_record_missing_or_unreadable(tmp_path):
    assert _report.read_build_record(str(tmp_path / "none.json")) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert _report.read_build_record(str(tmp_path / "bad.json")) is None
    assert _report.describe_build(None).startswith("no build record")


def test_a_built_extension_is_reported_with_its_compiler():
    record = {"c_extension": True, "python": "3.14.10", "compiler": "clang version 21.1.8",
              "werror": True, "reason": None}
    assert (_report.describe_build(record)
            == "C extension built with clang version 21.1.8 for CPython 3.14.10")
