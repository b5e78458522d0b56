"""dynamodctl, the command-line tool (see docs/cli.md).

``main`` (:mod:`dynamod.ctl.main`) is the entry point; the command table
and the dispatch are in :mod:`dynamod.ctl.verbs`, parsed by
:mod:`dynamod.ctl.cli`; what daemon commands do is in
:mod:`dynamod.ctl.commands`. This package imports nothing itself.
"""
