"""What a valid configuration needs from the host it runs on.

``dynamodctl check`` warns (never errs: the tree may be checked on another
machine than the one it is for) when a service's program or ``stop-exec``
program cannot be found or run, or its user or a group does not exist.
Programs are resolved exactly as the service manager resolves them at
spawn time, with the service's own ``PATH``: the same functions of
:mod:`dynamod.svmgr.spawn` (which imports no asyncio).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable
from dataclasses import replace

from dynamod.config.model import Diagnostic, ServiceConfig


def host_problems(services: Iterable[ServiceConfig]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for svc in services:
        path = _service_path(svc)
        for key, argv in (("service.exec", svc.exec), ("shutdown.stop-exec", svc.shutdown.stop_exec)):
            if argv and (problem := program_problem(argv[0], path)):
                out.append(Diagnostic(svc.source, f"{key}[0]", problem, "warning"))
        out.extend(
            Diagnostic(svc.source, key, message, "warning") for key, message in _identity_problems(svc)
        )
    return out


def program_problem(program: str, path: str) -> str | None:
    """Why the service manager could not run ``program``, or None."""
    from dynamod.svmgr.spawn import SpawnError, resolve_executable

    try:
        found = resolve_executable(program, path)
    except SpawnError as exc:
        return str(exc)
    if os.path.isdir(found):  # X_OK holds for a directory, execve fails
        return f"executable {found} is a directory"
    return None


def _service_path(svc: ServiceConfig) -> str:
    """The PATH the service is spawned with (its environment files
    included when they can be read)."""
    from dynamod.svmgr.spawn import SpawnError, base_environment

    try:
        env = base_environment(svc, None)
    except SpawnError:  # an environment file the service manager will report
        env = base_environment(replace(svc, environment_file=()), None)
    return env["PATH"]


def _identity_problems(svc: ServiceConfig) -> list[tuple[str, str]]:
    # The same lookups as the service manager's resolve_identity, one
    # warning per missing name (it stops at the first).
    out: list[tuple[str, str]] = []
    if svc.user is not None:
        try:
            if svc.user.isascii() and svc.user.isdigit():
                pwd.getpwuid(int(svc.user))
            else:
                pwd.getpwnam(svc.user)
        except (KeyError, OverflowError, ValueError):
            out.append(("service.user.user", f"unknown user {svc.user!r} on this host"))
    groups = [("service.user.group", svc.group)] if svc.group is not None else []
    groups += [
        (f"service.user.supplementary-groups[{i}]", g) for i, g in enumerate(svc.supplementary_groups)
    ]
    for key, group in groups:
        if group is None or (group.isascii() and group.isdigit()):
            continue  # numeric ids are used as they are
        try:
            grp.getgrnam(group)
        except KeyError:
            out.append((key, f"unknown group {group!r} on this host"))
    return out
