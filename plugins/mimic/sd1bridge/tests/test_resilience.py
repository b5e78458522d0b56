"""The bridge as an adversary would treat it: svmgr dying under a waiting
systemctl, svmgr and the bridge restarted, the machine left as it was."""

from __future__ import annotations

import os
import signal
import subprocess

from dynamod_sd1bridge.testing import settle, slow_oneshot

from dynamod.testing import Svmgr


def test_machine_run_systemd_untouched(stack, tree):
    before = sorted(os.listdir("/run/systemd")) if os.path.isdir("/run/systemd") else None
    tree.simple("web")
    stack.start(("web",))
    assert stack.ns.exists("/run/systemd/system")  # inside the namespace
    assert stack.systemctl("is-active", "web").stdout.strip() == "active"
    after = sorted(os.listdir("/run/systemd")) if os.path.isdir("/run/systemd") else None
    assert before == after


def test_svmgr_dying_under_a_waiting_start(stack, tree, work):
    tree.simple("web")
    slow_oneshot(tree, "slow", work / "go")
    stack.start(("web",))
    waiter = subprocess.Popen(stack.ns.argv(["systemctl", "start", "slow"]), env=stack.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    settle(lambda: "slow.service" in stack.systemctl("list-jobs").stdout, "the job listed", stack)
    stack.svmgr.proc.send_signal(signal.SIGKILL)
    stack.svmgr.proc.wait()
    # The job can never end in a dead svmgr: the bridge ends it, no hang.
    _out, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, err.strip()) == (1, "Job for slow.service canceled.")
    r = stack.systemctl("is-active", "web")
    assert r.returncode != 0  # no svmgr: an error, not a guess
    # A new svmgr on the same socket: the bridge reconnects by itself.
    stack.svmgr = Svmgr(tree.root, work / "run")
    stack.svmgr.wait_state("web", "running")
    settle(lambda: stack.systemctl("is-active", "web").stdout.strip() == "active",
           "the bridge back on the new svmgr", stack)
    (work / "go").touch()
    r = stack.systemctl("start", "slow")
    assert r.returncode == 0, r.stderr
    # New job ids do not reuse the old ones (the first svmgr's job 1 ended).
    assert stack.svmgr.status("slow")["state"] == "exited"


def test_bridge_restarted(stack, tree):
    tree.simple("web")
    stack.start(("web",))
    stack.bridge.send_signal(signal.SIGKILL)
    stack.bridge.wait()
    stack.stop_bridge()
    r = stack.systemctl("is-active", "web")
    assert r.returncode != 0
    stack.start_bridge()
    assert stack.systemctl("is-active", "web").stdout.strip() == "active"
    r = stack.systemctl("restart", "web")
    assert r.returncode == 0, r.stderr
