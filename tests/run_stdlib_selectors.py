"""Run the interpreter's own ``Lib/test/test_selectors.py`` against zerosock.

``python tests/run_stdlib_selectors.py --backend c`` (or ``python``) puts the
chosen backend's selectors module in place of the standard library's (in
``sys.modules``, so the test's ``mock.patch("selectors....")`` reaches it too),
runs the test module and prints ``passed=N failed=N errors=N skipped=N``.
Exits non-zero when anything fails.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import unittest

BACKEND_MODULES = {"c": "zerosock._selectors_c", "python": "zerosock._selectors_py"}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKEND_MODULES), default="c")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    replacement = importlib.import_module(BACKEND_MODULES[args.backend])
    try:
        import test.test_selectors  # noqa: F401  (is the test package installed?)
    except ImportError as exc:
        print(f"skipped: the interpreter's test package is missing ({exc})")
        return 0
    del sys.modules["test.test_selectors"]

    sys.modules["selectors"] = replacement
    module = importlib.import_module("test.test_selectors")
    assert module.selectors is replacement

    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if args.verbose else 1).run(suite)
    tear_down = getattr(module, "tearDownModule", None)
    if tear_down is not None:
        tear_down()

    failed, errors, skipped = len(result.failures), len(result.errors), len(result.skipped)
    passed = result.testsRun - failed - errors - skipped - len(result.unexpectedSuccesses)
    print(f"backend={args.backend} passed={passed} failed={failed} errors={errors} skipped={skipped}")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
