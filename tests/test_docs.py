"""The documentation keeps up with the code: every public name has a
docstring on both backends, every ``ZEROSOCK_*`` variable the tree reads is
on the configuration or the contributing page, and the README's set-up
commands are the ones CI runs."""

from __future__ import annotations

import importlib
import inspect
import re
import types
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

import zerosock
import zerosock.workers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
needs_tree = pytest.mark.skipif(not (DOCS / "conf.py").is_file() or not (ROOT / "src").is_dir(),
                                reason="needs the source tree and its docs/")

# Plain values among the public names: documented on the API page, as data
# cannot carry a docstring of its own.
DATA_TYPES = (str, int, float, bytes, tuple, frozenset, type(None))


def public_names(zs: Any) -> Dict[str, Tuple[Any, List[str]]]:
    """Each stable module (see docs/stability.md) on backend ``zs``, with its public names."""
    top = [name for name in zerosock.__all__ if hasattr(zs, name)]
    return {
        "zerosock": (zs, top),
        "zerosock.aio": (zs.aio, list(zs.aio.__all__)),
        "zerosock.selectors": (zs.selectors, list(zs.selectors.__all__)),
    }


def own_members(cls: type) -> Iterator[Tuple[str, Any]]:
    """The public members zerosock defines on ``cls`` or on a zerosock base
    class: what it inherits from the standard library is documented there."""
    seen: Set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("zerosock"):
            continue
        for name in vars(klass):
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            value = inspect.getattr_static(cls, name)
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if not isinstance(value, DATA_TYPES):
                yield name, value


def undocumented(zs: Any) -> List[str]:
    missing = []
    for module, (namespace, names) in public_names(zs).items():
        for name in names:
            value = getattr(namespace, name)
            if isinstance(value, DATA_TYPES):
                continue
            if not (getattr(value, "__doc__", None) or "").strip():
                missing.append(f"{module}.{name}")
            if inspect.isclass(value):
                for member, member_value in own_members(value):
                    if not (getattr(member_value, "__doc__", None) or "").strip():
                        missing.append(f"{module}.{name}.{member}")
    return missing


def test_every_public_name_has_a_docstring(zs: Any) -> None:
    assert undocumented(zs) == []


@needs_tree
def test_every_public_value_is_on_the_api_page(zs: Any) -> None:
    page = (DOCS / "api.rst").read_text(encoding="utf-8")
    for module, (namespace, names) in public_names(zs).items():
        for name in names:
            if isinstance(getattr(namespace, name), DATA_TYPES):
                assert f"{module}.{name}" in page, f"{module}.{name} is not on docs/api.rst"


def test_the_modules_and_workers_have_docstrings() -> None:
    for module in ("zerosock", "zerosock.aio", "zerosock.selectors", "zerosock.workers"):
        assert (importlib.import_module(module).__doc__ or "").strip(), module
    for name in zerosock.workers.__all__:
        try:
            worker = getattr(zerosock.workers, name)
        except ImportError as exc:  # the framework is not installed
            pytest.skip(f"zerosock.workers.{name}: {exc}")
        assert (worker.__doc__ or "").strip(), name


# -- the C backend's signatures ---------------------------------------------------------

def _top_level_split(text: str) -> List[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in parts + [current] if part.strip()]


def parameter_names(function: Any, name: str, embedded: bool) -> "List[str] | None":
    """The parameters ``function`` takes, ``*`` marking where keyword-only ones
    start: from its signature, or else (with ``embedded``) from the signature
    Cython embeds in the first line of a C method's docstring, types dropped.
    None when neither says, and for the standard library's own builtins on
    the Python side (their names are positional-only, and CPython gives them
    signatures only from 3.14)."""
    if not embedded and isinstance(function, (types.BuiltinFunctionType, types.MethodDescriptorType)):
        return None
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        if not embedded:
            return None
        match = re.match(r"[\w.]*\b%s\((.*)\)(?:\s*->.*)?\n" % re.escape(name),
                         getattr(function, "__doc__", None) or "")
        if match is None:
            return None
        names = [part.split("=", 1)[0].split()[-1] for part in _top_level_split(match.group(1))]
        return [n for n in names if n not in ("self", "cls", "/")]
    names, starred = [], False
    for parameter in signature.parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            names.append("*" + parameter.name)
            starred = True
        elif parameter.kind is parameter.VAR_KEYWORD:
            names.append("**" + parameter.name)
        else:
            if parameter.kind is parameter.KEYWORD_ONLY and not starred:
                names.append("*")
                starred = True
            names.append(parameter.name)
    return names


