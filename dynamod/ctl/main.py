"""``dynamodctl`` entry point (``[project.scripts]``, or ``python -m dynamod.ctl.main``).

One parser for every command (:mod:`dynamod.ctl.verbs`); this module adds
the promise that whatever happens the user sees one line, never a
traceback. See docs/cli.md ("The parser") for why it is not typer.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        from dynamod.ctl.verbs import run

        code = run(args)
        sys.stdout.flush()  # here, so that a closed pipe is handled below
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `dynamodctl list | head -1`: the reader left; say nothing more.
        _silence_stdout()
        return 1
    except Exception as exc:  # the promise is one line on stderr, never a traceback
        if os.environ.get("DYNAMODCTL_DEBUG") == "1":
            raise
        sys.stderr.write(
            f"dynamodctl: internal error: {type(exc).__name__}: {exc} (DYNAMODCTL_DEBUG=1 shows the traceback)\n"
        )
        return 1


def _silence_stdout() -> None:
    # Python would otherwise complain again while flushing stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
