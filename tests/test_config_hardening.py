"""Config loading that cannot raise (issue 13): whatever is in the config
directory, ``load_config`` returns, and every problem is an error that names
its file (and key). Special files, limits, hostile values, deep trees."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dynamod.api import ConfigSection, ReadinessType
from dynamod.config import source
from dynamod.config.extensions import Extensions, builtin_extensions
from dynamod.config.graph import find_cycles, order_edges, topological_order
from dynamod.config.loader import load_config
from dynamod.config.model import MAX_RESTARTS, SystemConfig
from dynamod.config.units import MAX_DURATION
from dynamod.testing import deadline

TRUE = '[service]\nname = "{name}"\nexec = ["/bin/true"]\n'


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def svc(name: str, body: str = "") -> str:
    return TRUE.format(name=name) + body


def errors(cfg: SystemConfig) -> list[tuple[str, str, str]]:
    return [(d.file, d.key, d.message) for d in cfg.errors]


def _anything(table: dict[str, Any]) -> list[tuple[str, str]]:
    return []


def open_extensions() -> Extensions:
    """A plugin table ``[free]`` and readiness type ``probe`` that accept any
    value, so that the host's own value checks are what is tested."""
    ext = builtin_extensions()
    ext.sections["free"] = (ConfigSection("free", _anything), "test")
    ext.readiness["probe"] = (
        ReadinessType("probe", lambda ctx: None, frozenset({"arg"}), _anything), "test"
    )
    return ext




# -- special files -------------------------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _dir(path: Path) -> None:
    path.mkdir()


def _socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere.txt")


def _loop(path: Path) -> None:
    path.symlink_to(path)


def _huge(path: Path) -> None:
    path.write_text(svc("zz") + "#" * source.MAX_FILE_SIZE + "\n")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_fifo, "is a FIFO, not a regular file (only regular files are read)"),
        (_zero, "is a character device, not a regular file (only regular files are read)"),
        (_dir, "is a directory, not a regular file (only regular files are read)"),
        (_socket, "is a socket, not a regular file (only regular files are read)"),
        (_dangling, "broken symbolic link (to "),
        (_loop, "symbolic link loop"),
        (_huge, f"file is too large ({source.MAX_FILE_SIZE + 44} bytes; at most {source.MAX_FILE_SIZE})"),
    ],
    ids=["fifo", "dev-zero", "directory", "socket", "dangling-link", "link-loop", "too-large"],
)
def test_special_files_are_refused_without_reading(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    """A FIFO named services/zz.toml used to hang check and svmgr; a symlink
    to /dev/zero ended in MemoryError."""
    tree(tmp_path, {"services/a.toml": svc("a")})
    make(tmp_path / "services" / "zz.toml")
    with deadline(10.0, "load_config"):
        cfg = load_config(tmp_path)
    ((file, key, got),) = errors(cfg)
    assert (file, key) == ("services/zz.toml", "")
    assert got.startswith(message), got
    assert list(cfg.services) == ["a"]
    assert cfg.refused["zz"].errors == (f"services/zz.toml: {got}",)


def test_a_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    text = svc("big")
    text += "#" * (source.MAX_FILE_SIZE - len(text) - 1) + "\n"
    assert len(text) == source.MAX_FILE_SIZE
    cfg = load_config(tree(tmp_path, {"services/big.toml": text}))
    assert cfg.diagnostics == [] and list(cfg.services) == ["big"]


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    tree(tmp_path, {"elsewhere/a.toml": svc("a")})
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "a.toml").symlink_to(tmp_path / "elsewhere" / "a.toml")
    assert list(load_config(tmp_path).services) == ["a"]


def test_unreadable_services_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "services").write_text("not a directory")
    assert errors(load_config(tmp_path)) == [("services/", "", "cannot read directory: Not a directory")]


# -- parser limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["[" * 10_000 + "]" * 10_000, "{a = " * 10_000 + "1" + "}" * 10_000,
     "[{a = " * 3000 + "1" + "}]" * 3000],
    ids=["arrays", "inline-tables", "mixed"],
)
def test_nesting_10000_deep(tmp_path: Path, value: str) -> None:
    """tomllib raises RecursionError on these; it used to escape load_config."""
    cfg = load_config(tree(tmp_path, {"services/deep.toml": svc("deep", f"[free]\nx = {value}\n")}),
                      open_extensions())
    assert errors(cfg) == [("services/deep.toml", "", "invalid TOML: nested too deeply (at most 32 levels)")]
    assert "deep" in cfg.refused


