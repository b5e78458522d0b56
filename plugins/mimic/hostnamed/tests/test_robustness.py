"""Careless and hostile use: many clients at once, a daemon killed mid-write,
calls with wrong arguments, a bad configuration, a second instance."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from dynamod_hostnamed import envfile


def test_many_clients_at_once(machine) -> None:
    names = [f"Host {i}" for i in range(40)]

    def one(i: int) -> subprocess.CompletedProcess[str]:
        if i % 2:
            return machine.run("hostnamectl", "set-hostname", "--pretty", names[i // 2])
        return machine.run("hostnamectl", "status")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(80)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    final = envfile.parse((machine.root / "etc/machine-info").read_text())["PRETTY_HOSTNAME"]
    assert final in names
    assert machine.run("hostnamectl", "--pretty", check=True).stdout == f"{final}\n"
    assert sorted(p.name for p in (machine.root / "etc").iterdir() if p.name.startswith(".#")) == []


def test_killed_mid_write_leaves_whole_files(make_machine) -> None:
    m = make_machine()
    layouts = ["de", "gb", "us", "fr", "ch", "it", "es", "se"]
    rng = random.Random(15)
    for _round in range(6):
        writer = subprocess.Popen(
            [*m.enter(), "sh", "-c",
             "for l in " + " ".join(layouts * 3) + "; do localectl --no-convert set-x11-keymap $l; "
             "hostnamectl location \"rack $l\"; done"],
            env=m.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # kill the daemon at a random moment of the flurry
        try:
            writer.wait(rng.uniform(0.05, 0.6))
        except subprocess.TimeoutExpired:
            pass
        assert m.daemon is not None
        m.daemon.send_signal(signal.SIGKILL)
        m.daemon.wait()
        writer.wait(60)
        conf = m.root / "etc/X11/xorg.conf.d/00-keyboard.conf"
        if conf.exists():
            text = conf.read_text()
            assert text.endswith("EndSection\n"), text
            assert any(f'Option "XkbLayout" "{x}"\n' in text for x in layouts)
        mi = m.root / "etc/machine-info"
        if mi.exists():
            assert envfile.parse(mi.read_text())["LOCATION"] in {f"rack {x}" for x in layouts}
        leftovers = [p for p in m.root.rglob(".#*")]
        assert len(leftovers) <= 1, leftovers  # at most the one write cut short
        for p in leftovers:
            p.unlink()
        m.start_daemon()  # and it serves again
        assert m.run("localectl", check=True).returncode == 0


def test_bad_calls(machine) -> None:
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return machine.run("busctl", "--", "call", "org.freedesktop.hostname1", "/org/freedesktop/hostname1",
                           "org.freedesktop.hostname1", *args)  # fmt: skip

    out = call("SetStaticHostname", "s", "only-one-arg")
    assert out.returncode == 1
    assert "Invalid arguments 's' to call org.freedesktop.hostname1.SetStaticHostname(), expecting 'sb'" in out.stderr
    out = call("SetPrettyHostname", "sb", "x" * 100_000, "true")
    assert out.returncode == 1 and "longer than 255 bytes" in out.stderr
    out = call("NoSuchMethod")
    assert out.returncode == 1
    out = machine.run("busctl", "set-property", "org.freedesktop.hostname1", "/org/freedesktop/hostname1",
                      "org.freedesktop.hostname1", "Hostname", "s", "direct")  # fmt: skip
    assert out.returncode == 1
    assert machine.hostname() == "dynamod-test"
    # the daemon is still there
    assert machine.run("hostnamectl", "hostname", check=True).stdout == "dynamod-test\n"


def test_a_bad_configuration_stops_the_daemon_with_the_reason(tmp_path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text("[ntp]\nservers = ['x']\n")
    out = subprocess.run([sys.executable, "-m", "dynamod_hostnamed", "--root", str(tmp_path),
                          "--config", str(cfg)], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2
    assert f"{cfg}: ntp.servers: unknown key" in out.stderr


def test_a_second_instance_says_the_names_are_taken(machine) -> None:
    out = machine.run(sys.executable, "-m", "dynamod_hostnamed", "--root", str(machine.root))
    assert out.returncode == 1
    assert "cannot own org.freedesktop.hostname1 on the system bus: another process owns it" in out.stderr
    assert machine.run("hostnamectl", "hostname", check=True).returncode == 0


def test_no_bus(tmp_path) -> None:
    env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/none", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "dynamod_hostnamed", "--root", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 1
    assert "cannot connect to the system bus" in out.stderr


def test_read_only_etc_is_a_clear_error(machine) -> None:
    etc = machine.root / "etc"
    machine.sh(f"mount --bind {etc} {etc} && mount -o remount,bind,ro {etc}")
    out = machine.run("timedatectl", "set-timezone", "Asia/Tokyo")
    assert out.returncode == 1
    assert "Failed to link /etc/localtime: Read-only file system" in out.stderr, out.stderr
    out = machine.run("hostnamectl", "set-hostname", "--static", "ro-box")
    assert out.returncode == 1
    assert "Failed to write /etc/hostname: Read-only file system" in out.stderr, out.stderr
    assert machine.hostname() == "dynamod-test"  # nothing half-done
    machine.sh(f"umount {etc}")
    machine.run("timedatectl", "set-timezone", "Asia/Tokyo", check=True)
