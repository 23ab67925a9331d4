"""Build zerosock's optional C backend.

Every ``src/zerosock/*.pyx`` becomes an extension module compiled against the
shim in ``csrc/``.  The extension is optional: when compiling fails (no
compiler, no Cython, an unsupported platform) the build warns loudly and
installs the pure-Python backend only.  ``ZEROSOCK_REQUIRE_EXTENSION=1`` turns
that failure into an error, so wheel builds and CI can never ship a silent
fallback.  ``ZEROSOCK_DEBUG_BUILD=1`` compiles with ``-O0 -g3``;
``ZEROSOCK_SANITIZE=1`` adds AddressSanitizer and UndefinedBehaviorSanitizer.
``ZEROSOCK_WERROR=1`` makes compiler warnings errors: our own builds (CI, the
sanitizer build, wheels) set it; a user's install never does, so a newer
compiler's new warning cannot turn the C backend off.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import setuptools
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = Path("src") / "zerosock"
CSRC = "csrc"

# C files from csrc/ that an extension module links, beyond its .pyx.
EXTRA_SOURCES: "dict[str, list[str]]" = {
    "_loadgen_c": ["csrc/zs_loadgen.c", "csrc/zs_echo_server.c"],
    "_uring_c": ["csrc/zs_uring.c", "csrc/zs_uring_echo_server.c"],
    "_aio_ring_c": ["csrc/zs_uring.c", "csrc/zs_uring_poll.c"],
    "_aio_datagram_c": ["csrc/zs_uring.c", "csrc/zs_uring_poll.c"],  # (its ring path)
}


# Libraries an extension module links beyond the platform's socket library:
# the OpenSSL engine calls dlopen/dlsym, in libdl before glibc 2.34.
EXTRA_LIBRARIES: "dict[str, list[str]]" = {
    "_aio_tls_openssl_c": ["dl"] if sys.platform.startswith("linux") else [],
}


# pyproject.toml gives the licence as an SPDX expression, which older
# setuptools rejects with a schema error; an in-place build
# (``setup.py build_ext``) uses whatever the environment has, so say so plainly.
if int(setuptools.__version__.split(".")[0]) < 77:
    raise SystemExit("zerosock: setuptools 77 or later is needed (this is "
                     f"{setuptools.__version__}): pip install --upgrade 'setuptools>=77'")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


REQUIRE_EXTENSION = env_flag("ZEROSOCK_REQUIRE_EXTENSION")
DEBUG_BUILD = env_flag("ZEROSOCK_DEBUG_BUILD")
SANITIZE = env_flag("ZEROSOCK_SANITIZE")
WERROR = env_flag("ZEROSOCK_WERROR")
WINDOWS = sys.platform == "win32"


def compile_args() -> "tuple[list[str], list[str]]":
    if WINDOWS:
        return ["/W3"] + (["/WX"] if WERROR else []), []
    cflags = ["-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
    if WERROR:
        cflags.append("-Werror")
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


# The build record: what ``python -m zerosock`` reports of the build that
# installed the package, since pip shows none of the build's output.
BUILD_RECORD = "_build.json"
# Why the extension was not even attempted (Cython missing or failing).
SKIPPED_REASON: "list[str]" = []


def write_build_record(package_dir: Path, built: bool, reason: "str | None",
                       compiler: "str | None" = None) -> None:
    package_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "c_extension": built,
        "reason": reason,
        "compiler": compiler,
        "werror": WERROR,
        "python": sys.version.split()[0],
    }
    (package_dir / BUILD_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def compiler_diagnostics(command: "list[str]", limit: int = 20) -> str:
    """The compiler's own messages for ``command`` (run again, output kept):
    the lines that say ``error``, or the last ones."""
    try:
        out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, errors="replace", timeout=600).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return "\n".join((errors or lines)[:limit])


class OptionalBuildExt(build_ext):
    """Compile the extension, or fall back to the pure-Python backend."""

    failed_command: "list[str] | None" = None

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:  # the modules compile independently: one per CPU
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        inplace = self.inplace  # (setuptools clears it while building)
        try:
            super().run()
        except Exception as exc:  # no compiler, a broken one, or an unsupported platform
            reason = str(exc)
            if self.failed_command:  # the compiler's own words, not only its exit status
                reason = f"the compiler failed:\n{compiler_diagnostics(self.failed_command)}"
            self.record(inplace, False, reason)
            if REQUIRE_EXTENSION:
                raise
            warn("zerosock: WARNING: the C extension could not be built:\n"
                 f"    {reason}\n"
                 "Installing the pure-Python backend instead: same API, slower.\n"
                 "Set ZEROSOCK_REQUIRE_EXTENSION=1 to make this an error.\n"
                 "`python -m zerosock` shows this reason after the install.")
            self.drop_built_extensions()
        else:
            self.record(inplace, True, None)

    def build_extensions(self) -> None:
        # The compiler runs its commands through call() (setuptools 80+) or spawn().
        runner_name = "call" if hasattr(self.compiler, "call") else "spawn"
        runner = getattr(self.compiler, runner_name)

        def remember_failure(cmd: "list[str]", **kwargs: object) -> None:
            try:
                runner(cmd, **kwargs)
            except Exception:
                self.failed_command = list(cmd)
                raise

        setattr(self.compiler, runner_name, remember_failure)
        super().build_extensions()

    def record(self, inplace: bool, built: bool, reason: "str | None") -> None:
        if inplace:
            package_dir = Path(self.get_finalized_command("build_py").get_package_dir("zerosock"))
        else:
            package_dir = Path(self.build_lib) / "zerosock"
        write_build_record(package_dir, built, reason, self.compiler_version())

    def compiler_version(self) -> "str | None":
        executable = getattr(self.compiler, "compiler", None) or [os.environ.get("CC", "cc")]
        try:
            out = subprocess.run([executable[0], "--version"], capture_output=True, text=True,
                                 timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return out.splitlines()[0] if out else None

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
        if not self.distribution.has_ext_modules():  # no build_ext will record why
            write_build_record(Path(self.build_lib) / "zerosock", False,
                               "; ".join(SKIPPED_REASON) or "no extension modules")
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
        SKIPPED_REASON.append("Cython is not installed")
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
        SKIPPED_REASON.append(f"Cython failed: {exc}")
        warn(f"zerosock: WARNING: Cython failed ({exc}); installing the "
             "pure-Python backend only.")
        return []


if __name__ == "__main__":
    os.chdir(HERE)
    setup(ext_modules=cythonized(), cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithHeaders})
