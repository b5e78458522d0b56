"""Run dynamod-svmgr under cProfile and dump the profile on SIGUSR1.

``python bench/profile_svmgr.py OUT.prof [svmgr arguments]``: the same as
``python -m cProfile -o OUT.prof -m dynamod.svmgr.main ...``, except that the
suite sends SIGUSR1 once every service runs, so the profile covers start-up
only and not the shutdown that follows.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType


def main() -> None:
    out = sys.argv[1]
    prof = cProfile.Profile()

    def dump(_sig: int, _frame: FrameType | None) -> None:
        prof.disable()
        prof.dump_stats(out)

    signal.signal(signal.SIGUSR1, dump)
    from dynamod.svmgr import main as svmgr

    prof.enable()
    try:
        svmgr.main(sys.argv[2:])
    finally:
        prof.disable()


if __name__ == "__main__":
    main()