def test_nesting_limit(tmp_path: Path) -> None:
    # The document is level 1, [free] level 2: the array nests 30 more.
    ok = "[" * (source.MAX_DEPTH - 2) + "]" * (source.MAX_DEPTH - 2)
    deep = "[" + ok + "]"
    cfg = load_config(tree(tmp_path, {"services/ok.toml": svc("ok", f"[free]\nx = {ok}\n"),
                                      "services/deep.toml": svc("deep", f"[free]\nx = {deep}\n")}),
                      open_extensions())
    ((file, key, message),) = errors(cfg)
    assert file == "services/deep.toml" and key.startswith("free.x[0]")
    assert message == "nested too deeply (at most 32 levels)"
    assert list(cfg.services) == ["ok"]


@pytest.mark.parametrize(
    ("text", "line"),
    [("[free." + ".".join(["a"] * 100_000) + "]\nx = 1\n", 4),
     ("[free]\n" + ".".join(["a"] * 100_000) + " = 1\n", 5),
     ("[free]\nx = { " + ".".join(['"a"'] * 100_000) + " = 1 }\n", 5)],
    ids=["header", "dotted-key", "inline-table-key"],
)
def test_dotted_keys_of_100000_parts(tmp_path: Path, text: str, line: int) -> None:
    """tomllib's cost grows with the square of a dotted key's length: such a
    key took all memory (the process was killed)."""
    cfg = load_config(tree(tmp_path, {"services/d.toml": svc("d", text)}), open_extensions())
    assert errors(cfg) == [
        ("services/d.toml", "", f"invalid TOML: a dotted key of more than 32 parts (line {line})")
    ]
    assert cfg.errors[0].line == line


def test_dotted_keys_up_to_the_limit_pass(tmp_path: Path) -> None:
    key = ".".join(["a"] * 30)  # [free] + 30 parts + the value: 32 levels
    cfg = load_config(tree(tmp_path, {"services/d.toml": svc("d", f"[free]\n{key} = 1\n"
                                                             'note = "' + ".".join(["w"] * 100) + '"\n')}),
                      open_extensions())
    assert cfg.diagnostics == []


@pytest.mark.parametrize(
    ("number", "message"),
    [("9" * 5000, "invalid TOML: an integer has too many digits (integers are 64-bit)"),
     ("9" * 30, "integer out of range (integers are 64-bit)"),
     (str(2**63), "integer out of range (integers are 64-bit)"),
     (str(-(2**63) - 1), "integer out of range (integers are 64-bit)")],
    ids=["5000-digits", "30-digits", "2**63", "-2**63-1"],
)
def test_huge_integers(tmp_path: Path, number: str, message: str) -> None:
    """Python refuses to convert more than 4,300 digits (ValueError); TOML
    integers are 64-bit."""
    cfg = load_config(tree(tmp_path, {"services/n.toml": svc("n", f"[free]\nx = {number}\n")}),
                      open_extensions())
    ((file, _key, got),) = errors(cfg)
    assert (file, got) == ("services/n.toml", message)


def test_64_bit_integers_pass(tmp_path: Path) -> None:
    cfg = load_config(tree(tmp_path, {"services/n.toml": svc(
        "n", f"[free]\nlo = {-(2**63)}\nhi = {2**63 - 1}\n")}), open_extensions())
    assert cfg.diagnostics == []
    assert cfg.services["n"].sections["free"] == {"lo": -(2**63), "hi": 2**63 - 1}


# -- NUL characters ------------------------------------------------------------------

