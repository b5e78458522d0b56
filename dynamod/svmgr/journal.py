"""What a restarted svmgr needs to know about its predecessor's services.

svmgr keeps, under its runtime directory, a record per service: its
activation (explicit, held), its state, the invocation id and PID of its
current start and the main PID (a recorded PID counts only together with
the invocation id in its environment, so a recycled PID is never taken for
the service). The record is
a snapshot (``services.state``) plus an append-only journal
(``services.journal``) of changes since, each one ``write(2)`` of a few
dozen bytes on tmpfs:

* a spawn is journaled right after ``posix_spawn`` returns, before svmgr
  does anything else (so before the new process could outlive svmgr
  unrecorded for more than the few microseconds of that write);
* every other change is journaled at the end of the engine pass that made
  it, before the manager goes back to its loop; and an exit is journaled
  before the process is reaped (the reaper peeks with ``WNOWAIT``), so a
  crash in between leaves a zombie whose status dynamod-init collects and
  hands to the next svmgr.

Every service process also carries ``INVOCATION_ID`` (this instance's id
followed by a random part) and ``DYNAMOD_SERVICE`` in its environment: the
next svmgr finds processes that it never saw recorded by scanning /proc (see
:mod:`dynamod.svmgr.adopt`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import msgpack

STATE_FILE = "services.state"
JOURNAL_FILE = "services.journal"
INSTANCE_FILE = "instance"
MARKER_DIR = "started"
VERSION = 2
# Compact once the journal holds this many records beyond the snapshot.
COMPACT_AFTER = 4096


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when it is
    gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] == b"Z":
            return None
        return int(fields[19])
    except (ValueError, IndexError):
        return None


class Journal:
    def __init__(self, runtime_dir: str, *, resume: bool) -> None:
        """``resume``: a restart under dynamod-init; keep the instance id and
        what was recorded. Otherwise start afresh with a new instance id."""
        self.dir = runtime_dir
        self.services: dict[str, dict[str, Any]] = {}
        self._pending: list[bytes] = []
        # Changes since the last flush, merged per service: a start's
        # pending -> starting -> running in one engine pass is one record.
        self._dirty: dict[str, dict[str, Any]] = {}
        self._fd = -1
        self._records = 0
        self.errors = 0
        self.discarded = False  # svmgr is exiting with everything down
        self.instance = ""
        if resume:
            self.instance = self._read_instance()
            self.services = load(runtime_dir)
        if not self.instance:
            self.instance = os.urandom(8).hex()
            self._write_file(INSTANCE_FILE, self.instance.encode())
        self.markers = os.path.join(runtime_dir, MARKER_DIR)
        os.makedirs(self.markers, mode=0o700, exist_ok=True)
        if not resume:
            self.clear_markers()
        self.compact()

    def _read_instance(self) -> str:
        try:
            with open(os.path.join(self.dir, INSTANCE_FILE), "rb") as f:
                text = f.read(64).decode("ascii", "replace").strip()
        except OSError:
            return ""
        return text if len(text) == 16 and all(c in "0123456789abcdef" for c in text) else ""

    def invocation(self) -> str:
        """A fresh invocation id: 32 hex digits as systemd's INVOCATION_ID,
        the first 16 naming this manager instance."""
        return self.instance + os.urandom(8).hex()

    # -- writing --------------------------------------------------------------
    def update(self, name: str, **fields: Any) -> None:
        rec = self.services.setdefault(name, {})
        changed = {k: v for k, v in fields.items() if rec.get(k) != v}
        if not changed:
            return
        rec.update(changed)
        dirty = self._dirty.get(name)
        if dirty is None:
            self._dirty[name] = changed
        elif "gone" in dirty:  # removed, then back within one pass: both, in order
            self._pending.append(msgpack.packb({"n": name, **self._dirty.pop(name)}))
            self._dirty[name] = changed
        else:
            dirty.update(changed)

    def remove(self, name: str) -> None:
        if self.services.pop(name, None) is not None:
            self._dirty[name] = {"gone": True}

    def intent(self, name: str, invocation: str) -> str:
        """Before a run-once spawn (a oneshot): journal that it is about to
        happen and return the marker path the child creates before it execs
        (``SpawnSpec`` marker). A crash between the spawn and
        :meth:`spawned` then leaves an intent with a marker: the process
        existed and must not run again."""
        self.update(name, inv=invocation, pid=None, main=None, state="spawning")
        self.flush()
        return os.path.join(self.markers, invocation)

    def spawned(self, name: str, invocation: str, pid: int, marker: str | None = None) -> None:
        """Journal a spawn at once (see the module docstring)."""
        self.update(name, inv=invocation, pid=pid, main=None, state="starting")
        self.flush()
        if marker is not None:
            with contextlib.suppress(OSError):
                os.unlink(marker)

    def clear_markers(self) -> None:
        """Markers only matter to the adoption that follows a crash."""
        try:
            names = os.listdir(self.markers)
        except OSError:
            return
        for n in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.markers, n))

    def forked(self, invocation: str) -> bool:
        """Whether the child of an intent got as far as its exec."""
        return os.path.exists(os.path.join(self.markers, invocation))

    def flush(self) -> None:
        if self._dirty:
            self._pending.extend(msgpack.packb({"n": n, **f}) for n, f in self._dirty.items())
            self._dirty.clear()
        if not self._pending or self.discarded:
            return
        data = b"".join(self._pending)
        self._records += len(self._pending)
        self._pending.clear()
        try:
            if self._fd < 0:
                self._fd = os.open(os.path.join(self.dir, JOURNAL_FILE),
                                   os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(self._fd, data)
        except OSError:
            self.errors += 1
            return
        if self._records > COMPACT_AFTER + 2 * len(self.services):
            self.compact()

    def compact(self) -> None:
        """Write the snapshot, then empty the journal. A crash in between
        replays records the snapshot already holds: harmless, as each record
        sets fields to values, in order."""
        self._pending.clear()
        self._dirty.clear()
        data = msgpack.packb({"version": VERSION, "instance": self.instance, "services": self.services})
        try:
            self._write_file(STATE_FILE, data)
            if self._fd >= 0:
                os.ftruncate(self._fd, 0)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.truncate(os.path.join(self.dir, JOURNAL_FILE), 0)
        except OSError:
            self.errors += 1
            return
        self._records = 0

    def _write_file(self, name: str, data: bytes) -> None:
        path = os.path.join(self.dir, name)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Every service is down and svmgr exits: nothing to adopt, so the
        record goes (a plain svmgr leaves no state behind in its runtime
        directory)."""
        self.close()
        self.discarded = True
        self.clear_markers()
        for name in (STATE_FILE, JOURNAL_FILE, INSTANCE_FILE, MARKER_DIR):
            with contextlib.suppress(OSError):
                path = os.path.join(self.dir, name)
                if name == MARKER_DIR:
                    os.rmdir(path)
                else:
                    os.unlink(path)


def load(runtime_dir: str) -> dict[str, dict[str, Any]]:
    """The recorded services: the snapshot with the journal replayed on it."""
    services: dict[str, dict[str, Any]] = {}
    try:
        with open(os.path.join(runtime_dir, STATE_FILE), "rb") as f:
            data = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
        if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("services"), dict):
            services = {k: v for k, v in data["services"].items() if isinstance(k, str) and isinstance(v, dict)}
    except (OSError, ValueError, msgpack.UnpackException):
        pass
    try:
        with open(os.path.join(runtime_dir, JOURNAL_FILE), "rb") as f:
            raw = f.read()
    except OSError:
        return services
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(raw)
    try:
        for rec in unpacker:
            if not isinstance(rec, dict) or not isinstance(rec.get("n"), str):
                continue
            name = rec.pop("n")
            if rec.get("gone"):
                services.pop(name, None)
            else:
                services.setdefault(name, {}).update(rec)
    except (ValueError, msgpack.UnpackException):
        pass  # a torn last record: what came before stands
    return services
