"""dynamod's IPC layer: framing, schema, blocking and asyncio clients, server.

Import the submodule you need (``dynamod.ipc.client``, ``dynamod.ipc.server``,
...): this package deliberately imports nothing, so that PID 1 and dynamodctl
pay only for what they use. The protocol is documented in docs/protocol.md.
"""
