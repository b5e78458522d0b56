"""Service and supervisor states (the names ``dynamodctl`` shows).

A service moves ``stopped -> pending`` (waiting for dependencies)
``-> starting`` (spawned) ``-> waiting-ready`` (readiness detector running)
``-> running``; a oneshot goes ``starting -> exited`` when it exits 0.
``stopping`` covers both "waiting for dependents to stop first" and "stop
signal sent". After a failure a service is ``restarting`` (waiting out its
delay, or for the rest of its supervisor group to stop) or ``failed`` when it
will not be restarted. ``blocked`` means a ``requires`` dependency failed or
was stopped; the reason names it.
"""

STOPPED = "stopped"
PENDING = "pending"
STARTING = "starting"
WAITING_READY = "waiting-ready"
RUNNING = "running"
EXITED = "exited"
STOPPING = "stopping"
RESTARTING = "restarting"
FAILED = "failed"
BLOCKED = "blocked"

# Dependencies are satisfied by these.
UP = frozenset({RUNNING, EXITED})
# A process may exist in these.
ALIVE = frozenset({STARTING, WAITING_READY, RUNNING, STOPPING})
# On the way up: a dependent should wait rather than give up.
COMING_UP = frozenset({PENDING, STARTING, WAITING_READY, RESTARTING})
DOWN = frozenset({STOPPED, FAILED, BLOCKED})
