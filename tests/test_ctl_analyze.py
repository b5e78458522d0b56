"""``dynamodctl analyze`` on real boots of a real svmgr: the totals, blame
order, the critical chain, the SVG timeline as headless Chromium renders it
(read back as pixels) and the DOT graph as graphviz parses it."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from dynamod.ctl import analyze
from dynamod.testing import ConfigTree, Svmgr, ctl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/test installs it)")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz (scripts/test installs it)")
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def oneshot(tree: ConfigTree, name: str, seconds: float, extra: str = "") -> None:
    tree.service(name, f'[service]\nname = "{name}"\ntype = "oneshot"\n'
                 f'exec = ["/bin/sh", "-c", "sleep {seconds}"]\n{extra}')


@pytest.fixture
def booted(tree: ConfigTree, svmgr) -> Svmgr:
    """base (0.5 s) <- db (1.2 s) <- web (0.25 s, wants side); side (0.02 s)
    wants base. The durations are far apart: a loaded machine's shell start
    must not swap them in blame."""
    oneshot(tree, "base", 0.5)
    oneshot(tree, "db", 1.2, '[dependencies]\nrequires = ["base"]\n')
    oneshot(tree, "web", 0.25, '[dependencies]\nrequires = ["db"]\nwants = ["side"]\n')
    oneshot(tree, "side", 0.02, '[dependencies]\nwants = ["base"]\n')
    tree.simple("idle", enabled=False)
    mgr = svmgr(args=["--no-plugins"])
    mgr.wait_state("web", "exited")
    return mgr


def test_time_blame_and_critical_chain(booted: Svmgr) -> None:
    r = ctl("--socket", booted.socket, "analyze")
    assert r.returncode == 0, r.stderr
    first, second, third = r.stdout.splitlines()
    assert first.startswith("Startup finished in ") and first.endswith("(svmgr)")
    assert second.startswith("last service ready: web at +")
    assert third == "4 of 5 services became ready"
    total = float(first.split()[3].rstrip("s"))
    assert total >= 0.5 + 1.2 + 0.25  # the chain base -> db -> web, one after the other

    r = ctl("--socket", booted.socket, "analyze", "blame")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert [n for _, n in rows] == ["db", "base", "web", "side"]  # idle never started
    assert float(rows[0][0].rstrip("s")) >= 1.2

    r = ctl("--socket", booted.socket, "analyze", "critical-chain")
    assert r.returncode == 0, r.stderr
    chain = [line.lstrip(" └─`-").split()[0] for line in r.stdout.splitlines()[3:]]
    assert chain == ["web", "db", "base"]
    r = ctl("--socket", booted.socket, "analyze", "critical-chain", "side")
    assert [line.lstrip(" └─`-").split()[0] for line in r.stdout.splitlines()[3:]] == ["side", "base"]
    r = ctl("--socket", booted.socket, "analyze", "critical-chain", "nosuch")
    assert r.returncode == 4
    r = ctl("--socket", booted.socket, "analyze", "blame", "web")
    assert r.returncode == 2
    r = ctl("--socket", booted.socket, "analyze", "bogus")
    assert r.returncode == 2


@needs_dot
def test_dot_is_parsed_by_graphviz(booted: Svmgr) -> None:
    r = ctl("--socket", booted.socket, "analyze", "dot")
    assert r.returncode == 0, r.stderr
    parsed = subprocess.run(["dot", "-Tjson"], input=r.stdout, capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    graph = json.loads(parsed.stdout)
    names = {o["_gvid"]: o["name"] for o in graph["objects"]}
    edges = {(names[e["tail"]], names[e["head"]]): e.get("style", "solid") for e in graph["edges"]}
    assert edges == {("db", "base"): "solid", ("web", "db"): "solid", ("web", "side"): "dashed",
                     ("side", "base"): "dashed"}
    svg = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True, text=True, timeout=60)
    assert svg.returncode == 0 and "<svg" in svg.stdout


def read_png(png: Path) -> tuple[int, int, bytes]:
    """Width, height and RGB bytes of an 8-bit, non-interlaced RGB or RGBA
    PNG (what Chromium writes), decoded here: no imaging library needed."""
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(raw):
        n = int.from_bytes(raw[pos:pos + 4], "big")
        kind, chunk = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    data = zlib.decompress(idat)
    stride = width * bpp
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        f, line = data[y * (stride + 1)], bytearray(data[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        out += line if bpp == 3 else b"".join(bytes(line[i:i + 3]) for i in range(0, stride, 4))
    return width, height, bytes(out)


def render(svg: str, tmp_path: Path) -> tuple[int, int, bytes]:
    path = tmp_path / "boot.svg"
    path.write_text(svg)
    head = svg.split(">", 1)[0]
    width = int(head.split('width="')[1].split('"')[0])
    height = int(head.split('height="')[1].split('"')[0])
    png = tmp_path / "boot.png"
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", f"--screenshot={png}", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert png.exists(), r.stderr
    return read_png(png)


def rows_with(color: str, img: tuple[int, int, bytes]) -> set[int]:
    """The pixel rows in which ``color`` (#rrggbb) appears."""
    width, height, data = img
    rgb = bytes.fromhex(color[1:])
    rows = set()
    for y in range(height):
        line = data[y * width * 3:(y + 1) * width * 3]
        idx = line.find(rgb)
        while idx != -1 and idx % 3:
            idx = line.find(rgb, idx + 1)
        if idx != -1:
            rows.add(y)
    return rows


@needs_chromium
def test_plot_renders_the_bars(booted: Svmgr, tmp_path: Path) -> None:
    r = ctl("--socket", booted.socket, "analyze", "plot")
    assert r.returncode == 0, r.stderr
    img = render(r.stdout, tmp_path)
    pending, starting, ready = (rows_with(c, img) for _, c, _ in analyze.PHASES)
    # One bar per service that started (4), each with a starting phase and
    # a ready phase; db, web and side waited (pending) for their dependency.
    def bars(rows: set[int]) -> int:
        return sum(1 for y in rows if y - 1 not in rows)

    body = {y for y in starting if y > analyze.TOP - 10}
    assert bars(body) == 4
    assert bars({y for y in ready if y > analyze.TOP - 10}) == 4
    assert bars({y for y in pending if y > analyze.TOP - 10}) == 3  # base did not wait


@needs_chromium
def test_plot_is_readable_at_200_services(tmp_path: Path) -> None:
    services = []
    for i in range(200):
        deps = [f"s{i - 1}"] if i else []
        services.append({"name": f"s{i}", "state": "running", "pending": 0.01 * i,
                         "started": 0.01 * i + 0.003, "ready": 0.01 * i + 0.03,
                         "requires": deps, "wants": [], "after": deps})
    svg = analyze.plot({"manager_start": 0.0, "now": 3.0}, services)
    assert svg.count("<text") >= 200
    img = render(svg, tmp_path)
    height = img[1]
    assert height >= 200 * analyze.ROW  # a row of its own for each, 18 px: 11 px text fits
    starting = {y for y in rows_with(analyze.PHASES[1][1], img) if y > analyze.TOP - 10}
    assert sum(1 for y in starting if y - 1 not in starting) == 200


def test_demo_boot(tmp_path: Path) -> None:
    """The demo system (examples/demo), booted by a real svmgr with its plugins."""
    with Svmgr(DEMO, tmp_path / "run") as mgr:
        mgr.wait_state("webapp", "running", timeout=30)
        r = ctl("--socket", mgr.socket, "analyze", "blame")
        assert r.returncode == 0, r.stderr
        took = [float(line.split()[0].rstrip("ms")) / (1000 if "ms" in line.split()[0] else 1)
                for line in r.stdout.splitlines()]
        assert took == sorted(took, reverse=True) and len(took) >= 6
        r = ctl("--socket", mgr.socket, "analyze", "critical-chain", "webapp")
        chain = [line.lstrip(" └─`-").split()[0] for line in r.stdout.splitlines()[3:]]
        assert chain[0] == "webapp" and chain[-1] == "setup"
        cfg = {n: mgr.status(n) for n in chain}
        for a, b in itertools.pairwise(chain):  # each waited for the next
            assert b in cfg[a]["requires"] + cfg[a]["wants"] + cfg[a]["after"]
