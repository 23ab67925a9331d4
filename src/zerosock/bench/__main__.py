"""``python -m zerosock.bench``: see ``zerosock.bench.cli``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
