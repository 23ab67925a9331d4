# The C loop has the Python backend's API.
from ._aio_py import *  # noqa: F403
from ._aio_py import __all__ as __all__
