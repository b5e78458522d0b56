"""The systemd1 API itself, as D-Bus clients other than systemctl see it:
exact types, signals from the name owner, job objects, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dynamod_mimic_common.testing import watch_signals

from dynamod.testing import deadline

DEST = "org.freedesktop.systemd1"
MGR = "/org/freedesktop/systemd1"
WEB = "/org/freedesktop/systemd1/unit/web_2eservice"


def busctl_json(stack, *args):
    r = subprocess.run(["busctl", "--system", "--json=short", *args], env=stack.env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_property_types_are_systemds(bus_stack, tree):
    tree.simple("web", description="Web")
    up = bus_stack.start(("web",))
    props = busctl_json(up, "call", DEST, WEB, "org.freedesktop.DBus.Properties", "GetAll", "s", "")
    values = props["data"][0]
    want = {"Id": "s", "Names": "as", "Description": "s", "LoadState": "s", "ActiveState": "s",
            "SubState": "s", "UnitFileState": "s", "FragmentPath": "s", "MainPID": "u",
            "ExecMainPID": "u", "ExecMainCode": "i", "ExecMainStatus": "i",
            "ActiveEnterTimestamp": "t", "InactiveExitTimestamp": "t", "StateChangeTimestamp": "t",
            "Requires": "as", "Wants": "as", "After": "as", "Before": "as", "RequiredBy": "as",
            "WantedBy": "as", "ControlGroup": "s", "MemoryCurrent": "t", "TasksCurrent": "t",
            "CPUUsageNSec": "t", "NRestarts": "u", "Result": "s", "Type": "s", "Restart": "s",
            "Job": "(uo)", "LoadError": "(ss)", "InvocationID": "ay", "Conditions": "a(sbbsi)"}
    assert {k: values[k]["type"] for k in want} == want
    assert values["MainPID"]["data"] == up.svmgr.status("web")["main_pid"]
    assert values["ActiveEnterTimestamp"]["data"] > 0
    assert values["Job"]["data"] == [0, "/"]
    mgr = busctl_json(up, "call", DEST, MGR, "org.freedesktop.DBus.Properties", "GetAll", "s", "")
    m = mgr["data"][0]
    assert m["SystemState"] == {"type": "s", "data": "running"}
    assert m["NNames"]["type"] == "u" and m["NNames"]["data"] == 2  # web + the root slice
    assert m["Version"]["data"].startswith("252 ")


def test_unknown_paths_and_errors(bus_stack, tree):
    tree.simple("web")
    up = bus_stack.start(("web",))
    nf = busctl_json(up, "get-property", DEST, "/org/freedesktop/systemd1/unit/nope_2esocket",
                     "org.freedesktop.systemd1.Unit", "LoadState")
    assert nf == {"type": "s", "data": "not-found"}
    cg = busctl_json(up, "get-property", DEST, "/org/freedesktop/systemd1/unit/session_2d1_2escope",
                     "org.freedesktop.systemd1.Scope", "ControlGroup")
    assert cg == {"type": "s", "data": ""}
    r = subprocess.run(["busctl", "--system", "call", DEST, MGR, "org.freedesktop.systemd1.Manager",
                        "GetUnit", "s", "nope.service"], env=up.env(), capture_output=True, text=True)
    assert r.returncode == 1 and "Unit nope.service not loaded." in r.stderr
    r = subprocess.run(["busctl", "--system", "call", DEST, MGR, "org.freedesktop.systemd1.Manager",
                        "StartUnit", "ss", "web.service", "isolate"], env=up.env(), capture_output=True,
                       text=True)
    assert r.returncode == 1 and "isolate is not supported" in r.stderr
    r = subprocess.run(["busctl", "--system", "call", DEST, "/org/freedesktop/systemd1/job/999",
                        "org.freedesktop.systemd1.Job", "Cancel"], env=up.env(), capture_output=True,
                       text=True)
    assert r.returncode == 1 and "Unknown object" in r.stderr
    pid = up.svmgr.status("web")["main_pid"]
    out = busctl_json(up, "call", DEST, MGR, "org.freedesktop.systemd1.Manager", "GetUnitByPID",
                      "u", str(pid))
    assert out["data"] == [WEB]


def test_job_and_property_signals_from_the_name_owner(bus_stack, tree):
    tree.simple("web")
    tree.simple("off", enabled=False)
    up = bus_stack.start(("web",))

    async def body():
        bus = await MessageBus(bus_address=up.bus_address).connect()
        got: list[Message] = []
        removed = asyncio.Event()

        def on(msg):
            got.append(msg)
            if msg.member == "JobRemoved":
                removed.set()

        await watch_signals(bus, DEST, on)
        reply = await bus.call(Message(destination=DEST, path=MGR,
                                       interface="org.freedesktop.systemd1.Manager", member="StartUnit",
                                       signature="ss", body=["off.service", "replace"]))
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        await removed.wait()
        bus.disconnect()
        return reply.body[0], got

    with deadline(60, "signals"):
        job, got = asyncio.run(body())
    new = [m for m in got if m.member == "JobNew"]
    rem = [m for m in got if m.member == "JobRemoved"]
    assert [m.body for m in new] == [[int(job.rsplit("/", 1)[1]), job, "off.service"]]
    assert [m.body for m in rem] == [[int(job.rsplit("/", 1)[1]), job, "off.service", "done"]]
    changes = [m.body[1]["ActiveState"].value for m in got
               if m.member == "PropertiesChanged" and m.path.endswith("off_2eservice")
               and "ActiveState" in m.body[1]]
    assert changes[-1] == "active"
