"""Build zerosock's optional C backend.

Every ``src/zerosock/*.pyx`` becomes an extension module compiled against the
shim in ``csrc/``.  The extension is optional: when compiling fails (no
compiler, no Cython, an unsupported platform) the build warns loudly and
installs the pure-Python backend only.  ``ZEROSOCK_REQUIRE_EXTENSION=1`` turns
that failure into an error, so wheel builds and CI can never ship a silent
fallback.  ``ZEROSOCK_DEBUG_BUILD=1`` compiles with ``-O0 -g3``;
``ZEROSOCK_SANITIZE=1`` adds AddressSanitizer and UndefinedBehaviorSanitizer.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = Path("src") / "zerosock"
CSRC = "csrc"

# C files from csrc/ that an extension module links, beyond its .pyx.
EXTRA_SOURCES: "dict[str, list[str]]" = {
    "_loadgen_c": ["csrc/zs_loadgen.c", "csrc/zs_echo_server.c"],
}


# Libraries an extension module links beyond the platform's socket library:
# the OpenSSL engine calls dlopen/dlsym, in libdl before glibc 2.34.
EXTRA_LIBRARIES: "dict[str, list[str]]" = {
    "_aio_tls_openssl_c": ["dl"] if sys.platform.startswith("linux") else [],
}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


REQUIRE_EXTENSION = env_flag("ZEROSOCK_REQUIRE_EXTENSION")
DEBUG_BUILD = env_flag("ZEROSOCK_DEBUG_BUILD")
SANITIZE = env_flag("ZEROSOCK_SANITIZE")
WINDOWS = sys.platform == "win32"


def compile_args() -> "tuple[list[str], list[str]]":
    if WINDOWS:
        return ["/W3"], []
    cflags = ["-Wall", "-Werror", "-Wno-unused-function", "-Wno-unreachable-code"]
    ldflags: "list[str]" = []
    if DEBUG_BUILD or SANITIZE:
        cflags += ["-O0", "-g3", "-UNDEBUG"]
    else:
        cflags += ["-O2"]
    if SANITIZE:
        sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                      "-fno-sanitize-recover=undefined"]
        cflags += sanitizers
        ldflags += sanitizers
    return cflags, ldflags


def extensions() -> "list[Extension]":
    cflags, ldflags = compile_args()
    libraries = ["ws2_32"] if WINDOWS else []
    found = []
    for pyx in sorted(PACKAGE_DIR.glob("*.pyx")):
        name = pyx.stem
        found.append(Extension(
            f"zerosock.{name}",
            [str(pyx)] + EXTRA_SOURCES.get(name, []),
            include_dirs=[CSRC],
            depends=[str(p) for p in sorted(Path(CSRC).glob("*.[ch]"))],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=libraries + EXTRA_LIBRARIES.get(name, []),
        ))
    return found


def warn(message: str) -> None:
    bar = "*" * 76
    sys.stderr.write(f"\n{bar}\n{message}\n{bar}\n\n")


class OptionalBuildExt(build_ext):
    """Compile the extension, or fall back to the pure-Python backend."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, a broken one, or an unsupported platform
            if REQUIRE_EXTENSION:
                raise
            warn("zerosock: WARNING: the C extension could not be built:\n"
                 f"    {exc}\n"
                 "Installing the pure-Python backend instead: same API, slower.\n"
                 "Set ZEROSOCK_REQUIRE_EXTENSION=1 to make this an error.")
            self.drop_built_extensions()

    def drop_built_extensions(self) -> None:
        # A half-built backend (or one left by an earlier build in build/)
        # must not ship: the fallback is the Python backend, whole.
        for ext in self.extensions:
            path = Path(self.get_ext_fullpath(ext.name))
            if path.exists():
                path.unlink()


class BuildPyWithHeaders(build_py):
    """Ship the shim's headers in the package (``zerosock.get_include()``).

    The installed ``.pxd`` files declare functions from ``csrc/*.h``; another
    extension that cimports them needs those headers on its include path.
    """

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "zerosock" / "include"
        target.mkdir(parents=True, exist_ok=True)
        for header in sorted(Path(CSRC).glob("*.h")):
            self.copy_file(str(header), str(target / header.name))


def cythonized() -> "list[Extension]":
    exts = extensions()
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSION:
            raise SystemExit("zerosock: Cython is required to build the C extension")
        warn("zerosock: WARNING: Cython is not installed; installing the "
             "pure-Python backend only.")
        return []
    try:
        return cythonize(
            exts,
            compiler_directives={
                "language_level": 3,
                "embedsignature": True,
                "binding": False,
            },
            include_path=[str(PACKAGE_DIR.parent)],
            annotate=env_flag("ZEROSOCK_ANNOTATE"),
            quiet=True,
        )
    except Exception as exc:
        if REQUIRE_EXTENSION:
            raise
        warn(f"zerosock: WARNING: Cython failed ({exc}); installing the "
             "pure-Python backend only.")
        return []


if __name__ == "__main__":
    os.chdir(HERE)
    setup(ext_modules=cythonized(), cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithHeaders})
