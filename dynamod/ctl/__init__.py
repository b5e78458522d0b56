"""dynamodctl, the command-line tool (see docs/cli.md).

``main`` is the entry point; it tries the hand-written fast path
(:mod:`dynamod.ctl.fast`) before building the typer app
(:mod:`dynamod.ctl.app`). Both call the same implementations in
:mod:`dynamod.ctl.commands`. This package imports nothing itself.
"""
