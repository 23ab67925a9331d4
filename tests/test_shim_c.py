"""The C shim's own test program (csrc/tests/zs_shim_test.c), built and run by
tools/test_shim.sh: natively, and as a Windows program under wine when
mingw-w64 and wine are installed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "test_shim.sh"
SOURCE = ROOT / "csrc" / "tests" / "zs_shim_test.c"
SKIPPED = 77  # the script's exit status for "tools missing"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not SOURCE.exists() or shutil.which("bash") is None,
    reason="needs bash, a POSIX system and the source tree (csrc/)",
)


def run_script(which: str, tmp_path: Path) -> "subprocess.CompletedProcess[str]":
    # this interpreter writes the names program: a root may have no "python3"
    env = dict(os.environ, ZS_SHIM_TEST_OUT=str(tmp_path), PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), which], env=env, capture_output=True,
                          text=True, timeout=600)


def assert_passed(result: "subprocess.CompletedProcess[str]") -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " 0 failed" in result.stdout, output


def test_shim_native(tmp_path):
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    assert_passed(run_script("linux", tmp_path))


def test_shim_windows_under_wine(tmp_path):
    if shutil.which(os.environ.get("MINGW_CC", "x86_64-w64-mingw32-gcc")) is None:
        pytest.skip("mingw-w64 not installed (apt-get install gcc-mingw-w64-x86-64)")
    if not any(shutil.which(w) for w in ("wine64", "wine")) and not os.path.exists(
            "/usr/lib/wine/wine64"):
        pytest.skip("wine not installed (apt-get install wine64)")
    result = run_script("windows", tmp_path)
    if result.returncode == SKIPPED:
        pytest.skip(result.stderr.strip())
    assert_passed(result)
