"""Supervisor trees: strategies in dependency order, intensity, escalation
to the parent, and the root supervisor's failure."""

from __future__ import annotations

import os
import signal
import time

from dynamod.testing import pid_alive, read_stamps, stamp, wait_stamps

BARE = ["--no-plugins"]
FAST = '[restart]\ndelay = "100ms"\n'


def supervisor(tree, name, strategy="one-for-one", parent=None, max_restarts=5, window="60s",
               escalate=False):
    parent_line = f'parent = "{parent}"\n' if parent else ""
    if escalate:
        parent_line += "escalate = true\n"
    tree.supervisor(
        name,
        f'[supervisor]\nname = "{name}"\n{parent_line}strategy = "{strategy}"\n'
        f'[restart]\nmax-restarts = {max_restarts}\nmax-restart-window = "{window}"\n',
    )


def child(tree, name, sup, after=(), rec=None):
    script = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
    if rec is not None:
        script = f"trap '{stamp(rec, name + ' term')}; exit 0' TERM; {stamp(rec, name + ' start')}; while :; do sleep 0.05; done"
    extra = FAST
    if after:
        extra += "[dependencies]\nafter = [" + ", ".join(f'"{a}"' for a in after) + "]\n"
    tree.simple(name, script, supervisor=sup, extra=extra)


def pids(mgr, names):
    return {n: mgr.wait_state(n, "running")["pid"] for n in names}


def crash(mgr, name):
    """SIGKILL the service and wait until it runs again (new pid)."""
    old = mgr.wait_state(name, "running")["pid"]
    os.kill(old, signal.SIGKILL)
    return old


def wait_all_new(mgr, old):
    def check():
        now = {n: mgr.status(n) for n in old}
        return all(i["state"] == "running" and i["pid"] != old[n] for n, i in now.items()) and now

    return mgr.wait_for(check, what=f"{sorted(old)} restarted")


def find(node, name):
    stack = [node]
    while stack:
        n = stack.pop()
        if n["name"] == name:
            return n
        stack.extend(n.get("children", []))
    raise KeyError(name)


# Names are chosen so that file (alphabetical) order is the reverse of the
# dependency order: z-first <- m-second <- a-third.
CHAIN = ("z-first", "m-second", "a-third")


def chain(tree, sup, rec=None):
    child(tree, "z-first", sup, rec=rec)
    child(tree, "m-second", sup, after=["z-first"], rec=rec)
    child(tree, "a-third", sup, after=["m-second"], rec=rec)


def test_one_for_one_restarts_only_the_failed_child(tree, svmgr):
    supervisor(tree, "apps", "one-for-one")
    chain(tree, "apps")
    mgr = svmgr(args=BARE)
    before = pids(mgr, CHAIN)
    crash(mgr, "m-second")
    wait_all_new(mgr, {"m-second": before["m-second"]})
    after = pids(mgr, CHAIN)
    assert after["z-first"] == before["z-first"]
    assert after["a-third"] == before["a-third"]


