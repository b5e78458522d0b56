"""``python -m bench``: see bench/run."""

import sys

from bench.runner import main

sys.exit(main())
