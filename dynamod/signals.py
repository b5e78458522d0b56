"""The signals that ask dynamod-init for a shutdown, and which kind each
asks for. Init acts on them and forwards the number to svmgr
(``ShutdownSignal``), which maps it back with the same table. Imports
nothing but ``signal``: PID 1 uses it."""

from __future__ import annotations

import signal

SHUTDOWN_SIGNALS: dict[int, str] = {
    signal.SIGTERM: "poweroff",
    signal.SIGINT: "reboot",  # ctrl-alt-del once RB_DISABLE_CAD is set
    signal.SIGUSR1: "reboot",
    signal.SIGRTMIN + 3: "halt",
    signal.SIGRTMIN + 4: "poweroff",
    signal.SIGRTMIN + 5: "reboot",
}