def test_one_for_all_restarts_every_child_in_dependency_order(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    supervisor(tree, "apps", "one-for-all")
    chain(tree, "apps", rec=rec)
    tree.simple("outsider")
    mgr = svmgr(args=BARE)
    before = pids(mgr, (*CHAIN, "outsider"))
    wait_stamps(rec, [n + " start" for n in CHAIN])
    os.truncate(rec, 0)
    crash(mgr, "m-second")
    wait_all_new(mgr, {n: before[n] for n in CHAIN})
    assert mgr.status("outsider")["pid"] == before["outsider"]
    mgr.wait_for(lambda: len(read_stamps(rec)) == 5, what="terms and starts")
    assert sorted(lab for lab, _ in read_stamps(rec)[:2]) == ["a-third term", "z-first term"]
    # The survivors are down (in parallel: neither depends on the other)
    # before anything is started again, then all start in dependency order.
    log = [(n, new) for n, _old, new, _r in mgr.transitions() if n in CHAIN]
    restart = log[log.index(("m-second", "restarting")) :]
    first_pending = restart.index(next(x for x in restart if x[1] == "pending"))
    assert {n for n, new in restart[:first_pending] if new == "restarting"} == set(CHAIN)
    assert [n for n, new in restart if new == "starting"] == list(CHAIN)


def test_rest_for_one_follows_dependency_order_not_file_order(tree, svmgr):
    supervisor(tree, "apps", "rest-for-one")
    chain(tree, "apps")
    mgr = svmgr(args=BARE)
    before = pids(mgr, CHAIN)
    # The middle one: it and the ones started after it.
    crash(mgr, "m-second")
    wait_all_new(mgr, {"m-second": before["m-second"], "a-third": before["a-third"]})
    assert mgr.status("z-first")["pid"] == before["z-first"]
    # The last one (alphabetically first): only itself.
    before = pids(mgr, CHAIN)
    crash(mgr, "a-third")
    wait_all_new(mgr, {"a-third": before["a-third"]})
    assert mgr.status("z-first")["pid"] == before["z-first"]
    assert mgr.status("m-second")["pid"] == before["m-second"]
    # The first one (alphabetically last): everything.
    before = pids(mgr, CHAIN)
    crash(mgr, "z-first")
    wait_all_new(mgr, before)


def test_tree_status_lists_children_in_start_order(tree, svmgr):
    supervisor(tree, "apps", "rest-for-one")
    chain(tree, "apps")
    mgr = svmgr(args=BARE)
    pids(mgr, CHAIN)
    root = mgr.request("TreeStatus")["root"]
    apps = find(root, "apps")
    assert [c["name"] for c in apps["children"]] == list(CHAIN)
    assert apps["strategy"] == "rest-for-one"
    assert all(c["state"] == "running" for c in apps["children"])


def test_intensity_exceeded_fails_the_supervisor_and_the_parent_restarts_it(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    supervisor(tree, "apps", "one-for-one", max_restarts=1, escalate=True)
    child(tree, "crashy", "apps")
    child(tree, "steady", "apps", rec=rec)
    tree.simple("outsider")
    mgr = svmgr(args=BARE)
    before = pids(mgr, ("crashy", "steady", "outsider"))
    wait_stamps(rec, ["steady start"])
    # First crash: within the intensity, only crashy restarts.
    crash(mgr, "crashy")
    wait_all_new(mgr, {"crashy": before["crashy"]})
    assert mgr.status("steady")["pid"] == before["steady"]
    tree_now = mgr.request("TreeStatus")["root"]
    assert find(tree_now, "apps")["restarts"] == 1
    assert find(tree_now, "apps")["failures"] == 0
    # Second crash: apps exceeds 1 restart in 60 s, stops all its children
    # and fails; root (one-for-one) restarts the whole apps subtree.
    second = mgr.status("crashy")["pid"]
    crash(mgr, "crashy")
    wait_all_new(mgr, {"crashy": second, "steady": before["steady"]})
    assert mgr.status("outsider")["pid"] == before["outsider"]
    assert "steady term" in [lab for lab, _ in read_stamps(rec)]
    assert "SUPERVISOR apps FAILED" in mgr.log()
    tree_now = mgr.request("TreeStatus")["root"]
    apps = find(tree_now, "apps")
    assert apps["failures"] == 1
    assert apps["state"] == "running"
    assert apps["last_failure"] is not None
    # The restart of the subtree is charged to the parent.
    assert tree_now["restarts"] == 1
    assert tree_now["failures"] == 0
    # The restarted supervisor has a fresh intensity window.
    assert apps["restarts"] == 0


def test_parent_applies_its_own_strategy_to_a_failed_child_supervisor(tree, svmgr):
    supervisor(tree, "mid", "one-for-all")
    supervisor(tree, "apps", "one-for-one", parent="mid", max_restarts=0, escalate=True)
    child(tree, "crashy", "apps")
    child(tree, "sibling", "mid")
    tree.simple("outsider")
    mgr = svmgr(args=BARE)
    before = pids(mgr, ("crashy", "sibling", "outsider"))
    crash(mgr, "crashy")
    # apps fails at once (max-restarts 0); mid restarts all its children,
    # the sibling service included.
    wait_all_new(mgr, {"crashy": before["crashy"], "sibling": before["sibling"]})
    assert mgr.status("outsider")["pid"] == before["outsider"]
    root = mgr.request("TreeStatus")["root"]
    assert find(root, "apps")["failures"] == 1
    assert find(root, "mid")["failures"] == 0
    assert find(root, "mid")["restarts"] == 1
    assert root["restarts"] == 0


def test_escalation_through_two_levels(tree, svmgr):
    supervisor(tree, "mid", "one-for-one", max_restarts=0, escalate=True)
    supervisor(tree, "apps", "one-for-one", parent="mid", max_restarts=0, escalate=True)
    child(tree, "crashy", "apps")
    child(tree, "steady", "apps")
    child(tree, "sibling", "mid")
    tree.simple("outsider")
    mgr = svmgr(args=BARE)
    before = pids(mgr, ("crashy", "steady", "sibling", "outsider"))
    crash(mgr, "crashy")
    # apps fails; mid cannot restart it (max 0) and fails too; root restarts
    # mid's whole subtree.
    wait_all_new(mgr, {n: before[n] for n in ("crashy", "steady", "sibling")})
    assert mgr.status("outsider")["pid"] == before["outsider"]
    root = mgr.request("TreeStatus")["root"]
    assert find(root, "apps")["failures"] == 1
    assert find(root, "mid")["failures"] == 1
    assert find(root, "mid")["state"] == "running"
    assert find(root, "apps")["state"] == "running"
    assert root["restarts"] == 1


def test_root_supervisor_failure_stops_everything_and_exits_3(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.supervisor("root", '[supervisor]\nname = "root"\nescalate = true\n[restart]\nmax-restarts = 1\n')
    tree.simple("crashy", "sleep 0.2; exit 1", extra=FAST)
    tree.simple(
        "steady",
        f"trap '{stamp(rec, 'steady term')}; exit 0' TERM; {stamp(rec, 'steady up')}; while :; do sleep 0.05; done",
    )
    mgr = svmgr(args=BARE)
    steady = mgr.wait_state("steady", "running")["pid"]
    wait_stamps(rec, ["steady up"])
    code = mgr.wait_exit(timeout=10)
    assert code == 3
    log = mgr.log()
    assert "ROOT SUPERVISOR FAILED" in log
    assert "steady term" in [lab for lab, _ in read_stamps(rec)]
    assert not pid_alive(steady)
    assert ("crashy", "running", "restarting", "exited 1") in mgr.transitions("crashy")


def test_supervisor_window_forgets_old_restarts(tree, svmgr):
    supervisor(tree, "apps", "one-for-one", max_restarts=1, window="300ms")
    child(tree, "crashy", "apps")
    mgr = svmgr(args=BARE)
    for _ in range(3):
        old = crash(mgr, "crashy")
        wait_all_new(mgr, {"crashy": old})
        time.sleep(0.35)
    root = mgr.request("TreeStatus")["root"]
    assert find(root, "apps")["failures"] == 0
