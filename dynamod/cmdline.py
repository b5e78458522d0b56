"""The command-line parser of dynamod-init and dynamod-svmgr.

Hand-written on purpose: argparse costs PID 1 about 1 MiB and every start of
svmgr about 7 ms. Boolean flags and ``--key VALUE`` / ``--key=VALUE``
options set attributes of an options object; ``-h``/``--help`` prints the
usage, a bad argument exits 2 naming it (as argparse would).
"""

from __future__ import annotations

import sys

# No typing import: PID 1 imports this module, and typing alone is most of a
# MiB of its resident memory.


def parse(prog: str, usage: str, argv: list[str] | None, opts: object,
          flags: tuple[str, ...], valued: tuple[str, ...]) -> None:
    """Fill ``opts`` in place: ``--a-flag`` sets ``opts.a_flag = True``,
    ``--a-key V`` sets ``opts.a_key = "V"``."""
    args = list(sys.argv[1:] if argv is None else argv)
    while args:
        a = args.pop(0)
        key, eq, value = a.partition("=")
        if a in flags:
            setattr(opts, a[2:].replace("-", "_"), True)
        elif key in valued:
            if not eq:
                if not args:
                    usage_error(prog, usage, f"{key} needs a value")
                value = args.pop(0)
            setattr(opts, key[2:].replace("-", "_"), value)
        elif a in ("-h", "--help"):
            sys.stdout.write(usage)
            sys.exit(0)
        else:
            usage_error(prog, usage, f"unknown argument {a!r}")


def usage_error(prog: str, usage: str, message: str) -> None:
    sys.stderr.write(f"{prog}: {message}\n{usage}")
    sys.exit(2)
