"""Files under ``--root``: every read and write of the daemon goes through here.

Writes are atomic (a temporary file in the same directory, fsync, rename), so
a reader sees the old or the new file, never half of one, and a crash leaves
at most a stray ``.#name.XXXX`` temporary. A file that exists keeps its mode
(and owner) across a rewrite.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from dynamod_hostnamed.errors import FAILED, BusError


class Root:
    """The tree the daemon manages: ``/`` on a running system, a directory in
    tests and image builds. Paths given to its methods are absolute paths *as
    seen inside the tree* (``/etc/hostname``)."""

    def __init__(self, path: str | os.PathLike[str] = "/") -> None:
        self.base = Path(path).resolve()

    def path(self, rel: str) -> Path:
        """The real path of ``rel`` (an absolute path inside the tree)."""
        return self.base / rel.lstrip("/")

    def read(self, rel: str) -> str | None:
        """The text of a file, or None when it does not exist. Undecodable
        bytes are replaced rather than failing the whole property read."""
        try:
            return self.path(rel).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path(rel))

    def write(self, rel: str, text: str, mode: int = 0o644) -> None:
        """Replace ``rel`` with ``text`` atomically; the directory is created
        when missing. An OSError becomes a BusError naming the file."""
        target = self.path(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            keep = _existing_mode(target)
            fd, tmp = tempfile.mkstemp(prefix=f".#{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    if keep is not None:
                        os.fchmod(f.fileno(), keep[0])
                        with contextlib.suppress(PermissionError):
                            os.fchown(f.fileno(), keep[1], keep[2])
                    else:
                        os.fchmod(f.fileno(), mode)
                    os.fsync(f.fileno())
            except BaseException:
                _discard(tmp)
                raise
            _rename_into_place(tmp, target)
        except OSError as exc:
            raise BusError(FAILED, f"Failed to write {rel}: {exc.strerror or exc}") from exc

    def symlink(self, rel: str, target: str) -> None:
        """Make ``rel`` a symlink to ``target`` atomically (a new link renamed
        over the old file)."""
        link = self.path(rel)
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.parent / f".#{link.name}.{os.getpid()}"
            _discard(str(tmp))
            os.symlink(target, tmp)
            _rename_into_place(str(tmp), link)
        except OSError as exc:
            raise BusError(FAILED, f"Failed to link {rel}: {exc.strerror or exc}") from exc

    def remove(self, rel: str) -> None:
        """Remove ``rel``; a file that is already gone is fine."""
        try:
            os.unlink(self.path(rel))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BusError(FAILED, f"Failed to remove {rel}: {exc.strerror or exc}") from exc

    def is_debian(self) -> bool:
        """Debian keeps its own copies of some settings (/etc/timezone,
        /etc/default/locale, /etc/default/keyboard)."""
        return self.exists("/etc/debian_version")


def _discard(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _rename_into_place(tmp: str, target: Path) -> None:
    """Rename ``tmp`` over ``target`` and make the rename durable; on
    failure the temporary is removed."""
    try:
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    _sync_dir(target.parent)


def _existing_mode(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mode & 0o7777, st.st_uid, st.st_gid


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
