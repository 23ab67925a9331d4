"""``python -m zerosock``: which backend, TLS engine and streams run here, and what the build said."""

import sys

from ._report import main

sys.exit(main())
