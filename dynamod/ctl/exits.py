"""Exit codes and the one exception type commands raise.

Kept import-free: every invocation loads it.
"""

from __future__ import annotations

OK = 0
FAILED = 1  # the operation failed, or anything unexpected
USAGE = 2  # bad command line (what click exits with too)
NOT_RUNNING = 3  # `status`/`is-active`: the service is not up
UNKNOWN_SERVICE = 4
NO_DAEMON = 5  # cannot connect to the control socket
PERMISSION = 6  # the daemon (or the socket file) refused us

# Error codes of the protocol (docs/protocol.md) -> exit codes. Codes not
# listed (bad-request, internal, codes a newer server adds) mean FAILED.
FROM_REMOTE = {
    "unknown-service": UNKNOWN_SERVICE,
    "permission-denied": PERMISSION,
    "failed": FAILED,
}

# The end of `dynamodctl --help`, printed as it is (indented).
EPILOG = """\
Exit codes:
  0  success
  1  the operation failed (a service failed to start, reload found errors, ...);
     is-enabled / is-failed: none of the services is enabled / failed
  2  usage error
  3  status / is-active: the service is not up (running, or exited for a oneshot)
  4  unknown service
  5  cannot connect to the daemon (see --socket, DYNAMOD_SOCKET)
  6  permission denied (only root may change things; others may read)
"""


class CtlError(Exception):
    """A failure to report as one ``dynamodctl: MESSAGE`` line on stderr and
    exit ``code``; ``details`` are extra lines printed after it as they are
    (config problems of a failed reload)."""

    def __init__(self, code: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details or [])
        self.body: dict = {}  # an Error response's body, when it came from the daemon