NUL = "\\u0000"  # as written in a TOML file


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (f'[service]\nname = "s"\nexec = ["/bin/tr{NUL}ue"]\n', "service.exec[0]"),
        (f'[service]\nname = "s"\nexec = ["/bin/true", "a{NUL}"]\n', "service.exec[1]"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\nworkdir = "/srv{NUL}"\n', "service.workdir"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\nenvironment = {{ A = "x{NUL}" }}\n',
         "service.environment.A"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\nenvironment = {{ "A{NUL}" = "x" }}\n',
         "service.environment.A\0"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\nenvironment-file = "/e{NUL}"\n',
         "service.environment-file"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\ntype = "forking"\npid-file = "/p{NUL}"\n',
         "service.pid-file"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\ndescription = "d{NUL}"\n', "service.description"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\n[service.user]\nuser = "u{NUL}"\n',
         "service.user.user"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\n[service.user]\nsupplementary-groups = ["g{NUL}"]\n',
         "service.user.supplementary-groups[0]"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\n[shutdown]\nstop-exec = ["/bin/kill{NUL}"]\n',
         "shutdown.stop-exec[0]"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\n[dependencies]\nwants = ["x{NUL}"]\n',
         "dependencies.wants[0]"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\n[readiness]\ntype = "probe"\narg = "{NUL}"\n',
         "readiness.arg"),
        (f'[service]\nname = "s"\nexec = ["/bin/true"]\n[free]\n"k{NUL}" = 1\n', "free.k\0"),
    ],
    ids=["exec0", "exec1", "workdir", "env-value", "env-key", "env-file", "pid-file", "description",
         "user", "groups", "stop-exec", "wants", "readiness-option", "section-key"],
)
def test_nul_in_any_string_is_an_error(tmp_path: Path, body: str, key: str) -> None:
    """A NUL in stop-exec used to make stop fail with "embedded null byte",
    leaving the service stopping and svmgr hanging at shutdown."""
    cfg = load_config(tree(tmp_path, {"services/s.toml": body}), open_extensions())
    ((file, got_key, message),) = errors(cfg)
    assert (file, got_key) == ("services/s.toml", key)
    assert "NUL character" in message
    assert cfg.services == {} and "s" in cfg.refused
    # Printed, the NUL of a key is escaped.
    assert "\0" not in str(cfg.errors[0])


def test_nul_in_the_name_refuses_by_stem(tmp_path: Path) -> None:
    cfg = load_config(tree(tmp_path, {"services/s.toml": f'[service]\nname = "s{NUL}"\nexec = ["/bin/true"]\n'}))
    assert ("services/s.toml", "service.name") in [(f, k) for f, k, _ in errors(cfg)]
    assert list(cfg.refused) == ["s"]


def test_raw_nul_byte_is_invalid_toml(tmp_path: Path) -> None:
    cfg = load_config(tree(tmp_path, {"services/s.toml": b'[service]\nname = "s\x00"\n'}))
    ((file, _key, message),) = errors(cfg)
    assert file == "services/s.toml" and message.startswith("invalid TOML: Illegal character")
    assert cfg.errors[0].line == 2


# -- encodings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "line"),
    [(b'[service]\nname = "caf\xe9"\n', 2), (b"# \xff\xfe\n[service]\n", 1),
     (b'[service]\n\n\nname = "\xed\xa0\x80"\n', 4), (b"\xc0\xaf", 1)],
    ids=["latin-1", "in-a-comment", "encoded-surrogate", "overlong"],
)
def test_not_utf8_names_the_line(tmp_path: Path, raw: bytes, line: int) -> None:
    cfg = load_config(tree(tmp_path, {"services/x.toml": raw}))
    ((file, _key, message),) = errors(cfg)
    assert file == "services/x.toml"
    assert message.startswith("file is not UTF-8: ") and message.endswith(f"(line {line})")
    assert cfg.errors[0].line == line


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    cfg = load_config(tree(tmp_path, {"services/a.toml": b"\xef\xbb\xbf" + svc("a").encode()}))
    assert cfg.diagnostics == [] and list(cfg.services) == ["a"]


def test_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    """os.listdir hands it over with surrogate escapes; printed, it must
    not raise UnicodeEncodeError."""
    (tmp_path / "services").mkdir()
    with open(os.path.join(os.fsencode(tmp_path / "services"), b"caf\xe9.toml"), "w") as f:
        f.write("garbage [")
    cfg = load_config(tmp_path)
    (err,) = cfg.errors
    assert err.file == "services/caf\udce9.toml"
    assert str(err).encode("utf-8").startswith(b"error: services/caf\\udce9.toml: invalid TOML")
    assert cfg.refused == {}  # "caf\udce9" is no service name


