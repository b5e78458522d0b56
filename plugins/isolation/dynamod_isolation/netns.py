"""A new network namespace whose loopback is up, made by the manager.

Where the netlink call runs: a brand-new network namespace has only ``lo``,
and it is down. Someone inside the namespace (or holding a netlink socket
opened in it) has to set it up before the service runs. Doing it in the
service's wrapper chain means a Python step with pyroute2 on every spawn
(interpreter start plus a ~250 ms import); doing it with ``ip`` is not
allowed (netlink, not a subprocess). So the manager makes the namespace
itself, before the spawn:

1. a short-lived thread calls ``unshare(CLONE_NEWNET)``: network namespaces
   belong to a thread, so the manager's own thread and every socket it
   has stay where they are, and the thread simply ends afterwards;
2. that thread opens ``/proc/thread-self/ns/net`` (the descriptor keeps the
   namespace alive) and a netlink socket, which is bound to the namespace
   it was created in, and sets ``lo`` up through pyroute2;
3. the service joins with ``nsenter --net=/proc/MANAGER/fd/N`` as the
   first step of its wrapper chain, as root, before any user namespace.

The manager closes its descriptor when the service has stopped; from then
on only the service's processes keep the namespace, and it disappears with
them: nothing to unmount or clean up, nothing left behind after a crash.
No fork of the (possibly large) manager is involved, unlike pyroute2's own
``netns`` helpers, which run a child process. Cost: about 2-3 ms in the
manager per spawn, plus the pyroute2 import on the first such spawn.
"""

from __future__ import annotations

import ctypes
import os
import threading

CLONE_NEWNET = 0x40000000


def create_netns() -> int:
    """Return a close-on-exec descriptor of a new network namespace with
    ``lo`` up; raise OSError (or pyroute2's error) when that fails."""
    # Imported here, never at plugin import: pyroute2 costs ~250 ms of CPU
    # and only services with a net namespace need it.
    from pyroute2 import IPRoute

    libc = ctypes.CDLL(None, use_errno=True)
    result: dict[str, object] = {}

    def work() -> None:
        fd = -1
        try:
            if libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            # The netlink socket is created here, in this thread's new
            # namespace; a failure raises pyroute2's NetlinkError.
            with IPRoute() as ipr:
                ipr.link("set", index=1, state="up")  # lo is always index 1
            result["fd"] = fd
        except BaseException as exc:
            if fd >= 0:
                os.close(fd)
            result["error"] = exc

    thread = threading.Thread(target=work, name="dynamod-isolation-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["fd"]  # type: ignore[return-value]
