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

import _suite_compare as compare

BACKEND_MODULES = {"c": "zerosock._selectors_c", "python": "zerosock._selectors_py"}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKEND_MODULES), default="c")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    replacement = importlib.import_module(BACKEND_MODULES[args.backend])
    missing = compare.missing_test_package("test_selectors")
    if missing:
        print(missing)
        return 0
    del sys.modules["test.test_selectors"]

    sys.modules["selectors"] = replacement
    module = importlib.import_module("test.test_selectors")
    assert module.selectors is replacement

    tests = compare.iter_tests(unittest.defaultTestLoader.loadTestsFromModule(module))
    t = compare.tally(compare.run_tests(module, tests, verbosity=2 if args.verbose else 1))
    print(f"backend={args.backend} passed={t['passed']} failed={t['failed']} "
          f"errors={t['error']} skipped={t['skipped']}")
    return 1 if t["failed"] or t["error"] else 0


if __name__ == "__main__":
    compare.use_source_tree_unless_installed()
    sys.exit(main())
