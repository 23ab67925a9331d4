"""Sphinx configuration of zerosock's documentation (``python -m sphinx -W -b html docs docs/_build``)."""

import importlib.util
import os
import sys

# The API reference is read from the pure-Python backend, the typed reference
# of the public API (tests/test_docs.py checks the C backend's docstrings too).
os.environ.setdefault("ZEROSOCK_PURE_PYTHON", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

project = "zerosock"
author = "The zerosock developers"
copyright = "The zerosock developers"

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# zerosock.workers' classes subclass the frameworks' workers: without them
# installed the reference is built over stand-ins.
autodoc_mock_imports = [name for name in ("gunicorn", "uvicorn", "uvicorn_worker", "aiohttp")
                        if importlib.util.find_spec(name) is None]

html_theme = "alabaster"
html_static_path = []
