"""Backend selection and the public contract both backends must honour."""

import os
import subprocess
import sys
import textwrap

import pytest

import zerosock
from zerosock import _api, _compat


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ZEROSOCK_")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_backend_namespace_exports_the_contract(zs):
    for name in _api.BACKEND_NAMES:
        assert hasattr(zs, name), f"{zs.BACKEND} backend lacks {name}"


def test_socket_members_match_the_contract(zs):
    for name in _api.SOCKET_MEMBERS:
        assert hasattr(zs.Socket, name), f"{zs.BACKEND} Socket lacks {name}"


@pytest.mark.c_extension
def test_both_backends_offer_the_same_public_socket_api(c_backend, py_backend):
    c = c_backend.Socket
    py = py_backend.Socket
    public = lambda cls: {n for n in dir(cls) if not n.startswith("_")}
    # The Python Socket inherits the stdlib's whole surface; the C one must
    # cover it except for Linux crypto-socket extras that zerosock does not wrap.
    assert public(py) - public(c) <= {"sendmsg_afalg"}
    assert public(c) - public(py) == set()


def test_top_level_reexports_the_chosen_backend():
    assert zerosock.Socket is _compat.backend.Socket
    assert zerosock.BACKEND == _compat.backend.BACKEND
    assert set(_api.BACKEND_NAMES) <= set(zerosock.__all__)


@pytest.mark.c_extension
def test_c_extension_preferred_by_default(c_backend):
    assert run_python("import zerosock; print(zerosock.BACKEND)") == "c"


@pytest.mark.parametrize("value,expected", [("1", "python"), ("yes", "python"),
                                            ("0", "c"), ("", "c")])
@pytest.mark.c_extension
def test_pure_python_switch(c_backend, value, expected):
    out = run_python("import zerosock; print(zerosock.BACKEND)", ZEROSOCK_PURE_PYTHON=value)
    assert out == expected


def test_both_backends_importable_in_one_process():
    out = run_python("""
        from zerosock import _compat
        import zerosock
        py = _compat.load_backend("python")
        a, b = py.socketpair()
        a.send(b"x")
        print(zerosock.BACKEND, py.BACKEND, b.recv(1))
        a.close(); b.close()
    """, ZEROSOCK_PURE_PYTHON="1")
    assert out == "python python b'x'"


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown zerosock backend"):
        _compat.load_backend("rust")
