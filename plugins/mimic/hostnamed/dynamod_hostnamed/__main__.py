"""``python -m dynamod_hostnamed``: see :mod:`dynamod_hostnamed.main`."""

import sys

from dynamod_hostnamed.main import main

# Only when run: importing this module (the VM image builder traces every
# module's imports) must not start a daemon.
if __name__ == "__main__":
    sys.exit(main())
