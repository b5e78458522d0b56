r"""Shell completion: the scripts, and the answers they ask for.

``dynamodctl completion bash|zsh|fish`` prints a script. The scripts are
thin: on every TAB they run ``dynamodctl __complete SHELL -- WORD...``
with the words typed so far (the last one is the word being completed,
possibly empty) and show what it prints. All the knowledge is here and in
the command table (:mod:`dynamod.ctl.verbs`), so a new verb or option
completes without touching the scripts.

The answer is one candidate per line, for zsh and fish followed by a tab
and a description, already filtered by the typed prefix. Instead of
candidates it may be one directive line, which the script turns into the
shell's own completion: ``:files`` or ``:dirs`` (a path option's value).
Service names come from the daemon (``ListServices`` over the control
socket named on the line, by ``$DYNAMOD_SOCKET`` or the default), with a
short timeout; when it cannot be asked there is simply nothing to offer.
"""

from __future__ import annotations

import sys

from dynamod.ctl.cli import HELP_NAMES, Arg, Command, Opt
from dynamod.ctl.exits import OK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

QUERY_TIMEOUT = 0.5  # s; a TAB that hangs is worse than one that offers nothing
SHELLS = ("bash", "zsh", "fish")
UP = frozenset({"running", "exited"})  # as render.UP_STATES, without importing render
DOWN = frozenset({"stopped", "failed", "blocked"})

Candidate = tuple[str, str]  # (word, description)


def answer(shell: str, words: Sequence[str]) -> int:
    """Print the completions of ``words[-1]`` after ``words[:-1]``."""
    result = complete(list(words) or [""])
    if isinstance(result, str):
        sys.stdout.write(result + "\n")
        return OK
    lines = [word if shell == "bash" else f"{word}\t{desc}" for word, desc in result]
    sys.stdout.write("".join(line + "\n" for line in lines))
    return OK


class _Line:
    """How far the words before the cursor got: which command, which
    --socket, how many arguments, whether an option awaits its value."""

    def __init__(self) -> None:
        self.command: Command | None = None
        self.plugin: str | None = None  # a plugin command's name
        self.socket: str | None = None
        self.positionals: list[str] = []
        self.pending: Opt | None = None  # the option whose value comes next
        self.options_done = False  # after "--"
        self.seen: set[str] = set()  # option names already given


def complete(words: list[str]) -> list[Candidate] | str:
    from dynamod.ctl.verbs import COMMANDS, ROOT_OPTIONS

    *before, cur = words
    line = _Line()
    options: Sequence[Opt] = ROOT_OPTIONS
    for word in before:
        if line.pending is not None:
            if line.pending.dest == "socket":
                line.socket = word
            line.pending = None
        elif word == "--" and not line.options_done:
            line.options_done = line.command is not None or line.plugin is not None
        elif word.startswith("-") and word != "-" and not line.options_done:
            name, eq, value = word.partition("=")
            opt = _find(options, name)
            if opt is not None and opt.takes_value:
                if not eq:
                    line.pending = opt
                elif opt.dest == "socket":
                    line.socket = value
            line.seen.add(name)
        elif line.command is None and line.plugin is None:
            line.command = COMMANDS.get(word)
            if line.command is None:
                line.plugin = word
                options = ()
            else:
                options = line.command.options
                line.seen = set()
        else:
            line.positionals.append(word)

    if line.pending is not None:
        return _value(line.pending, cur, "", line)
    if cur.startswith("--") and "=" in cur and not line.options_done:
        name, _, value = cur.partition("=")
        opt = _find(options, name)
        return _value(opt, value, name + "=", line) if opt and opt.takes_value else []
    if cur.startswith("-") and not line.options_done:
        if line.plugin is not None:
            return _match(cur, _plugin_options(line.plugin))
        return _match(cur, _option_candidates(options, line.seen))
    if line.command is None and line.plugin is None:
        return _match(cur, _command_candidates(COMMANDS.values()))
    if line.command is None:
        return []
    arg = _argument_at(line.command.arguments, len(line.positionals))
    if arg is None:
        return []
    if arg.choices:
        return _match(cur, [(c, "") for c in arg.choices])
    if arg.complete and arg.complete.startswith("services"):
        return _services(cur, arg.complete, line)
    return []


def _find(options: Iterable[Opt], name: str) -> Opt | None:
    for opt in options:
        if name in opt.names:
            return opt
    return None


def _match(prefix: str, candidates: Iterable[Candidate]) -> list[Candidate]:
    return [(w, d) for w, d in candidates if w.startswith(prefix)]


def _option_candidates(options: Iterable[Opt], seen: set[str]) -> list[Candidate]:
    out = []
    for opt in options:
        if not opt.multiple and seen.intersection(opt.names):
            continue  # given already: once is enough
        out += [(name, opt.help) for name in opt.names]
    out += [(name, "Show this message and exit.") for name in HELP_NAMES if name not in seen]
    return sorted(out, key=lambda c: (not c[0].startswith("--"), c[0]))


def _command_candidates(commands: Iterable[Command]) -> list[Candidate]:
    out = [(c.name, c.summary) for c in commands if not c.hidden]
    from dynamod.ctl import app

    if app.installed():
        out += app.load().summaries
    return out


def _plugin_options(name: str) -> list[Candidate]:
    from dynamod.ctl import app

    if not app.installed():
        return []
    cmd = app.load().command.commands.get(name) if name in app.load().names else None
    out = []
    for param in getattr(cmd, "params", []):
        if getattr(param, "param_type_name", "") == "option":
            help_text = getattr(param, "help", None) or ""
            out += [(n, help_text) for n in [*param.opts, *param.secondary_opts]]
    return out + [(n, "Show this message and exit.") for n in HELP_NAMES]


