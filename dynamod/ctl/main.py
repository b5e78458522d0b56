"""``dynamodctl`` entry point (``[project.scripts]``, or ``python -m dynamod.ctl.main``).

First the fast path for the hot invocations, then the full typer app for
everything else; see docs/cli.md ("Start-up time") for why and the figures.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        from dynamod.ctl import fast

        parsed = fast.parse(args)
        if parsed is not None:
            from dynamod.ctl.commands import run

            fn, fn_args = parsed
            code = run(fn, *fn_args)
        else:
            from dynamod.ctl.app import run_app

            code = run_app(args)
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