# -- numbers and names: ASCII only, bounded -----------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[restart]\ndelay = "\u0661\u0660s"\n', "restart.delay"),  # Arabic-Indic 10
        ('[restart]\ndelay = "\u0661\u0660"\n', "restart.delay"),
        ('[shutdown]\nstop-timeout = "\uff15s"\n', "shutdown.stop-timeout"),  # full-width 5
        ('[shutdown]\nstop-signal = "\u0661\u0665"\n', "shutdown.stop-signal"),
        ('[readiness]\ntimeout = "3\u00a0s"\n', "readiness.timeout"),  # no-break space
        ('[service.user]\nuser = "\u0661\u0662"\n', "service.user.user"),  # read as uid 12
        ('[service.user]\ngroup = "\uff10"\n', "service.user.group"),
    ],
)
def test_non_ascii_digits_are_not_numbers(tmp_path: Path, body: str, key: str) -> None:
    cfg = load_config(tree(tmp_path, {"services/s.toml": svc("s", body)}))
    assert [(f, k) for f, k, _ in errors(cfg)] == [("services/s.toml", key)], errors(cfg)


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ('[restart]\ndelay = "366d"\n', "restart.delay", "duration '366d' is too long (at most 365d)"),
        (f'[restart]\ndelay = "{"9" * 400}s"\n', "restart.delay", "is too long (at most 365d)"),
        ("[restart]\ndelay = 1e308\n", "restart.delay", "duration 1e+308 is too long (at most 365d)"),
        ("[restart]\nmax-restart-window = inf\n", "restart.max-restart-window", "is too long"),
        ("[readiness]\ntimeout = nan\n", "readiness.timeout", "invalid duration nan"),
        (f'[readiness]\ntimeout = "{"9" * 400}"\n', "readiness.timeout", "is too long (at most 365d)"),
        (f'[shutdown]\nstop-timeout = "{"1" * 400}ms"\n', "shutdown.stop-timeout", "is too long"),
        (f"[restart]\nmax-restarts = {MAX_RESTARTS + 1}\n", "restart.max-restarts",
         f"must be at most {MAX_RESTARTS}, got {MAX_RESTARTS + 1}"),
    ],
)
def test_maxima(tmp_path: Path, body: str, key: str, message: str) -> None:
    """A 400-digit duration used to pass check and become +inf, raising
    OverflowError in svmgr's timers."""
    cfg = load_config(tree(tmp_path, {"services/s.toml": svc("s", body)}))
    ((file, got_key, got),) = errors(cfg)
    assert (file, got_key) == ("services/s.toml", key)
    assert message in got and len(got) < 120


def test_maxima_themselves_pass(tmp_path: Path) -> None:
    body = (f'[restart]\ndelay = "365d"\nmax-restarts = {MAX_RESTARTS}\nmax-restart-window = "365d"\n'
            f'[readiness]\ntimeout = {MAX_DURATION}\n[shutdown]\nstop-timeout = "8760h"\n')
    sup = f'[supervisor]\nname = "s"\n[restart]\nmax-restarts = {MAX_RESTARTS}\nmax-restart-window = "365d"\n'
    cfg = load_config(tree(tmp_path, {"services/s.toml": svc("s", body), "supervisors/s.toml": sup}))
    assert cfg.diagnostics == []
    s = cfg.services["s"]
    assert (s.restart.delay, s.restart.max_restarts, s.readiness.timeout, s.shutdown.stop_timeout) == (
        MAX_DURATION, MAX_RESTARTS, MAX_DURATION, MAX_DURATION)
    assert cfg.supervisors["s"].max_restarts == MAX_RESTARTS


def test_supervisor_maxima(tmp_path: Path) -> None:
    sup = f'[supervisor]\nname = "s"\n[restart]\nmax-restarts = {10**18}\nmax-restart-window = "400d"\n'
    cfg = load_config(tree(tmp_path, {"supervisors/s.toml": sup}))
    assert [k for _, k, _ in errors(cfg)] == ["restart.max-restarts", "restart.max-restart-window"]
    assert "s" not in cfg.supervisors


