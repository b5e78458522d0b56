"""The setup shell that runs inside a service's new namespaces (step 5 of
the chain, :mod:`dynamod_isolation.wrappers`): hostname, private /tmp,
writable paths, bind mounts, read-only (re)mounts — and telling the manager
which of them failed, and why.

Bind-mount sources under a private /tmp. The private /tmp and /var/tmp are
fresh tmpfs mounts over the originals, so a source under them (say a
writable ``/var/tmp/cache``) would be gone by the time it is bound. Before
mounting them the shell opens the original directories (``exec 7</var/tmp``)
and binds such a source through its descriptor,
``mount -c --rbind /proc/self/fd/7/cache TARGET``: the kernel resolves the
magic link to the directory that is now hidden (``-c``: mount(8) must not
canonicalise the path, which would look it up in the new /var/tmp). A
target inside a private /tmp cannot exist in the fresh tmpfs; it is created
there (a directory, or an empty file for a file).

The report. Every step runs as ``{ STEP; } 2>&R || fail 'WHAT'``: its error
message goes to descriptor R and ``fail`` adds ``@WHAT`` and exits; the
last line written is ``@ok``. R is opened on the FIFO
``RUNTIME/isolation/NAME.setup`` by the first shell inside the namespaces
(this one, or the user namespace handshake, which still runs as the host's
root and can open a FIFO of the manager's), before any mount could hide it;
the manager reads it when the service's main process exits
(:meth:`Report.reason`). Descriptors are
the shell's digits 3-9 (dash parses no others), chosen among those the
service is not given (the readiness fd, ``LISTEN_FDS``, ``pass_fds``); all
of them are closed before the service is exec'd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dynamod_isolation.cgroups import unescape_mount_path
from dynamod_isolation.options import FULL_READ_ONLY, STRICT_WRITABLE, NamespaceOptions
from dynamod_isolation.wrappers import tool

TMP_DIRS = ("/tmp", "/var/tmp")
SHELL_FDS = range(9, 2, -1)  # the descriptors dash can name, highest first
OK = "@ok"
REPORT_LIMIT = 4096  # bytes of a report read back (mount's messages are short)
NOISE = ("dmesg(1) may have more information",)
# "mount: " and dash's "dynamod-isolation: 3: " before a message.
SHELL_PREFIX = re.compile(r"^(?:mount: |dynamod-isolation: \d+: )")


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """``(mount point, per-mount options)`` of every mount, as the manager
    sees them: the new mount namespace starts as a copy of the manager's."""
    out: list[tuple[str, str]] = []
    with open(mountinfo, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 5:
                out.append((unescape_mount_path(parts[4]), parts[5]))
    return out


def under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _ro_flags(options: str) -> str:
    """Per-mount flags with ``ro`` instead of ``rw``. Passed explicitly: in
    a user namespace flags such as nosuid/nodev are locked, and a
    (re)mount that would drop them is refused."""
    return ",".join(["ro", *(o for o in options.split(",") if o not in ("rw", "ro"))])


def _options_of(path: str, mounts: list[tuple[str, str]]) -> str:
    """The per-mount options of the mount ``path`` is on."""
    best, opts = "", "rw"
    for point, options in mounts:
        if under(path, [point]) and len(point) >= len(best):
            best, opts = point, options
    return opts


def taken_fds(env: Mapping[str, str], pass_fds: Iterable[int]) -> set[int]:
    """Descriptors the service is given and the setup must not touch."""
    taken = set(pass_fds)
    with contextlib.suppress(ValueError):
        taken.add(int(env.get("DYNAMOD_READY_FD", "-1")))
    with contextlib.suppress(ValueError):
        taken.update(range(3, 3 + int(env.get("LISTEN_FDS", "0"))))
    return taken


@dataclass
class Fds:
    """The shell descriptors a setup uses: the report and, per private tmp
    directory with a bind-mount source under it, the original directory."""

    report: int | None = None
    tmp: dict[str, int] = field(default_factory=dict)

    def close(self) -> str:
        """The line closing them all (before the service is exec'd)."""
        fds = ([self.report] if self.report is not None else []) + list(self.tmp.values())
        return "exec " + " ".join(f"{fd}>&-" for fd in fds) if fds else ""


def hidden_dirs(opts: NamespaceOptions) -> list[str]:
    """The private tmp directories some bind-mount source lies under."""
    if not opts.private_tmp:
        return []
    sources = [os.path.realpath(b.source) for b in opts.bind_mounts]
    return [d for d in TMP_DIRS
            if os.path.isdir(d) and any(under(src, [os.path.realpath(d)]) for src in sources)]


def choose_fds(opts: NamespaceOptions, taken: set[int], report: bool = True) -> Fds:
    """Free shell descriptors for the report and the hidden tmp dirs; what
    does not fit goes without (a report-less setup fails with the shell's
    exit status; a source then is looked up by its path)."""
    free = [fd for fd in SHELL_FDS if fd not in taken]
    fds = Fds()
    if report and free:
        fds.report = free.pop(0)
    for d in hidden_dirs(opts):
        if free:
            fds.tmp[d] = free.pop(0)
    return fds


def setup_script(opts: NamespaceOptions, *, mounts: list[tuple[str, str]] | None = None,
                 unset_pwd: bool = True, fds: Fds | None = None, prologue: str = "") -> str:
    """Step 5: what runs inside the new namespaces before the service.
    ``mounts`` is the manager's mount table (:func:`mount_points`); with
    ``fds.report`` every step reports to it (``prologue`` opens it, when the
    first shell is this one)."""
    mounts = mounts or []
    fds = fds or Fds()
    mount = shlex.quote(tool("mount")) if opts.mount_setup else "mount"
    q = shlex.quote
    steps: list[tuple[str, str]] = []  # (shell command, what it does)

    def source_path(source: str) -> tuple[str, str]:
        """How the shell names the source, and mount's extra option."""
        real = os.path.realpath(source)
        for d, fd in fds.tmp.items():
            root = os.path.realpath(d)
            if under(real, [root]):
                rest = os.path.relpath(real, root)
                return f"/proc/self/fd/{fd}" + ("" if rest == "." else "/" + rest), "-c "
        return source, ""

    def bind(source: str, target: str, writable: bool) -> str:
        path, extra = source_path(source)
        if writable:
            return f"{mount} {extra}--rbind {q(path)} {q(target)}"
        # One exec for both steps: with "ro", mount(8) binds and then
        # remounts the new mount read-only (with the source's other flags).
        flags = _ro_flags(_options_of(os.path.realpath(source), mounts))
        return f"{mount} {extra}--rbind -o {flags} {q(path)} {q(target)}"

    if opts.hostname and "user" in opts.namespaces:
        # In a user namespace /proc/sys/kernel/hostname belongs to the
        # host's root (unmapped there): sethostname(2) through hostname(1),
        # which checks the capability the namespace's root does have.
        steps.append((f"{q(tool('hostname'))} {q(opts.hostname)}", f"hostname {opts.hostname}"))
    elif opts.hostname:
        # Writing it sets the name of the writer's UTS namespace: no exec.
        steps.append((f"echo {q(opts.hostname)} > /proc/sys/kernel/hostname", f"hostname {opts.hostname}"))
    private = [d for d in TMP_DIRS if opts.private_tmp and os.path.isdir(d)]
    for d in private:
        steps.append((f"{mount} -t tmpfs -o mode=1777,nosuid,nodev tmpfs {q(d)}", f"private {d}"))
    # Bind mounts before the read-only remounts: a bind copies the flags of
    # its source mount, so a writable one made after "/" went read-only
    # would be read-only too.
    points = {point for point, _ in mounts}
    writable = list(opts.writable_paths)
    if opts.protect_system == "strict":
        # /run on the root file system (no mount of its own) would go
        # read-only with "/": make each its own mount point first.
        writable += [p for p in STRICT_WRITABLE if p not in points]
    for p in writable:
        # One inside a private tmp is writable anyway (and not the host's).
        if os.path.exists(p) and not under(p, private):
            steps.append((f"{mount} --rbind {q(p)} {q(p)}", f"writable path {p}"))
    for b in opts.bind_mounts:
        what = f"bind mount {b.source}" + ("" if b.target == b.source else f" on {b.target}")
        if under(b.target, private):
            # The fresh tmpfs has no mount point for it yet: make one.
            if os.path.isdir(b.source):
                make = f"mkdir -p {q(b.target)}"
            else:
                make = f"mkdir -p {q(os.path.dirname(b.target))} && : > {q(b.target)}"
            steps.append((make, what))
        steps.append((bind(b.source, b.target, b.writable), what))
    if opts.protect_system == "full":
        for d in FULL_READ_ONLY:
            if os.path.isdir(d) and not under(d, opts.writable_paths):
                # Bound onto itself to become a mount point of its own
                # (recursively: what is mounted below, an earlier bind mount
                # included, stays as it is) and made read-only.
                steps.append((bind(d, d, False), f"read-only {d}"))
    elif opts.protect_system == "strict":
        keep = [*STRICT_WRITABLE, *opts.writable_paths, *(b.target for b in opts.bind_mounts), *private]
        seen: set[str] = set()
        for point, options in mounts:
            if point in seen or under(point, keep) or "ro" in options.split(","):
                continue
            seen.add(point)
            steps.append((f"{mount} -o remount,bind,{_ro_flags(options)} {q(point)}", f"read-only {point}"))

    lines = [prologue] if prologue else []
    opened = " ".join(f"{fd}<{q(d)}" for d, fd in fds.tmp.items())
    if opened:  # before the private tmp hides them
        lines.append(f"exec {opened}")
    r = fds.report
    if r is not None:
        lines.append(f"fail() {{ printf '@%s\\n' \"$1\" >&{r}; exit 1; }}")
        lines += [f"{{ {cmd}; }} 2>&{r} || fail {q(what)}" for cmd, what in steps]
        lines.append(f"echo {OK} >&{r}")
    else:
        lines += [cmd for cmd, _ in steps]
    if fds.close():
        lines.append(fds.close())
    if unset_pwd:  # see wrappers.join_cgroup
        lines.append("unset PWD")
    lines.append('exec "$@"')
    return "\n".join(lines)


class Report:
    """The FIFO one spawn's setup shell reports to (see the module's
    docstring). A FIFO, not a file: a file open for writing would keep its
    mount busy, and ``protect-system`` could not remount it read-only. The
    manager opens it read-write (so the shell's ``open`` never blocks),
    drains it on its loop until ``@ok`` (then lets it go: the descriptor is
    held only while the setup runs) and keeps the last few KiB."""

    def __init__(self, directory: str, name: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{name}.setup")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self.data = b""
        self.done = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hidden: dict[int, str] = {}  # shell fd -> the tmp dir it holds

    def start(self) -> None:
        """Drain it on the running loop (none: only when asked)."""
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.loop.add_reader(self.fd, self.drain)

    def drain(self) -> None:
        while self.fd >= 0:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # BlockingIOError: all read
                break
            if not chunk:
                break
            self.data = (self.data + chunk)[-REPORT_LIMIT:]
        if not self.done and f"\n{OK}\n".encode() in b"\n" + self.data:
            self.done = True
            self._let_go()

    def _let_go(self) -> None:
        if self.fd < 0:
            return
        if self.loop is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1

    def opener(self, fd: int) -> str:
        """The shell line opening the report as ``fd``."""
        return f"exec {fd}>>{shlex.quote(self.path)}"

    def reason(self) -> str | None:
        """What failed, when the setup did not finish: ``WHAT: MESSAGE``
        (mount's own words), or a note that it never ran. None when it
        finished (the service itself exited)."""
        self.drain()
        lines = self.data.decode("utf-8", "replace").splitlines()
        if OK in lines:
            return None
        if not lines:
            return "it exited before the setup inside its namespaces ran (see its log)"
        marks = [i for i, line in enumerate(lines) if line.startswith("@")]
        if not marks:
            return "the setup inside its namespaces was cut short: " + "; ".join(lines)[:300]
        end = marks[-1]
        start = marks[-2] + 1 if len(marks) > 1 else 0
        what = lines[end][1:]
        said = [self._plain(line, what) for line in lines[start:end]
                if line.strip() and not line.lstrip().startswith(NOISE)]
        return f"{what}: {'; '.join(said)}"[:500] if said else what

    def _plain(self, line: str, what: str) -> str:
        """mount's message without what ``what`` says already (``mount:
        TARGET:``), ``/proc/self/fd/N`` named as the directory it is."""
        line = SHELL_PREFIX.sub("", line.strip())
        for fd, d in self.hidden.items():
            line = line.replace(f"/proc/self/fd/{fd}", d)
        path, sep, rest = line.partition(": ")
        if sep and path.startswith("/") and path in what.split():
            line = rest
        return line

    def close(self) -> None:
        """After the service stopped (or before its next start)."""
        self._let_go()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
