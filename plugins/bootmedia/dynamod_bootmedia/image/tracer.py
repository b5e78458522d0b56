"""Which modules does the guest import? Run by the image builder as
``python -I -m dynamod_bootmedia.image.tracer SPEC.json`` with the Python
the image will carry, in the guest's configuration (isolated mode, only the
plugins chosen for the image enabled).

It imports the real entry points, exercises them (loads the plugins, asks
dynamodctl for its help), and follows every import statement of the
first-party code, including the ones inside functions (init and svmgr
import lazily on purpose), to a fixpoint. Third-party distributions named in
``scan`` are read (not imported) for the standard-library modules they
mention anywhere, and those are imported too, so a lazily imported stdlib
module of typer or rich is not missing in the guest.

Prints JSON: ``{"modules": {name: file or null}, "failed": {name: error}}``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import sys
from typing import Any


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module an import statement in ``source`` may load (for
    ``from a import b`` both ``a`` and ``a.b``: b may be a submodule)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            if not base:
                continue
            parts = base.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
            for alias in node.names:
                if alias.name != "*":
                    names.add(f"{base}.{alias.name}")
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(tree: ast.AST):  # type: ignore[no-untyped-def]
    """ast.walk, minus the bodies of ``if TYPE_CHECKING:`` (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _under(path: str | None, dirs: list[str]) -> bool:
    if not path:
        return False
    path = os.path.realpath(path)
    return any(path == d or path.startswith(d + os.sep) for d in dirs)


def _try_import(name: str, failed: dict[str, str]) -> None:
    if name in sys.modules:
        return
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            importlib.import_module(name)
    except BaseException as exc:  # anything: a module may even sys.exit
        failed[name] = f"{type(exc).__name__}: {exc}"[:200]


def _exercise(what: str, failed: dict[str, str]) -> None:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if what == "plugin-host":
                from dynamod.plugins import make_plugin_host

                make_plugin_host("dynamod")
            elif what == "ctl-plugin-host":
                from dynamod.plugins import make_plugin_host

                make_plugin_host("dynamodctl")
            elif what.startswith("ctl:"):
                from dynamod.ctl.main import main

                with contextlib.suppress(SystemExit):
                    main(what[4:].split())
            elif what.startswith("call:"):
                mod, _, fn = what[5:].partition(":")
                getattr(importlib.import_module(mod), fn)()
    except BaseException as exc:
        failed[f"exercise {what}"] = f"{type(exc).__name__}: {exc}"[:200]


def _disable_other_plugins(allowed: list[str]) -> None:
    from importlib.metadata import entry_points

    keep = {a.lower().replace("_", "-") for a in allowed}
    off = []
    for group in ("dynamod", "dynamodctl"):
        for ep in entry_points(group=group):
            dist = (ep.dist.metadata["Name"] if ep.dist else "").lower().replace("_", "-")
            if dist not in keep:
                off.append(ep.name)
    os.environ["DYNAMOD_DISABLE_PLUGINS"] = ",".join(sorted(set(off)))


def _dist_files(dist_name: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        return []
    out = []
    for f in dist.files or []:
        if str(f).endswith(".py") and ".." not in str(f):
            out.append(str(dist.locate_file(f)))
    return out


def trace(spec: dict[str, Any]) -> dict[str, Any]:
    first_party = [os.path.realpath(d) for d in spec.get("first_party", [])]
    exclude = tuple(spec.get("exclude", []))

    def excluded(name: str) -> bool:
        return name == "__main__" or any(name == e or name.startswith(e + ".") for e in exclude)
    failed: dict[str, str] = {}
    if "plugins" in spec:
        _disable_other_plugins(spec["plugins"])
    stdlib_names = set(sys.stdlib_module_names)

    # Third-party code is read, not followed: only its stdlib imports count.
    for dist_name in spec.get("scan", []):
        for path in _dist_files(dist_name):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    names = imported_names(f.read(), "", False)
            except OSError:
                continue
            for name in sorted(names):
                if name.split(".")[0] in stdlib_names and not excluded(name):
                    _try_import(name, failed)

    for name in spec.get("roots", []):
        if not excluded(name):
            _try_import(name, failed)
    for what in spec.get("exercise", []):
        _exercise(what, failed)

    scanned: set[str] = set()
    while True:
        todo = [
            (n, m) for n, m in list(sys.modules.items())
            if n not in scanned and not excluded(n) and _under(getattr(m, "__file__", None), first_party)
        ]
        if not todo:
            break
        for name, mod in todo:
            scanned.add(name)
            path = mod.__file__
            if not path or not path.endswith(".py"):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    source = f.read()
            except OSError:
                continue
            is_pkg = os.path.basename(path) == "__init__.py"
            for dep in sorted(imported_names(source, name, is_pkg)):
                if excluded(dep):
                    continue
                _try_import(dep, failed)

    modules = {}
    for name, mod in sorted(sys.modules.items()):
        if excluded(name):
            continue
        modules[name] = getattr(mod, "__file__", None)
    return {"modules": modules, "failed": failed, "stdlib_names": sorted(stdlib_names)}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    result = trace(spec)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
