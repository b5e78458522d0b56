"""dynamod-init: PID 1.

Small and paranoid: no asyncio, few imports, every handler guarded. It boots
(Phase A in an initramfs through the boot media hook, Phase B on the real
root), runs and babysits dynamod-svmgr over a socketpair, reaps every orphan,
and performs the final shutdown sequence.
"""
