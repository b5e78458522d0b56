"""dynamod's benchmark suite: dynamod side by side with supervisord, s6, runit
and a fork-exec floor. Run it with ``bench/run``; docs/performance.md
explains the method."""