def shared_callables(c: Any, py: Any) -> Iterator[Tuple[str, Any, Any]]:
    for name in ("socketpair", "create_connection", "create_server", "fromfd"):
        yield name, getattr(c, name), getattr(py, name)
    classes = [(name, getattr(c, name), getattr(py, name))
               for name in ("Socket", "RecvBuffer", "BufferPool")]
    classes += [(f"selectors.{name}", getattr(c.selectors, name), getattr(py.selectors, name))
                for name in c.selectors.__all__ if inspect.isclass(getattr(c.selectors, name))]
    for owner, c_class, py_class in classes:
        for member in dir(c_class):
            c_value = getattr(c_class, member)
            if not member.startswith("_") and hasattr(py_class, member) and callable(c_value):
                yield f"{owner}.{member}", c_value, getattr(py_class, member)


@pytest.mark.c_extension
def test_the_c_backend_documents_the_same_parameters(c_backend: Any, py_backend: Any) -> None:
    compared, differ = 0, {}
    for name, c_function, py_function in shared_callables(c_backend, py_backend):
        member = name.rsplit(".", 1)[-1]
        c_names = parameter_names(c_function, member, embedded=True)
        py_names = parameter_names(py_function, member, embedded=False)
        if c_names is None or py_names is None:
            continue  # the standard library's own builtins on the Python side
        compared += 1
        if c_names != py_names:
            differ[name] = (c_names, py_names)
    assert differ == {}
    assert compared >= 50  # the comparison still finds the signatures


# -- environment variables -------------------------------------------------------------

VARIABLE = re.compile(r"\bZEROSOCK_[A-Z0-9_]*[A-Z0-9]\b")
# Where a variable is read: the package and its build (the configuration
# page), and the tests, tools and benchmarks (either page).
PACKAGE_SOURCES = ("src", "setup.py")
OTHER_SOURCES = ("tests", "tools", "benchmarks", "conftest.py", ".ci")
SOURCE_SUFFIXES = {".py", ".pyx", ".pxd", ".pyi", ".h", ".c", ".sh", ""}


def source_files(places: Tuple[str, ...]) -> Iterator[Path]:
    for place in places:
        path = ROOT / place
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if file.suffix not in SOURCE_SUFFIXES or "egg-info" in str(file):
                continue
            head = file.read_bytes()[:200]
            if b"Generated by Cython" in head or b"\0" in head:
                continue  # Cython's output and compiled modules: their .pyx is read
            yield file


def variables_in(places: Tuple[str, ...]) -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for file in source_files(places):
        for name in VARIABLE.findall(file.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(name, file.relative_to(ROOT))
    return found


def documented(page: str) -> Set[str]:
    return set(VARIABLE.findall((DOCS / page).read_text(encoding="utf-8")))


@needs_tree
def test_every_variable_the_package_reads_is_on_the_configuration_page() -> None:
    missing = {name: str(where) for name, where in variables_in(PACKAGE_SOURCES).items()
               if name not in documented("configuration.md")}
    assert missing == {}, "document these in docs/configuration.md, with their default"


@needs_tree
def test_every_variable_the_tests_and_tools_read_is_documented() -> None:
    pages = documented("configuration.md") | documented("contributing.md")
    missing = {name: str(where) for name, where in variables_in(OTHER_SOURCES).items()
               if name not in pages}
    assert missing == {}, "document these in docs/contributing.md, with their default"


@needs_tree
def test_every_documented_variable_is_still_read() -> None:
    read = set(variables_in(PACKAGE_SOURCES + OTHER_SOURCES))
    assert documented("configuration.md") | documented("contributing.md") <= read


# -- the README's set-up commands --------------------------------------------------------

BENCH_COMMAND = 'python -m pip install ".[bench]" && python -m zerosock.bench --quick'
TEST_COMMAND = 'python -m pip install ".[test,bench]" && python -m pytest'


@needs_tree
def test_the_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    python -m pip")]
    assert commands[:2] == [BENCH_COMMAND, TEST_COMMAND]
    ci = ROOT / ".ci" / "run"
    if ci.is_file():
        assert TEST_COMMAND in ci.read_text(encoding="utf-8")
