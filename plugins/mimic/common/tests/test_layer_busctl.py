"""The object layer as the real busctl sees it: exact wire types,
GetAll(""), computed paths, introspection from the same tables, errors."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

DEST = "org.example.Demo"
PATH = "/org/example/Demo"


def busctl(demo, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["busctl", "--system", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, env=demo.bus.env(), capture_output=True, text=True, timeout=30)


def ok(demo, *args: str) -> str:
    r = busctl(demo, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_get_property_exact_types(demo):
    assert ok(demo, "get-property", DEST, PATH, "org.example.Demo", "Pair") == '(us) 7 "seven"'
    assert ok(demo, "get-property", DEST, PATH, "org.example.Demo", "Fixed") == "t 18446744073709551615"
    assert ok(demo, "get-property", DEST, PATH, "org.example.Demo", "Tags") == 'as 2 "a" "b"'


def test_getall_empty_interface_merges_every_interface(demo):
    out = ok(demo, "call", DEST, PATH, "org.freedesktop.DBus.Properties", "GetAll", "s", "")
    assert out.startswith("a{sv} 6 ")
    assert '"Extra" s "more"' in out and '"Count" u 0' in out
    # A property whose getter gives a wrong type is left out, not sent wrong.
    assert "Broken" not in out and "Absent" not in out


def test_getall_one_interface(demo):
    out = ok(demo, "call", DEST, PATH, "org.freedesktop.DBus.Properties", "GetAll", "s",
             "org.example.Extra")
    assert out == 'a{sv} 1 "Extra" s "more"'


def test_computed_paths_resolve(demo):
    out = ok(demo, "call", DEST, f"{PATH}/item/_2d_2eslice", "org.freedesktop.DBus.Properties",
             "GetAll", "s", "")
    assert out == 'a{sv} 2 "Name" s "-.slice" "Known" b true'
    out = ok(demo, "get-property", DEST, f"{PATH}/item/never_2dheard_2dof", "org.example.Item", "Name")
    assert out == 's "never-heard-of"'


@pytest.mark.parametrize("path", [f"{PATH}/item/bad_zz", f"{PATH}/item/a/b", "/org/example/Nope"])
def test_unresolvable_paths_are_unknown_objects(demo, path):
    r = busctl(demo, "call", DEST, path, "org.freedesktop.DBus.Properties", "GetAll", "s", "")
    assert r.returncode == 1
    assert f"Unknown object '{path}'" in r.stderr


def test_introspection_matches_tables(demo):
    xml = ok(demo, "call", DEST, PATH, "org.freedesktop.DBus.Introspectable", "Introspect")
    doc = ET.fromstring(xml.split(" ", 1)[1].strip().strip('"').encode().decode("unicode_escape"))
    ifaces = {i.get("name"): i for i in doc.findall("interface")}
    assert {"org.example.Demo", "org.example.Extra", "org.freedesktop.DBus.Properties",
            "org.freedesktop.DBus.Peer", "org.freedesktop.DBus.Introspectable"} <= set(ifaces)
    name = ifaces["org.example.Demo"].find("property[@name='Name']")
    assert (name.get("type"), name.get("access")) == ("s", "readwrite")
    echo = ifaces["org.example.Demo"].find("method[@name='Echo']")
    assert [(a.get("name"), a.get("type"), a.get("direction")) for a in echo.findall("arg")] == [
        ("text", "s", "in"), ("text", "s", "out")]
    assert [n.get("name") for n in doc.findall("node")] == ["item"]
    tree = ok(demo, "tree", DEST)
    assert f"{PATH}/item/foo_2eservice" in tree and f"{PATH}/item/_31st" in tree


def test_methods_and_multiple_returns(demo):
    assert ok(demo, "call", DEST, PATH, "org.example.Demo", "Add", "uu", "40", "2") == "u 42"
    assert ok(demo, "call", DEST, PATH, "org.example.Demo", "Split", "s", "k=v") == 'ss "k" "v"'


def test_errors_have_standard_and_custom_names(demo):
    cases = [
        (("call", DEST, PATH, "org.example.Demo", "Add", "s", "x"), "Invalid arguments 's'"),
        (("call", DEST, PATH, "org.example.Demo", "Nope"), "Unknown method 'Nope'"),
        (("call", DEST, PATH, "org.example.Nope", "Nope"), "Unknown interface 'org.example.Nope'"),
        (("get-property", DEST, PATH, "org.example.Demo", "Nope"), "Unknown property 'Nope'"),
        (("get-property", DEST, PATH, "org.example.Demo", "Absent"), "Unknown property 'Absent'"),
        (("set-property", DEST, PATH, "org.example.Demo", "Count", "u", "3"), "read-only"),
        (("set-property", DEST, PATH, "org.example.Demo", "Name", "u", "3"), "has type 's', not 'u'"),
        (("set-property", DEST, PATH, "org.example.Demo", "Name", "s", ""), "must not be empty"),
        (("call", DEST, PATH, "org.example.Demo", "Fail", "s", "it broke"), "it broke"),
        (("call", DEST, PATH, "org.example.Demo", "BadReply"), "internal error answering BadReply"),
    ]
    for args, text in cases:
        r = busctl(demo, *args)
        assert r.returncode == 1 and text in r.stderr, (args, r.stderr)


def test_handler_crash_tells_no_secrets_and_service_goes_on(demo):
    r = busctl(demo, "call", DEST, PATH, "org.example.Demo", "Crash")
    assert r.returncode == 1
    assert "RuntimeError" in r.stderr and "/secret" not in r.stderr
    assert ok(demo, "call", DEST, PATH, "org.example.Demo", "Echo", "s", "still here") == 's "still here"'
    assert "/secret/path/leak" in demo.stop()  # the operator's log has it


def test_set_property_root_only(demo):
    ok(demo, "set-property", DEST, PATH, "org.example.Demo", "Name", "s", "renamed")
    assert ok(demo, "get-property", DEST, PATH, "org.example.Demo", "Name") == 's "renamed"'
    r = busctl(demo, "set-property", DEST, PATH, "org.example.Demo", "Name", "s", "evil", user=65534)
    assert r.returncode == 1 and "Access denied" in r.stderr
    assert ok(demo, "get-property", DEST, PATH, "org.example.Demo", "Name") == 's "renamed"'


def test_resolver_sees_the_caller(demo):
    path = f"{PATH}/item/self"
    assert ok(demo, "get-property", DEST, path, "org.example.Item", "Name") == 's "caller-0"'
    r = busctl(demo, "get-property", DEST, path, "org.example.Item", "Name", user=65534)
    assert r.stdout.strip() == 's "caller-65534"'


def test_caller_credentials(demo):
    out = busctl(demo, "call", DEST, PATH, "org.example.Demo", "WhoAmI", user=65534)
    uid, pid, _interactive = out.stdout.split()[1:]
    assert uid == "65534" and int(pid) > 0
    assert ok(demo, "call", DEST, PATH, "org.example.Demo", "WhoAmI").split()[1] == "0"


def test_peer_interface_anywhere(demo):
    ok(demo, "call", DEST, "/any/where", "org.freedesktop.DBus.Peer", "Ping")
    mid = ok(demo, "call", DEST, PATH, "org.freedesktop.DBus.Peer", "GetMachineId")
    assert len(mid.split()[1].strip('"')) == 32
