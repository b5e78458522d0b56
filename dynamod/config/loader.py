"""Loading and validating a configuration directory.

``load_config`` never raises, whatever the directory holds: it collects
every diagnostic (so ``dynamodctl check`` shows all of them at once) and
returns what is usable. Each file is read and parsed by
:mod:`dynamod.config.source` (regular files only, bounded, every parser
failure a diagnostic) and validated inside a guard, so a bug triggered by
one file is an error of that file, not a crash of the service manager.

The returned :class:`SystemConfig` is structurally sound: every service's
supervisor is in ``supervisors`` and every supervisor's parent chain
reaches ``root``. A service whose own file has an error, or whose
supervisor is missing or broken, is not in ``services`` but in ``refused``,
with the reasons; references to it resolve (they are not "unknown"). A
supervisor with an error is left out (``root`` then runs with its
defaults). Dependencies on missing services and dependency cycles are
reported but not removed: the service manager treats them at run time.

Every pass is linear in the size of the tree and iterative.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from dynamod.config import graph
from dynamod.config.extensions import Extensions, builtin_extensions
from dynamod.config.model import (
    FAILURE_ACTIONS,
    MAX_RESTARTS,
    RESTART_POLICIES,
    ROOT_SUPERVISOR,
    SERVICE_TYPES,
    STRATEGIES,
    ConfigError,
    DependencyConfig,
    Diagnostic,
    ReadinessConfig,
    RefusedService,
    RestartConfig,
    ServiceConfig,
    ShutdownConfig,
    SupervisorConfig,
    SystemConfig,
)
from dynamod.config.schema import NAME_RE, Reporter, Table, check_name
from dynamod.config.source import MAX_FILE_SIZE, SourceError, parse, read_text, value_problems
from dynamod.config.units import type_name

if TYPE_CHECKING:
    from pathlib import Path

PLUGINS_SOURCE = "<plugins>"
BUILTIN_SOURCE = "<builtin>"

_DEP_KEYS = ("requires", "wants", "after", "before")


def load_config(
    config_dir: str | Path,
    extensions: Extensions | None = None,
    *,
    strict_dir: bool = False,
    host_checks: bool = False,
    dropins: dict[str, str | None] | None = None,
) -> SystemConfig:
    """Load ``<config_dir>/services/*.toml`` and ``supervisors/*.toml`` plus the
    plugin-contributed service definitions, and validate them as one system.

    ``extensions=None`` means only what the host has built in (readiness
    type ``none``, no plugin tables). Problems never raise: they are in the
    result's ``diagnostics``; use :func:`check_or_raise` to insist on none.

    ``strict_dir``: a missing configuration directory, or a path that is
    not a directory, is an error (``dynamodctl check``) rather than a
    warning (the service manager boots without configuration).
    ``host_checks``: also warn about what this host lacks (programs, users,
    groups: :mod:`dynamod.config.hostcheck`).
    ``dropins``: drop-in texts to use instead of the files in
    ``overrides/`` (None: no drop-in), by service name: how ``dynamodctl
    edit`` checks a drop-in before it is saved."""
    ext = extensions if extensions is not None else builtin_extensions()
    diags: list[Diagnostic] = [Diagnostic(PLUGINS_SOURCE, "", p) for p in ext.problems]
    # os.path, not pathlib: pathlib (with urllib.parse and ipaddress) would
    # cost svmgr ~4 ms and 0.7 MB at every start for a directory listing.
    root = os.fspath(config_dir)
    readable = _check_root(root, strict_dir, diags)
    sup_docs = _read_dir(root, "supervisors", diags) if readable else []
    svc_docs = _service_documents(root if readable else None, ext, diags)
    dropin_docs = _apply_dropins(root, svc_docs, dropins or {}, diags) if readable else []

    supervisors = _load_supervisors(sup_docs, diags)
    services = _load_services(svc_docs, ext, diags)
    _check_supervision(services, supervisors, diags)
    _check_dependencies(services, diags)
    loaded = {s.name: s for s in services.loaded}
    if readable:
        _apply_states(root, loaded, diags)
    if host_checks:
        from dynamod.config.hostcheck import host_problems

        diags.extend(host_problems(loaded.values()))
    _locate(diags, sup_docs + svc_docs + dropin_docs)
    return SystemConfig(
        services=loaded,
        supervisors=supervisors.usable,
        diagnostics=diags,
        refused=services.refused(loaded),
    )


def check_or_raise(cfg: SystemConfig) -> SystemConfig:
    """Return ``cfg`` unchanged, or raise :class:`ConfigError` carrying every
    diagnostic when it has errors (warnings alone pass)."""
    if cfg.errors:
        raise ConfigError(cfg.diagnostics)
    return cfg


# ---------------------------------------------------------------------------
# Reading sources
# ---------------------------------------------------------------------------


class _Document:
    __slots__ = ("data", "dropin", "dropin_keys", "problem", "source", "stem", "text")

    def __init__(self, src: str, stem: str) -> None:
        self.source = src  # "services/web.toml" or "<plugin NAME>:NAME"
        self.dropin = ""  # "overrides/web.toml" when one was merged in
        self.dropin_keys: frozenset[str] = frozenset()  # the dotted keys it set
        self.stem = stem  # file name without .toml, for override matching
        self.text: str | None = None
        self.data: dict[str, Any] | None = None  # None when it could not be read
        self.problem: SourceError | None = None

    def load(self, text: str) -> None:
        self.text = text
        self.data = parse(text)


def _document(src: str, stem: str, read: Callable[[], str]) -> _Document:
    """A document whose reading problem, if any, is kept for its reporter."""
    doc = _Document(src, stem)
    try:
        doc.load(read())
    except SourceError as exc:
        doc.problem = exc
    return doc


def _check_root(root: str, strict: bool, diags: list[Diagnostic]) -> bool:
    """Whether the configuration directory can be listed; a problem with it
    is a diagnostic (an error when it exists but cannot be read)."""
    severity = "error" if strict else "warning"
    try:
        st = os.stat(root)
    except FileNotFoundError:
        diags.append(Diagnostic(root, "", "configuration directory does not exist", severity))
        return False
    except OSError as exc:
        diags.append(Diagnostic(root, "", f"configuration directory cannot be read: {exc.strerror}"))
        return False
    if not stat.S_ISDIR(st.st_mode):
        # A warning for the service manager: a system with no configuration
        # still boots (root supervisor only), but `check` shows the typo.
        what = "a file, not a directory" if stat.S_ISREG(st.st_mode) else "not a directory"
        diags.append(Diagnostic(
            root, "", f"configuration directory is {what} (give the directory that holds "
            "services/ and supervisors/)", severity,
        ))
        return False
    try:
        os.listdir(root)
    except OSError as exc:
        diags.append(Diagnostic(root, "", f"configuration directory cannot be read: {exc.strerror}"))
        return False
    return True


def _read_dir(root: str, sub: str, diags: list[Diagnostic]) -> list[_Document]:
    folder = os.path.join(root, sub)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []  # optional
    except OSError as exc:  # a file named services, no permission, I/O error
        diags.append(Diagnostic(f"{sub}/", "", f"cannot read directory: {exc.strerror or exc}"))
        return []
    # Dotfiles are editor leftovers (emacs' lock file .#web.toml, for one).
    return [
        _document(f"{sub}/{name}", name[: -len(".toml")], partial(read_text, os.path.join(folder, name)))
        for name in sorted(n for n in names if n.endswith(".toml") and not n.startswith("."))
    ]


def _declared_name(data: dict[str, Any] | None, table: str) -> str | None:
    section = data.get(table) if data is not None else None
    if isinstance(section, dict) and isinstance(section.get("name"), str):
        return section["name"]
    return None


def _service_documents(root: str | None, ext: Extensions, diags: list[Diagnostic]) -> list[_Document]:
    """Plugin definitions that no file overrides, then the files.

    A file overrides a plugin definition when it declares the same service
    name or is named ``services/NAME.toml``; the override is silent (that is
    how an administrator customises a plugin's service). A file that cannot
    be read still overrides by its name: the administrator's service is
    refused, not quietly replaced by the plugin's."""
    files = _read_dir(root, "services", diags) if root is not None else []
    overridden = {d.stem for d in files}
    overridden.update(n for d in files if (n := _declared_name(d.data, "service")))

    docs: list[_Document] = []
    first_by_name: dict[str, str] = {}
    for definition, plugin in ext.definitions:
        if definition.name in overridden:
            continue
        src = f"<plugin {plugin}>:{definition.name}"
        doc = _document(src, definition.name, partial(_checked_text, definition.text))
        name = _declared_name(doc.data, "service") or definition.name
        if name in overridden:
            continue
        if name != definition.name:
            diags.append(Diagnostic(
                src, "service.name",
                f"definition {definition.name!r} declares service name {name!r}", "warning",
            ))
        if name in first_by_name:
            diags.append(Diagnostic(
                src, "service.name",
                f"service {name!r} is also defined by {first_by_name[name]}; "
                f"two plugins cannot define one service (a file services/{name}.toml "
                "in the config directory can replace both)",
            ))
            continue
        first_by_name[name] = src
        docs.append(doc)
    return docs + files


def _apply_dropins(root: str, docs: list[_Document], given: dict[str, str | None],
                   diags: list[Diagnostic]) -> list[_Document]:
    """Merge ``overrides/NAME.toml`` over the definition of service NAME
    (its declared name, else its file's stem). A drop-in that cannot be
    read or parsed refuses its service, as a broken file would: running it
    without the administrator's override could be worse than not at all."""
    from dynamod.config import overrides as ov

    found = {d.stem: d for d in _read_dir(root, ov.OVERRIDES, diags)}
    for name, text in given.items():
        if text is None:
            found.pop(name, None)
        else:
            found[name] = _document(f"{ov.OVERRIDES}/{name}.toml", name, partial(_checked_text, text))
    if not found:
        return []
    by_name: dict[str, _Document] = {}
    for doc in docs:
        by_name.setdefault(_declared_name(doc.data, "service") or doc.stem, doc)
    for stem, drop in sorted(found.items()):
        doc = by_name.get(stem)
        if doc is None:
            diags.append(Diagnostic(drop.source, "", f"override for {stem!r}, which is not a service "
                                    "(the file is ignored)", "warning"))
            continue
        doc.dropin = drop.source
        if doc.problem is not None:
            continue
        if drop.problem is not None:
            doc.problem = SourceError(f"its override {drop.source} is invalid: {drop.problem.message}")
            continue
        assert doc.data is not None and drop.data is not None
        doc.dropin_keys = frozenset(ov.dotted_keys(drop.data, doc.data))
        doc.data = ov.merge(doc.data, drop.data)
    return list(found.values())


def _apply_states(root: str, loaded: dict[str, ServiceConfig], diags: list[Diagnostic]) -> None:
    """What enable/disable/mask recorded wins over the file's ``enabled``.
    A broken state file is a warning and counts as absent: it must never
    keep a system from booting."""
    from dynamod.config import overrides as ov

    states, problems = ov.read_states(root)
    for file, message in problems:
        diags.append(Diagnostic(file, "", f"{message} (ignored)", "warning"))
    for name, state in states.items():
        cfg = loaded.get(name)
        if cfg is None:
            continue
        enabled = cfg.enabled if state.enabled is None else state.enabled
        loaded[name] = replace(cfg, enabled=enabled, masked=state.masked)


def _checked_text(text: object) -> str:
    # A plugin's definition is held to the file limits too.
    if not isinstance(text, str):
        raise SourceError(f"definition text is {type_name(text)}, not a string")
    if len(text) > MAX_FILE_SIZE:
        raise SourceError(f"definition is too large (at most {MAX_FILE_SIZE} bytes)")
    return text


def _open(doc: _Document, rep: Reporter) -> dict[str, Any] | None:
    """The document's data, after reporting why it has none or what no
    value may hold (NUL characters, integers beyond 64 bits, deep nesting)."""
    if doc.problem is not None:
        rep.error("", doc.problem.message, line=doc.problem.line)
        return None
    assert doc.data is not None
    for key, message in value_problems(doc.data):
        rep.error(key, message)
    return doc.data


def _guarded(parse: Any, data: dict[str, Any], rep: Reporter, *args: Any) -> Any:
    """Run one document's validation; an exception in it (a bug) is an
    error of that file, never a crash of the caller."""
    try:
        return parse(data, rep, *args)
    except Exception as exc:
        rep.error("", f"could not be validated: {type(exc).__name__}: {exc} "
                  "(a bug in dynamod; please report it)")
        return None


def _locate(diags: list[Diagnostic], docs: list[_Document]) -> None:
    """Fill in the line of every diagnostic that names a key of a document."""
    texts = {d.source: d.text for d in docs if d.text is not None}
    index: dict[str, Any] = {}
    for i, d in enumerate(diags):
        if d.line is not None or not d.key or d.file not in texts:
            continue
        if d.file not in index:
            from dynamod.config.lines import KeyLines  # the error path only

            index[d.file] = KeyLines(texts[d.file])
        diags[i] = replace(d, line=index[d.file].line_of(d.key))


# ---------------------------------------------------------------------------
# Supervisors
# ---------------------------------------------------------------------------


class _Supervisors:
    def __init__(self) -> None:
        self.declared: dict[str, str] = {}  # name -> source
        # Every file with a valid name, errors or not: references are checked
        # on all of them so that one run reports everything.
        self.parsed: dict[str, SupervisorConfig] = {}
        self.loaded: dict[str, SupervisorConfig] = {}  # without errors
        self.usable: dict[str, SupervisorConfig] = {}  # parent chain reaches root


def _load_supervisors(docs: list[_Document], diags: list[Diagnostic]) -> _Supervisors:
    sups = _Supervisors()
    unnamed: list[_Document] = []
    for doc in docs:
        rep = Reporter(diags, doc.source)
        data = _open(doc, rep)
        cfg = _guarded(_parse_supervisor, data, rep) if data is not None else None
        name = rep.declared_name
        if name is None:
            unnamed.append(doc)
            continue
        if name in sups.declared:
            rep.error("supervisor.name", f"duplicate supervisor name {name!r} "
                      f"(also defined in {sups.declared[name]})")
            continue
        sups.declared[name] = doc.source
        if cfg is not None:
            sups.parsed[name] = cfg
            if not rep.failed:
                sups.loaded[name] = cfg
    # A file whose name could not be read still declares its stem, so that
    # what refers to it is "under a broken supervisor", not "unknown".
    for doc in unnamed:
        if NAME_RE.fullmatch(doc.stem) and doc.stem not in sups.declared:
            sups.declared[doc.stem] = doc.source
    if ROOT_SUPERVISOR not in sups.loaded:
        # Without root nothing runs: a broken root.toml (reported) leaves the
        # defaults in force rather than a system with no services.
        root = SupervisorConfig(ROOT_SUPERVISOR, source=sups.declared.get(ROOT_SUPERVISOR, BUILTIN_SOURCE))
        if ROOT_SUPERVISOR in sups.declared:
            Reporter(diags, root.source).warning(
                "supervisor", "the root supervisor's file has errors: root runs with the defaults"
            )
        sups.declared.setdefault(ROOT_SUPERVISOR, BUILTIN_SOURCE)
        sups.parsed[ROOT_SUPERVISOR] = sups.loaded[ROOT_SUPERVISOR] = root

    # Parents are resolved only now, after every file is read, so that file
    # order does not matter.
    for _, cfg in sorted(sups.parsed.items()):
        if cfg.parent is not None and cfg.parent not in sups.declared:
            Reporter(diags, cfg.source).error(
                "supervisor.parent",
                f"unknown parent supervisor {cfg.parent!r} (known: {_known(sups.declared)})",
            )
    parents = {n: {c.parent} if c.parent in sups.parsed else set() for n, c in sups.parsed.items()}
    for cycle in graph.find_cycles(parents):
        Reporter(diags, sups.parsed[cycle[0]].source).error(
            "supervisor.parent", "supervisor cycle: " + " -> ".join(cycle)
        )
    rooted = _rooted(sups.loaded)
    sups.usable = {n: c for n, c in sups.loaded.items() if n in rooted}
    return sups


def _known(names: dict[str, str], limit: int = 20) -> str:
    """A bounded list for "known: ..." hints (a tree may have thousands)."""
    known = sorted(names)
    more = f" and {len(known) - limit} more" if len(known) > limit else ""
    return ", ".join(known[:limit]) + more


def _rooted(loaded: dict[str, SupervisorConfig]) -> set[str]:
    """Supervisors whose parent chain reaches root through loaded supervisors.
    Each supervisor is walked once (chains are cut at the first known one)."""
    good: set[str] = {ROOT_SUPERVISOR} if ROOT_SUPERVISOR in loaded else set()
    bad: set[str] = set()
    for start in loaded:
        chain: list[str] = []
        node: str | None = start
        seen: set[str] = set()
        while node is not None and node not in good and node not in bad:
            if node in seen or node not in loaded:
                break
            seen.add(node)
            chain.append(node)
            node = loaded[node].parent
        (good if node in good else bad).update(chain)
    return good


def _unusable_reasons(sups: _Supervisors) -> dict[str, str]:
    """For each declared supervisor that is not usable, why: the first
    supervisor up its parent chain that could not be loaded (or the cycle).
    Linear: a chain is walked until a supervisor whose reason is known."""
    reasons: dict[str, str] = {}
    for start in sups.declared:
        if start in sups.usable or start in reasons:
            continue
        chain: list[str] = []
        seen: set[str] = set()
        node: str | None = start
        why = ""
        while node is not None:
            if node in reasons:
                why = reasons[node]
                break
            if node in seen:
                why = f"supervisor {node!r} is on a cycle of parents"
                break
            cfg = sups.loaded.get(node)
            if cfg is None:
                where = sups.declared.get(node)
                why = (f"supervisor {node!r} was refused (see {where})" if where
                       else f"supervisor {node!r} does not exist")
                break
            if node in sups.usable:  # cannot happen for an unusable start
                break
            seen.add(node)
            chain.append(node)
            node = cfg.parent
        chain.append(start)
        for name in chain:
            reasons.setdefault(name, why)
    return reasons


def _parse_supervisor(data: dict[str, Any], rep: Reporter) -> SupervisorConfig | None:
    doc = Table(rep, "", data)
    sup = doc.table("supervisor", required=True)
    restart = doc.table("restart")
    for key in doc.rest():
        rep.error(key, "unknown table" if isinstance(data[key], dict) else "unknown key",
                  suggest=(key, ("supervisor", "restart")))
    if sup is None:
        return None
    name = sup.string("name", required=True)
    if name is not None and check_name(sup, "name", name):
        rep.declared_name = name
    parent = sup.string("parent")
    if name == ROOT_SUPERVISOR and parent is not None:
        rep.error("supervisor.parent", "the root supervisor has no parent")
        parent = None
    elif parent is None and name != ROOT_SUPERVISOR:
        parent = ROOT_SUPERVISOR
    strategy = sup.choice("strategy", STRATEGIES, "one-for-one")
    on_failure = sup.choice("on-failure", FAILURE_ACTIONS, "emergency")
    if on_failure != "emergency" and name != ROOT_SUPERVISOR:
        rep.error("supervisor.on-failure", "only the root supervisor has a system action")
    escalate = sup.boolean("escalate", False)
    sup.finish()
    max_restarts, window = 5, 60.0
    if restart is not None:
        max_restarts = restart.integer("max-restarts", 5, minimum=0, maximum=MAX_RESTARTS)
        window = restart.duration("max-restart-window", 60.0, positive=True)
        restart.finish()
    if rep.declared_name is None:
        return None
    return SupervisorConfig(
        name=rep.declared_name, source=rep.file, parent=parent, strategy=strategy,
        max_restarts=max_restarts, max_restart_window=window, on_failure=on_failure,
        escalate=escalate,
    )


# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------


class _Entry:
    """One service document that declared a name (or gave its stem)."""

    __slots__ = ("cfg", "notes", "rep", "source")

    def __init__(self, src: str, rep: Reporter, cfg: ServiceConfig | None) -> None:
        self.source = src
        self.rep = rep  # its own errors are rep.errors
        self.cfg = cfg  # what could be parsed, errors or not
        self.notes: list[str] = []  # why it is refused beyond its own errors


class _Services:
    def __init__(self) -> None:
        self.declared: dict[str, str] = {}  # name -> source (stems included)
        self.entries: dict[str, _Entry] = {}
        self.parsed: list[ServiceConfig] = []  # errors or not
        self.loaded: list[ServiceConfig] = []  # without errors

    def refused(self, loaded: dict[str, ServiceConfig]) -> dict[str, RefusedService]:
        out: dict[str, RefusedService] = {}
        for name, entry in self.entries.items():
            if name in loaded:
                continue
            cfg = entry.cfg
            errors = [f"{d.location}: {d.message}" for d in entry.rep.errors] + entry.notes
            out[name] = RefusedService(
                name=name, source=entry.source, errors=tuple(errors),
                dependencies=cfg.dependencies if cfg is not None else DependencyConfig(),
                supervisor=cfg.supervisor if cfg is not None and cfg.supervisor else None,
            )
        return out


def _load_services(docs: list[_Document], ext: Extensions, diags: list[Diagnostic]) -> _Services:
    out = _Services()
    unnamed: list[tuple[_Document, Reporter, ServiceConfig | None]] = []
    for doc in docs:
        rep = Reporter(diags, doc.source)
        if doc.dropin:
            rep.dropin = (doc.dropin, doc.dropin_keys)
        data = _open(doc, rep)
        cfg = _guarded(_parse_service, data, rep, ext) if data is not None else None
        if cfg is not None and doc.dropin:
            cfg = replace(cfg, dropin=doc.dropin)
        name = rep.declared_name
        if name is None:
            unnamed.append((doc, rep, cfg))
            continue
        if name in out.declared:
            rep.error("service.name", f"duplicate service name {name!r} "
                      f"(also defined in {out.declared[name]})")
            if (first := out.entries.get(name)) is not None:
                first.notes.extend(f"{d.location}: {d.message}" for d in rep.errors)
            continue
        out.declared[name] = doc.source
        out.entries[name] = _Entry(doc.source, rep, cfg)
        if cfg is not None:
            out.parsed.append(cfg)
            if not rep.failed:
                out.loaded.append(cfg)
    # No valid name: the service is known by its file's stem (services/x.toml
    # is "x" by convention), so that it is shown as refused and what
    # requires it is blocked rather than told "unknown service".
    for doc, rep, cfg in unnamed:
        if NAME_RE.fullmatch(doc.stem) and doc.stem not in out.declared:
            out.declared[doc.stem] = doc.source
            out.entries[doc.stem] = _Entry(doc.source, rep, cfg)
    return out


_SERVICE_TABLES = ("service", "restart", "readiness", "dependencies", "shutdown")


def _parse_service(data: dict[str, Any], rep: Reporter, ext: Extensions) -> ServiceConfig:
    doc = Table(rep, "", data)
    svc_t = doc.table("service", required=True)
    restart_t = doc.table("restart")
    readiness_t = doc.table("readiness")
    deps_t = doc.table("dependencies")
    shutdown_t = doc.table("shutdown")
    sections = _plugin_sections(doc, data, rep, ext)
    # Without [service] the other tables are still checked (one run, every
    # error); its required keys are not reported again as missing.
    svc = svc_t or Table(rep, "service", {})

    name = svc.string("name", required=svc_t is not None)
    if name is not None and check_name(svc, "name", name):
        rep.declared_name = name
    exec_ = svc.strings("exec", required=svc_t is not None, nonempty=True)
    stype = svc.choice("type", SERVICE_TYPES, "simple")
    supervisor = svc.string("supervisor", ROOT_SUPERVISOR) or ""
    description = svc.string("description", "") or ""
    enabled = svc.boolean("enabled", True)
    workdir = svc.abs_path("workdir")
    environment = _environment(svc)
    env_files = _environment_files(svc)
    pid_file = svc.abs_path("pid-file")
    if pid_file is not None and stype != "forking":
        rep.warning("service.pid-file", f"only used by type 'forking' (this service is {stype!r})")
    user, group, groups = _user(svc)
    svc.finish()

    restart = _restart(restart_t, stype)
    readiness = _readiness(readiness_t, stype, rep, ext)
    dependencies = _dependencies(deps_t)
    shutdown = _shutdown(shutdown_t)

    # Returned even with errors and without a name (the caller drops it):
    # its references are still checked against the whole system, and its
    # dependencies are kept for the refused service.
    return ServiceConfig(
        name=rep.declared_name or "", exec=exec_ or (), source=rep.file, type=stype,
        supervisor=supervisor,
        description=description, enabled=enabled, workdir=workdir,
        environment=environment, environment_file=env_files,
        user=user, group=group, supplementary_groups=groups, pid_file=pid_file,
        restart=restart, readiness=readiness, dependencies=dependencies,
        shutdown=shutdown, sections=sections,
    )


def _plugin_sections(
    doc: Table, data: dict[str, Any], rep: Reporter, ext: Extensions
) -> dict[str, dict[str, Any]]:
    """Validate the tables owned by plugins; name the missing plugin for the rest."""
    out: dict[str, dict[str, Any]] = {}
    for key in doc.rest():
        value = data[key]
        if not isinstance(value, dict):
            rep.error(key, "unknown key (keys belong in a table such as [service])",
                      suggest=(key, _SERVICE_TABLES))
            continue
        if key not in ext.sections:
            rep.error(key, ext.missing_hint("section", key))
            continue
        section, plugin = ext.sections[key]
        if _run_validator(section.validate, value, key, plugin, rep):
            out[key] = value
    return out


def _run_validator(validate: Any, table: dict[str, Any], prefix: str, plugin: str,
                   rep: Reporter) -> bool:
    """Apply a plugin's validator; a crashing validator is the plugin's bug,
    reported as an error rather than taking the loader down."""
    if validate is None:
        return True
    try:
        problems = list(validate(dict(table)))
    except Exception as exc:  # third-party code: report, do not crash
        rep.error(prefix, f"validator of plugin {plugin!r} failed: {type(exc).__name__}: {exc}")
        return False
    for key, message in problems:
        rep.error(f"{prefix}.{key}" if key else prefix, message)
    return not problems


def _environment(svc: Table) -> dict[str, str]:
    env = svc.table("environment")
    if env is None:
        return {}
    out: dict[str, str] = {}
    for var in env.rest():
        value = env.data[var]
        if not var or "=" in var or "\0" in var:
            env.rep.error(env.key(var), "invalid environment variable name")
        elif not isinstance(value, str):
            env.rep.error(env.key(var), f"expected a string, got {type_name(value)}")
        else:
            out[var] = value
    return out


def _environment_files(svc: Table) -> tuple[str, ...]:
    value = svc.get("environment-file")
    if value is None:
        return ()
    if isinstance(value, str):
        items = [("environment-file", value)]
    elif isinstance(value, list):
        items = [(f"environment-file[{i}]", v) for i, v in enumerate(value)]
    else:
        svc.error("environment-file",
                  f"expected a string or an array of strings, got {type_name(value)}")
        return ()
    out: list[str] = []
    for key, item in items:
        if not isinstance(item, str):
            svc.error(key, f"expected a string, got {type_name(item)}")
        # A leading "-" means "ignore if missing" (as in systemd); it is kept
        # for the service manager, the path after it must be absolute.
        elif not item.removeprefix("-").startswith("/"):
            svc.error(key, f"must be an absolute path, got {item!r}")
        else:
            out.append(item)
    return tuple(out)


def _user(svc: Table) -> tuple[str | None, str | None, tuple[str, ...]]:
    ut = svc.table("user")
    if ut is None:
        return None, None, ()
    user = ut.ident("user")
    group = ut.ident("group")
    groups = ut.idents("supplementary-groups")
    ut.finish()
    return user, group, groups


def _restart(t: Table | None, stype: str) -> RestartConfig:
    # No policy given: None, resolved by ServiceConfig from the type
    # (oneshot: temporary, others: permanent; see default_restart_policy).
    if t is None:
        return RestartConfig()
    cfg = RestartConfig(
        policy=t.choice("policy", RESTART_POLICIES, "") or None,
        delay=t.duration("delay", 1.0),
        max_restarts=t.integer("max-restarts", 5, minimum=0, maximum=MAX_RESTARTS),
        max_restart_window=t.duration("max-restart-window", 60.0, positive=True),
    )
    t.finish()
    return cfg


def _readiness(t: Table | None, stype: str, rep: Reporter, ext: Extensions) -> ReadinessConfig:
    default = "notify" if stype == "notify" else "none"
    if t is None:
        rtype, timeout, given = default, 30.0, False
    else:
        given = "type" in t.data
        rtype = t.string("type", default)
        if rtype is None or rtype == "":
            if rtype == "":
                rep.error("readiness.type", f"must not be empty (leave it out for the default, {default!r})")
            rtype = default
        timeout = t.duration("timeout", 30.0, positive=True)
    # Where to point when the type is wrong: the key if written, else the
    # service type that implied it.
    type_key = "readiness.type" if given else "service.type"
    if stype == "notify" and rtype != "notify":
        rep.error(type_key, f"service type 'notify' needs readiness type 'notify', got {rtype!r}")
    options: dict[str, Any] = {}
    if rtype not in ext.readiness:
        rep.error(type_key, ext.missing_hint("readiness", rtype))
        if t is not None:
            t.rest()  # the options belong to a type we cannot check
        return ReadinessConfig(rtype, timeout)
    rt, plugin = ext.readiness[rtype]
    if t is not None:
        for key in t.rest():
            if key in rt.options:
                options[key] = t.data[key]
            else:
                rep.error(t.key(key), f"unknown key for readiness type {rtype!r}",
                          suggest=(key, ("type", "timeout", *sorted(rt.options))))
        _run_validator(rt.validate, options, "readiness", plugin, rep)
    return ReadinessConfig(rtype, timeout, options)


def _dependencies(t: Table | None) -> DependencyConfig:
    if t is None:
        return DependencyConfig()
    lists = {key: t.strings(key) or () for key in _DEP_KEYS}
    t.finish()
    return DependencyConfig(**lists)


def _shutdown(t: Table | None) -> ShutdownConfig:
    if t is None:
        return ShutdownConfig()
    cfg = ShutdownConfig(
        stop_signal=t.signal("stop-signal", 15),
        stop_timeout=t.duration("stop-timeout", 10.0),
        stop_exec=t.strings("stop-exec") or (),
    )
    if cfg.stop_exec and not cfg.stop_exec[0]:
        t.rep.error(t.key("stop-exec[0]"), "the program must not be empty")
    t.finish()
    return cfg


# ---------------------------------------------------------------------------
# Whole-system checks
# ---------------------------------------------------------------------------


def _check_supervision(services: _Services, sups: _Supervisors, diags: list[Diagnostic]) -> None:
    """Unknown supervisors are errors; services under a supervisor that could
    not be loaded are left out (refused, with the reason) so that the result
    stays structurally sound."""
    unusable = _unusable_reasons(sups)
    for svc in services.parsed:
        entry = services.entries[svc.name]
        if svc.supervisor not in sups.declared:
            entry.rep.error(
                "service.supervisor",
                f"unknown supervisor {svc.supervisor!r} (known: {_known(sups.declared)})",
            )
        elif svc.supervisor in unusable:
            why = unusable[svc.supervisor]
            if not why.startswith(f"supervisor {svc.supervisor!r} "):
                why = f"supervisor {svc.supervisor!r} cannot run: {why}"
            entry.notes.append(f"{svc.source}: service.supervisor: not started: {why}")
    services.loaded = [s for s in services.loaded if s.supervisor in sups.usable]


def _check_dependencies(services: _Services, diags: list[Diagnostic]) -> None:
    by_name = {s.name: s for s in services.parsed}
    for svc in services.parsed:
        rep = services.entries[svc.name].rep
        for key in _DEP_KEYS:
            for i, dep in enumerate(getattr(svc.dependencies, key)):
                if dep in services.declared:
                    continue
                where = f"dependencies.{key}[{i}]"
                if key == "requires":
                    rep.error(where, f"requires unknown service {dep!r}")
                else:
                    rep.warning(where, f"unknown service {dep!r} (ignored)")
    edges = graph.order_edges(by_name)
    cycles = graph.find_cycles(edges)
    for cycle in cycles:
        source, key = _edge_origin(by_name, cycle[0], cycle[1])
        Reporter(diags, source).error(key, "dependency cycle: " + " -> ".join(cycle))
    reported = {n for c in cycles for n in c}
    rest = sorted(graph.cycle_members(edges) - reported)
    if rest:
        Reporter(diags, by_name[rest[0]].source).error(
            "dependencies",
            f"more dependency cycles involve: {', '.join(rest[:20])}"
            + (f" and {len(rest) - 20} more" if len(rest) > 20 else ""),
        )


def _edge_origin(by_name: dict[str, ServiceConfig], a: str, b: str) -> tuple[str, str]:
    """The file and key that create the ordering edge "a starts after b"."""
    deps = by_name[a].dependencies
    for key in ("requires", "wants", "after"):
        if b in getattr(deps, key):
            return by_name[a].source, f"dependencies.{key}"
    return by_name[b].source, "dependencies.before"
