"""dynamod-sd1bridge: org.freedesktop.systemd1 served from dynamod-svmgr's
control socket, so that the unmodified systemctl drives dynamod.

See plugins/mimic/sd1bridge/README.md and docs/mimic.md.
"""

__version__ = "0.1.0"
