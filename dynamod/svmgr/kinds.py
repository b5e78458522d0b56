"""The per-type rules of simple, oneshot, forking and notify services.

The engine asks these questions instead of testing ``cfg.type`` itself:

* simple, notify: the spawned process is the service; it is up once its
  readiness detector says so (``none``: at once), within ``readiness.timeout``
  ("readiness timeout").
* oneshot: no detector; up (``exited``) when the process exits 0, within
  ``readiness.timeout`` ("start timeout"); a finished oneshot has nothing to
  stop.
* forking: the spawned process is a start process; when it exits 0 the
  daemon it left is the main process (from ``pid-file``, or ``MAINPID=``
  through sd_notify), then readiness; the whole start within
  ``readiness.timeout`` ("start timeout").
"""

from __future__ import annotations

from dynamod.config.model import ServiceConfig


class Kind:
    uses_detector = True
    # The start timer runs from the spawn ("start timeout") rather than from
    # the readiness wait ("readiness timeout").
    start_timer = False
    # The spawned process is only a start process (forking).
    start_process = False
    # Up when the process exits 0 instead of when it is ready.
    runs_to_completion = False

    def needs_main_pid(self) -> bool:
        return False


class Simple(Kind):
    pass


class Oneshot(Kind):
    uses_detector = False
    start_timer = True
    runs_to_completion = True


class Forking(Kind):
    start_timer = True
    start_process = True

    def needs_main_pid(self) -> bool:
        return True


KINDS: dict[str, Kind] = {"simple": Simple(), "notify": Simple(), "oneshot": Oneshot(), "forking": Forking()}


def kind_of(cfg: ServiceConfig) -> Kind:
    return KINDS.get(cfg.type, KINDS["simple"])