def _argument_at(args: Sequence[Arg], index: int) -> Arg | None:
    """The argument the ``index``-th positional word fills."""
    for arg in args:
        if arg.many:
            return arg
        if index == 0:
            return arg
        index -= 1
    return None


def _value(opt: Opt, value: str, prefix: str, line: _Line) -> list[Candidate] | str:
    if opt.choices:
        return [(prefix + c, "") for c in opt.choices if c.startswith(value)]
    if opt.complete in ("files", "dirs"):
        return ":" + opt.complete
    if opt.complete and opt.complete.startswith("services"):
        return [(prefix + w, d) for w, d in _services(value, opt.complete, line)]
    words = _WORDS.get(opt.complete or "")
    if words is not None:
        return [(prefix + w, "") for w in words() if w.startswith(value)]
    return []


def _states() -> tuple[str, ...]:
    from dynamod.ctl.verbs import STATES

    return STATES


def _properties() -> tuple[str, ...]:
    from dynamod.ctl.unitcmds import SHOW_KEYS

    return SHOW_KEYS


def _signals() -> tuple[str, ...]:
    return ("TERM", "KILL", "HUP", "INT", "QUIT", "USR1", "USR2", "STOP", "CONT", "ABRT", "ALRM")


# Option values completed from a fixed list (Opt.complete names the list).
_WORDS = {"states": _states, "properties": _properties, "signals": _signals}


def _services(prefix: str, kind: str, line: _Line) -> list[Candidate]:
    """Names of the daemon's services that start with ``prefix``:
    ``services:down`` only those not up (for ``start``), ``services:up``
    those not down (``stop``); names already on the line are left out."""
    try:
        from dynamod.ctl.commands import connect, fetch_services

        with connect(line.socket, QUERY_TIMEOUT) as conn:
            services = fetch_services(conn)
    except Exception:  # no daemon, no permission, a hung one: nothing to offer
        return []
    given = set(line.positionals)
    out = []
    for s in services:
        name, state = str(s.get("name", "")), str(s.get("state", ""))
        if not name.startswith(prefix) or name in given:
            continue
        if (kind == "services:down" and state in UP) or (kind == "services:up" and state in DOWN):
            continue
        if kind == "services:failed" and state != "failed":
            continue
        out.append((name, state))
    return out


# --- the scripts -----------------------------------------------------------------

BASH = r"""# bash completion for dynamodctl (printed by `dynamodctl completion bash`).
#   now:       source <(dynamodctl completion bash)
#   for good:  dynamodctl completion bash > /etc/bash_completion.d/dynamodctl
_dynamodctl_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]} w i joined=0 out
    local -a words=()
    # bash splits `--socket=/run/x` at "=" into three words: join them again,
    # the way dynamodctl reads its command line.
    for ((i = 1; i <= COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if ((${#words[@]})) && [[ $w == "=" && ${words[-1]} == --* && ${words[-1]} != *=* ]]; then
            words[-1]+="="
            joined=1
            continue
        elif ((joined)); then
            words[-1]+=$w
        else
            words+=("$w")
        fi
        joined=0
    done
    out=$("${COMP_WORDS[0]}" __complete bash -- "${words[@]}" 2>/dev/null) || return 0
    [[ $cur == "=" ]] && cur=""
    COMPREPLY=()
    case $out in
        "") ;;
        ":files")
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
        ":dirs")
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
        *)
            mapfile -t COMPREPLY <<<"$out"
            # `--opt=value` candidates: bash replaces only the part after "=".
            if [[ ${words[-1]} == *=* && $cur != *=* ]]; then
                COMPREPLY=("${COMPREPLY[@]#*=}")
            fi ;;
    esac
}
complete -F _dynamodctl_complete dynamodctl
"""

ZSH = r"""#compdef dynamodctl
# zsh completion for dynamodctl (printed by `dynamodctl completion zsh`).
#   now:       source <(dynamodctl completion zsh)    (after compinit)
#   for good:  dynamodctl completion zsh > "${fpath[1]}/_dynamodctl"
_dynamodctl() {
    local -a lines candidates
    local line
    lines=("${(@f)$(${words[1]} __complete zsh -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    case ${lines[1]} in
        :files) compset -P '--*='; _files; return ;;
        :dirs) compset -P '--*='; _files -/; return ;;
    esac
    for line in $lines; do
        [[ -n $line ]] || continue
        # _describe wants "word:description"; a ':' in the word is escaped.
        candidates+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
    done
    (( ${#candidates} )) && _describe -t dynamodctl dynamodctl candidates
}
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _dynamodctl "$@"    # autoloaded from $fpath: complete now
else
    compdef _dynamodctl dynamodctl    # sourced: register for later
fi
"""

FISH = r"""# fish completion for dynamodctl (printed by `dynamodctl completion fish`).
#   now:       dynamodctl completion fish | source
#   for good:  dynamodctl completion fish > ~/.config/fish/completions/dynamodctl.fish
function __dynamodctl_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    command -q $words[1]; or return
    set -l out (command $words[1] __complete fish -- $words[2..-1] "$cur" 2>/dev/null)
    switch "$out[1]"
        case :files :dirs
            # A path: fish's own completion, after any `--option=`.
            set -l prefix (string match -r -- '^--[^=]*=' $cur)
            set -l value (string replace -r -- '^--[^=]*=' '' $cur)
            if test "$out[1]" = :dirs
                __fish_complete_directories $value | string replace -r -- '^' "$prefix"
            else
                __fish_complete_path $value | string replace -r -- '^' "$prefix"
            end
        case '*'
            printf '%s\n' $out
    end
end
complete -c dynamodctl -f -a '(__dynamodctl_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def script(shell: str) -> str:
    return SCRIPTS[shell]
