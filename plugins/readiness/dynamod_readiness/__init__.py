"""dynamod-readiness: the readiness types notify, tcp-port, exec and fd.

See README.md of this distribution; the hooks are in :mod:`.plugin`.
"""