def test_empty_readiness_type_is_an_error(tmp_path: Path) -> None:
    """It used to mean `none`, silently."""
    cfg = load_config(tree(tmp_path, {"services/s.toml": svc("s", '[readiness]\ntype = ""\n')}))
    assert errors(cfg) == [("services/s.toml", "readiness.type",
                            "must not be empty (leave it out for the default, 'none')")]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".", "x\n", "-x", ""])
def test_path_traversal_in_names(tmp_path: Path, name: str) -> None:
    quoted = json.dumps(name)  # a valid TOML basic string
    cfg = load_config(tree(tmp_path, {
        "services/t.toml": f'[service]\nname = {quoted}\nexec = ["/bin/true"]\n',
        "supervisors/u.toml": f"[supervisor]\nname = {quoted}\n",
    }))
    assert {(f, k) for f, k, _ in errors(cfg)} == {("services/t.toml", "service.name"),
                                                   ("supervisors/u.toml", "supervisor.name")}
    assert list(cfg.refused) == ["t"]


# -- a bug in validation is an error of the file ------------------------------------


class _Exploding(dict):  # type: ignore[type-arg]
    def __contains__(self, key: object) -> bool:
        raise RuntimeError("boom")


def test_an_exception_in_validation_is_an_error_of_that_file(tmp_path: Path) -> None:
    ext = builtin_extensions()
    ext.sections = _Exploding()
    cfg = load_config(tree(tmp_path, {"services/a.toml": svc("a", "[x]\ny = 1\n"),
                                      "services/b.toml": svc("b")}), ext)
    assert errors(cfg) == [("services/a.toml", "", "could not be validated: RuntimeError: boom "
                            "(a bug in dynamod; please report it)")]
    assert list(cfg.services) == ["b"] and list(cfg.refused) == ["a"]


# -- linear, iterative ----------------------------------------------------------------


@contextmanager
def shallow_stack(limit: int = 150) -> Iterator[None]:
    """Any recursion over the 5,000-node graphs would hit this limit."""
    old = sys.getrecursionlimit()
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    sys.setrecursionlimit(depth + limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


N = 5000


def test_supervisor_chain_5000_deep(tmp_path: Path) -> None:
    """Checking it took 8.4 s (quadratic: a walk of the chain per supervisor)."""
    files: dict[str, str | bytes] = {
        f"supervisors/s{i}.toml": f'[supervisor]\nname = "s{i}"\n' + (f'parent = "s{i - 1}"\n' if i else "")
        for i in range(N)
    }
    files["services/leaf.toml"] = f'[service]\nname = "leaf"\nexec = ["/bin/true"]\nsupervisor = "s{N - 1}"\n'
    tree(tmp_path, files)
    with shallow_stack():
        cfg = load_config(tmp_path)
    assert cfg.diagnostics == []
    assert len(cfg.supervisors) == N + 1 and list(cfg.services) == ["leaf"]
    # Break the chain at its top: every supervisor below, and the service, go.
    (tmp_path / "supervisors" / "s0.toml").write_text('[supervisor]\nname = "s0"\nbogus = 1\n')
    with shallow_stack():
        cfg = load_config(tmp_path)
    assert list(cfg.supervisors) == ["root"]
    assert cfg.refused["leaf"].errors == (
        f"services/leaf.toml: service.supervisor: not started: supervisor 's{N - 1}' cannot run: "
        "supervisor 's0' was refused (see supervisors/s0.toml)",
    )


def test_dependency_chain_and_ring_of_5000(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        f"services/s{i:04}.toml": svc(f"s{i:04}", f'[dependencies]\nrequires = ["s{i - 1:04}"]\n' if i else "")
        for i in range(N)
    }
    tree(tmp_path, files)
    with shallow_stack():
        cfg = load_config(tmp_path)
        order = topological_order(cfg.services)
        assert find_cycles(order_edges(cfg.services)) == []
    assert cfg.diagnostics == [] and order == sorted(cfg.services)
    # Close the ring: one cycle through all 5,000, reported once.
    (tmp_path / "services" / "s0000.toml").write_text(
        svc("s0000", f'[dependencies]\nafter = ["s{N - 1:04}"]\n'))
    with shallow_stack():
        cfg = load_config(tmp_path)
        order = topological_order(cfg.services)
    (err,) = cfg.errors
    assert err.message.startswith("dependency cycle: s0000 -> s4999 -> s4998")
    assert err.message.count("->") == N and len(order) == N
